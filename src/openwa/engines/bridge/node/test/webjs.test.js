'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const { EventEmitter } = require('node:events');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { WebjsSession, ProfileStore, slimMessage, clientIdOf } = require('../lib/webjs');
const { toWireValue } = require('../lib/protocol');

function fakeCtx(transferDir) {
  const events = [];
  const authFrames = [];
  return {
    session: 's1', transferDir, events, authFrames, log: () => {},
    event: (name, data) => events.push({ name, data: toWireValue(data) }),
    auth: (payload) => authFrames.push(payload),
    scope: (fn) => fn(),
  };
}

function fakeLib() {
  const lib = { clients: [] };
  lib.RemoteAuth = class {
    constructor(opts) { this.opts = opts; this.saves = []; this.saveImpl = null; }
    async storeRemoteSession(o) { this.saves.push(o); if (this.saveImpl) await this.saveImpl(o); }
  };
  lib.Location = class { constructor(lat, lng, o) { Object.assign(this, { latitude: lat, longitude: lng, ...o }); } };
  lib.MessageMedia = { fromFilePath: (p) => ({ mimetype: 'image/jpeg', data: 'eA==', filename: path.basename(p) }) };
  lib.Client = class extends EventEmitter {
    constructor(options) {
      super();
      this.options = options;
      this.calls = [];
      this.pupBrowser = null;
      this.pupPage = {};
      this.info = { wid: { _serialized: '111@c.us' }, pushname: 'Me' };
      lib.clients.push(this);
    }
    async initialize() { this.calls.push(['initialize']); if (this.failInit) throw new Error('net::ERR_TUNNEL_CONNECTION_FAILED'); }
    async destroy() { this.calls.push(['destroy']); }
    async logout() { this.calls.push(['logout']); }
    async sendMessage(chatId, content, options) {
      this.calls.push(['sendMessage', chatId, content, options]);
      return { id: { _serialized: `true_${chatId}_3EB0ABC`, id: '3EB0ABC' } };
    }
    async getNumberId(phone) { return phone === '1' ? null : { _serialized: `${phone}@c.us` }; }
    async getProfilePicUrl() { return undefined; }
    async sendSeen(chatId) { this.calls.push(['sendSeen', chatId]); return true; }
    async requestPairingCode(phone) { this.calls.push(['requestPairingCode', phone]); return 'WXYZ1234'; }
    async getChatById(id) {
      const client = this;
      return {
        id: { _serialized: id }, name: 'G', isGroup: id.endsWith('@g.us'), groupMetadata: { owner: 'o' }, lastMessage: { big: true },
        async sendStateTyping() { client.calls.push(['typing', id]); },
        async setSubject(s) { client.calls.push(['setSubject', s]); return false; },
        async promoteParticipants(p) { return { status: 200, p }; },
      };
    }
  };
  return lib;
}

// Each test's scratch directories, removed once the file's tests are done.
const made = [];
const tmp = () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'webjs-test-'));
  made.push(dir);
  return dir;
};
test.after(() => {
  for (const dir of made) fs.rmSync(dir, { recursive: true, force: true });
});

async function started(extra = {}) {
  const dir = tmp();
  const ctx = fakeCtx(dir);
  const lib = fakeLib();
  const s = new WebjsSession(ctx, lib);
  await s.start({ chromiumPath: process.execPath, ...extra });
  await new Promise((r) => setImmediate(r));
  return { dir, ctx, lib, s, client: lib.clients[0] };
}

test('start: puppeteer options, RemoteAuth with our store, proxy flags and credentials', async () => {
  const { lib, client } = await started({ proxy: 'http://u:p%40ss@127.0.0.1:3128' });
  const o = client.options;
  assert.equal(o.puppeteer.executablePath, process.execPath);
  assert.equal(o.puppeteer.headless, true);
  assert.deepEqual(o.puppeteer.args, ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu', '--proxy-server=http://127.0.0.1:3128']);
  assert.deepEqual(o.proxyAuthentication, { username: 'u', password: 'p@ss' });
  assert.deepEqual(o.webVersionCache, { type: 'none' });
  const auth = o.authStrategy;
  assert.ok(auth instanceof lib.RemoteAuth);
  assert.equal(auth.opts.backupSyncIntervalMs, 60000);
  assert.ok(auth.opts.store instanceof ProfileStore);
  assert.deepEqual(client.calls[0], ['initialize']);
  const socks = await started({ proxy: 'socks5://127.0.0.1:1080' });
  assert.equal(socks.client.options.puppeteer.args.at(-1), '--proxy-server=socks5://127.0.0.1:1080');
  await assert.rejects(new WebjsSession(fakeCtx(tmp()), fakeLib()).start({ chromiumPath: '/no/chromium' }), { kind: 'bad_request' });
});

test('a failed initialize() is reported as init_failed and the client destroyed', async () => {
  const dir = tmp();
  const ctx = fakeCtx(dir);
  const lib = fakeLib();
  const orig = lib.Client;
  lib.Client = class extends orig { constructor(o) { super(o); this.failInit = true; } };
  const s = new WebjsSession(ctx, lib);
  await s.start({ chromiumPath: process.execPath });
  await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(ctx.events, [{ name: 'init_failed', data: { message: 'net::ERR_TUNNEL_CONNECTION_FAILED' } }]);
  assert.ok(lib.clients[0].calls.some((c) => c[0] === 'destroy'));
});

test('events: arguments named, message_create only when fromMe, ready carries info, _data slimmed', async () => {
  const { ctx, client } = await started();
  const msg = { id: { _serialized: 'false_1@c.us_A' }, fromMe: false, hasMedia: true, body: 'cap', _data: { body: '/9j/'.repeat(10), caption: 'cap', big: 'x'.repeat(20000), t: 1 } };
  client.emit('qr', '2@ref');
  client.emit('message', msg);
  client.emit('message_create', msg);
  client.emit('message_create', { ...msg, fromMe: true });
  client.emit('message_ack', msg, 3);
  client.emit('ready');
  client.emit('disconnected', 'LOGOUT');
  const names = ctx.events.map((e) => e.name);
  assert.deepEqual(names, ['qr', 'message', 'message_create', 'message_ack', 'ready', 'disconnected']);
  assert.deepEqual(ctx.events[0].data, { qr: '2@ref' });
  assert.deepEqual(ctx.events[1].data.message._data, { caption: 'cap', t: 1 });
  assert.equal(ctx.events[3].data.ack, 3);
  assert.equal(ctx.events[4].data.info.wid._serialized, '111@c.us');
  assert.deepEqual(ctx.events[5].data, { reason: 'LOGOUT' });
});

test('ops: not_ready before ready; send returns WhatsApp id; unsupported ops are bad_request', async () => {
  const { s, client, dir } = await started();
  await assert.rejects(s.command('send', { id: 'X', chatId: '2@c.us', type: 'text', content: { text: 'hi' } }), { kind: 'not_ready', retryable: true });
  assert.deepEqual(await s.command('pairing_code', { phone: '49 1' }), { code: 'WXYZ1234' });
  client.emit('ready');
  const r = await s.command('send', { id: 'X', chatId: '2@c.us', type: 'text', content: { text: 'hi', replyTo: 'true_2@c.us_Q', mentions: ['3@c.us'] } });
  assert.deepEqual(r, { id: 'true_2@c.us_3EB0ABC' });
  const send = client.calls.find((c) => c[0] === 'sendMessage');
  assert.deepEqual(send[3], { sendSeen: false, quotedMessageId: 'true_2@c.us_Q', mentions: ['3@c.us'], parseVCards: false });
  const file = path.join(dir, 'v.ogg');
  fs.writeFileSync(file, 'x');
  await s.command('send', { id: 'Y', chatId: '2@c.us', type: 'voice', content: { media: { path: file, mimetype: 'audio/ogg' } } });
  const voice = client.calls.filter((c) => c[0] === 'sendMessage')[1];
  assert.equal(voice[2].mimetype, 'audio/ogg');
  assert.equal(voice[3].sendAudioAsVoice, true);
  await s.command('send', { id: 'Z', chatId: '2@c.us', type: 'location', content: { location: { latitude: 1, longitude: 2, name: 'N' } } });
  assert.equal(client.calls.filter((c) => c[0] === 'sendMessage')[2][2].latitude, 1);
  await assert.rejects(s.command('send', { id: 'Z', chatId: '2@c.us', type: 'contacts', content: { contacts: [{}, {}] } }), { kind: 'bad_request' });
  await assert.rejects(s.command('subscribe_presence', { chatId: '2@c.us' }), { kind: 'bad_request', message: /not supported by whatsapp-web.js/ });
  assert.deepEqual(await s.command('check', { phone: '1' }), { id: null });
  assert.deepEqual(await s.command('check', { phone: '49' }), { id: '49@c.us' });
  assert.deepEqual(await s.command('picture', { chatId: '2@c.us' }), { url: null });
  await s.command('presence', { chatId: '2@c.us', state: 'typing' });
  assert.ok(client.calls.some((c) => c[0] === 'typing'));
  await s.command('read', { chatId: '2@c.us', ids: ['a'] });
  assert.ok(client.calls.some((c) => c[0] === 'sendSeen'));
  await assert.rejects(s.command('update_group', { groupId: 'g@g.us', subject: 'x' }), { kind: 'refused' });
  const info = await s.command('group_info', { groupId: 'g@g.us' });
  assert.equal(info.lastMessage, undefined);
  assert.deepEqual(info.groupMetadata, { owner: 'o' });
  await assert.rejects(s.command('pairing_code', { phone: '1' }), { kind: 'pairing' });
});

test('a stop of a ready session saves its profile first; one never ready saves none', async () => {
  const ready = await started();
  const auth = ready.client.options.authStrategy;
  let destroyedBefore = null;
  auth.saveImpl = async () => { destroyedBefore = ready.client.calls.some((c) => c[0] === 'destroy'); };
  ready.client.emit('ready');
  await new Promise((r) => setImmediate(r));
  await ready.s.stop();
  assert.deepEqual(auth.saves, [{ emit: false }]);
  assert.equal(destroyedBefore, false);
  assert.equal(ready.client.calls.filter((c) => c[0] === 'destroy').length, 1);
  // RemoteAuth's own first save, a minute after the link, comes after the stop: none
  await auth.storeRemoteSession({ emit: true });
  assert.equal(auth.saves.length, 1);

  const linking = await started();
  await linking.s.stop();
  assert.deepEqual(linking.client.options.authStrategy.saves, []);
});

test('saves run one at a time; a fence or a logout saves none', async () => {
  const { s, client } = await started();
  const auth = client.options.authStrategy;
  let running = 0;
  let most = 0;
  auth.saveImpl = async () => {
    running += 1;
    most = Math.max(most, running);
    await new Promise((r) => setTimeout(r, 5));
    running -= 1;
  };
  await Promise.all([auth.storeRemoteSession(), auth.storeRemoteSession(), auth.storeRemoteSession()]);
  assert.equal(most, 1);
  client.emit('ready');
  await new Promise((r) => setImmediate(r));
  await s.stop({ save: false });
  assert.equal(auth.saves.length, 3);

  const out = await started();
  out.client.emit('ready');
  await new Promise((r) => setImmediate(r));
  await out.s.logout();
  assert.deepEqual(out.client.options.authStrategy.saves, []);
  assert.ok(out.client.calls.some((c) => c[0] === 'logout'));
});

test('a profile save that fails does not hold up the stop', async () => {
  const { s, client } = await started();
  client.options.authStrategy.saveImpl = async () => { throw new Error('zip failed'); };
  client.emit('ready');
  await new Promise((r) => setImmediate(r));
  await s.stop();
  assert.equal(client.calls.filter((c) => c[0] === 'destroy').length, 1);
});

test('stop destroys the client once', async () => {
  const { s, client } = await started();
  await s.stop();
  await s.stop();
  assert.equal(client.calls.filter((c) => c[0] === 'destroy').length, 1);
  await assert.rejects(s.command('check', { phone: '2' }), { kind: 'not_ready' });
});

test('profile store: save hands the zip over, extract copies the saved one, delete says cleared', async () => {
  const dir = tmp();
  const ctx = fakeCtx(dir);
  const dataPath = path.join(dir, 'profiles');
  fs.mkdirSync(dataPath);
  const saved = path.join(dir, 'saved.zip');
  fs.writeFileSync(saved, 'PK-old');
  const store = new ProfileStore({ ctx, profileZip: saved, dataPath, transferDir: path.join(dir, 'out') });
  assert.equal(await store.sessionExists({ session: 'RemoteAuth-s1' }), true);
  const dest = path.join(dataPath, 'RemoteAuth-s1.zip');
  await store.extract({ session: 'RemoteAuth-s1', path: dest });
  assert.equal(fs.readFileSync(dest, 'utf8'), 'PK-old');
  fs.writeFileSync(dest, 'PK-new');
  await store.save({ session: 'RemoteAuth-s1' });
  const { profileZip } = ctx.authFrames[0];
  assert.equal(path.dirname(profileZip), path.join(dir, 'out'));
  assert.equal(fs.readFileSync(profileZip, 'utf8'), 'PK-new');
  assert.equal(fs.existsSync(dest), false);
  await store.delete({ session: 'RemoteAuth-s1' });
  assert.deepEqual(ctx.authFrames[1], { cleared: true });
  assert.equal(await store.sessionExists({ session: 'RemoteAuth-s1' }), false);
});

test('client ids RemoteAuth accepts', () => {
  assert.equal(clientIdOf('abc-1_2'), 'abc-1_2');
  assert.match(clientIdOf('a b/c'), /^a_b_c-[0-9a-f]{12}$/);
  assert.notEqual(clientIdOf('a b'), clientIdOf('a/b'));
});

test('slimMessage keeps a message as is when there is no _data', () => {
  assert.deepEqual(slimMessage({ a: 1 }), { a: 1 });
  assert.equal(slimMessage(null), null);
});

test('inbound media: fetched into the transfer directory before its event goes on, in order, capped', async () => {
  const transfer = tmp();
  const { ctx, client } = await started({ transferDir: transfer, maxMediaBytes: 1000 });
  const picture = Buffer.from('a picture, of sorts');
  const withMedia = (id, data) => ({
    id: { _serialized: `false_1@c.us_${id}`, id }, fromMe: false, hasMedia: true, body: '', _data: { t: 1 },
    downloadMedia: async () => ({ mimetype: 'image/jpeg', data, filename: null }),
  });
  client.emit('message', withMedia('P1', picture.toString('base64')));
  client.emit('message', { id: { _serialized: 'false_1@c.us_T1', id: 'T1' }, fromMe: false, hasMedia: false, body: 'after', _data: {} });
  client.emit('message', withMedia('P2', Buffer.alloc(2000).toString('base64')));
  let downloaded = false;
  client.emit('message', { ...withMedia('P3', 'eA=='), _data: { t: 2, size: 2 ** 31 }, downloadMedia: async () => { downloaded = true; return null; } });
  for (let i = 0; i < 50 && ctx.events.length < 4; i += 1) await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual(ctx.events.map((e) => e.data.message.id.id), ['P1', 'T1', 'P2', 'P3']);
  assert.deepEqual(ctx.events[3].data.media, { error: 'over the media size limit' });
  assert.equal(downloaded, false, 'a file stated over the limit is not downloaded at all');
  const first = ctx.events[0].data.media;
  assert.equal(first.size, picture.length);
  assert.deepEqual(fs.readFileSync(first.path), picture);
  assert.equal(path.dirname(first.path), transfer);
  assert.equal(ctx.events[1].data.media, undefined);
  assert.deepEqual(ctx.events[2].data.media, { error: 'over the media size limit' });
  assert.deepEqual(fs.readdirSync(transfer).filter((f) => f.startsWith('in-')).length, 1);
});

test('a LID-addressed message carries the number the page knows behind it, in order, asked once', async () => {
  const { ctx, client } = await started();
  const asked = [];
  client.getContactLidAndPhone = async (ids) => {
    asked.push(ids);
    return ids.map((lid) => ({ lid, pn: lid === '77@lid' ? '4915112345678@c.us' : undefined }));
  };
  const text = (id, from, author) => ({ id: { _serialized: `false_${from}_${id}`, id }, from, author, fromMe: false, hasMedia: false, body: id, _data: {} });
  client.emit('message', text('L1', '77@lid'));
  client.emit('message', text('P1', '1@c.us'));
  client.emit('message', text('G1', '9@g.us', '88@lid')); // a member the page cannot map
  client.emit('message', text('L2', '77@lid'));
  client.emit('message', text('G2', '9@g.us', '88@lid'));
  for (let i = 0; i < 50 && ctx.events.length < 5; i += 1) await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual(ctx.events.map((e) => e.data.message.id.id), ['L1', 'P1', 'G1', 'L2', 'G2']);
  assert.deepEqual(ctx.events.map((e) => e.data.lids), [
    { '77@lid': '4915112345678@c.us' }, undefined, undefined, { '77@lid': '4915112345678@c.us' }, undefined,
  ]);
  assert.deepEqual(asked, [['77@lid'], ['88@lid']], 'each LID asked about once, a miss too');
});

test('a LID lookup that fails or hangs lets the message go on without a number', async () => {
  const { ctx, client } = await started();
  client.getContactLidAndPhone = async () => { throw new Error('Evaluation failed'); };
  client.emit('message', { id: { _serialized: 'false_5@lid_X', id: 'X' }, from: '5@lid', fromMe: false, hasMedia: false, body: 'x', _data: {} });
  for (let i = 0; i < 50 && ctx.events.length < 1; i += 1) await new Promise((r) => setTimeout(r, 10));
  assert.equal(ctx.events.length, 1);
  assert.equal(ctx.events[0].data.lids, undefined);
});

test('a chat read on the phone (its unread count falls to zero) names the messages received since', async () => {
  const { ctx, client } = await started();
  const text = (id, from, fromMe = false) => ({ id: { _serialized: `${fromMe}_${from}_${id}`, id }, from, fromMe, hasMedia: false, body: id, _data: {} });
  client.emit('message', text('A1', '1@c.us'));
  client.emit('message', text('A2', '1@c.us'));
  client.emit('message', text('B1', '2@c.us'));
  client.emit('unread_count', { id: { _serialized: '1@c.us' }, unreadCount: 1 }); // not read yet
  client.emit('unread_count', { id: { _serialized: '1@c.us' }, unreadCount: 0 });
  client.emit('unread_count', { id: { _serialized: '1@c.us' }, unreadCount: 0 }); // nothing new since
  client.emit('message', text('A3', '1@c.us'));
  client.emit('unread_count', { id: { _serialized: '1@c.us' }, unreadCount: 0 });
  const reads = ctx.events.filter((e) => e.name === 'unread_count').map((e) => e.data);
  assert.deepEqual(reads, [
    { chat: { id: '1@c.us', unreadCount: 0 }, readIds: ['A1', 'A2'] },
    { chat: { id: '1@c.us', unreadCount: 0 }, readIds: ['A3'] },
  ]);
});

test('once ready, the most recent chats and their latest messages go as history, once', async () => {
  const { ctx, client } = await started();
  const message = (id, chat) => ({ id: { _serialized: `false_${chat}_${id}`, id }, from: chat, fromMe: false, body: id, _data: { big: 'x'.repeat(20000) } });
  const asked = [];
  const chat = (n, timestamp, failing = false) => ({
    id: { _serialized: `${n}@c.us` }, name: `Chat ${n}`, isGroup: false, archived: n === 2, pinned: false, isMuted: false, timestamp,
    async fetchMessages(options) {
      asked.push([n, options.limit]);
      if (failing) throw new Error('Evaluation failed');
      return [message(`M${n}`, `${n}@c.us`)];
    },
  });
  client.getChats = async () => [chat(1, 10), chat(2, 30), chat(3, 20, true)];
  client.emit('ready');
  client.emit('ready'); // a reconnect: no second history
  for (let i = 0; i < 50 && ctx.events.filter((e) => e.name === 'history').length < 3; i += 1) await new Promise((r) => setTimeout(r, 10));
  const history = ctx.events.filter((e) => e.name === 'history').map((e) => e.data);
  assert.deepEqual(history[0].chats.map((c) => [c.id, c.archived, c.name]), [['2@c.us', true, 'Chat 2'], ['3@c.us', false, 'Chat 3'], ['1@c.us', false, 'Chat 1']]);
  assert.deepEqual(history.slice(1).map((h) => h.messages.map((m) => m.id.id)), [['M2'], ['M1']]);
  assert.equal(history[1].messages[0]._data.big, undefined, 'slimmed as live messages are');
  assert.deepEqual(asked, [[2, 20], [3, 20], [1, 20]]);
});

test('history keeps what the phone has unread: the chat\'s newest messages from others, read with the chat', async () => {
  const { ctx, client } = await started();
  const message = (id, timestamp, fromMe = false) => ({ id: { _serialized: `${fromMe}_1@c.us_${id}`, id, remote: '1@c.us' }, from: fromMe ? '9@c.us' : '1@c.us', to: '1@c.us', fromMe, timestamp, body: id, _data: {} });
  client.getChats = async () => [{
    id: { _serialized: '1@c.us' }, name: 'Chat 1', timestamp: 40, unreadCount: 3,
    async fetchMessages() {
      const live = { ...message('H5', 50), _data: { isNewMsg: true } }; // comes live: not history, but counted
      return [message('H0', 5), message('H1', 10), message('H2', 20), message('H3', 30), { ...message('N1', 35), type: 'e2e_notification' }, message('H4', 40, true), live];
    },
  }];
  client.emit('ready');
  for (let i = 0; i < 50 && ctx.events.filter((e) => e.name === 'history').length < 2; i += 1) await new Promise((r) => setTimeout(r, 10));
  const history = ctx.events.filter((e) => e.name === 'history').map((e) => e.data);
  assert.deepEqual(history[1].unreadIds, ['H2', 'H3'], 'of the newest three from the other side (H5 comes live), not our own H4 or a notice');
  client.emit('unread_count', { id: { _serialized: '1@c.us' }, unreadCount: 0, timestamp: 40 });
  const read = ctx.events.find((e) => e.name === 'unread_count');
  assert.deepEqual(read.data.readIds, ['H2', 'H3'], 'read on the phone: the history ones go read too');
});

test('a group member\'s LID is asked about beside the events, its number following as lid_mapping', async () => {
  const { ctx, client } = await started();
  let answer;
  client.getContactLidAndPhone = (ids) => new Promise((resolve) => { answer = () => resolve(ids.map((lid) => ({ lid, pn: '4915112345678@c.us' }))); });
  const text = (id, from, author) => ({ id: { _serialized: `false_${from}_${id}`, id, remote: from }, from, author, fromMe: false, hasMedia: false, body: id, _data: {} });
  client.emit('message', text('G1', '9@g.us', '99@lid'));
  client.emit('message', text('P1', '1@c.us'));
  // neither waits for the lookup, still unanswered
  assert.deepEqual(ctx.events.map((e) => [e.name, e.data.message.id.id, e.data.lids]), [['message', 'G1', undefined], ['message', 'P1', undefined]]);
  for (let i = 0; i < 50 && !answer; i += 1) await new Promise((r) => setTimeout(r, 10));
  answer();
  for (let i = 0; i < 50 && ctx.events.length < 3; i += 1) await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual(ctx.events[2], { name: 'lid_mapping', data: { lids: { '99@lid': '4915112345678@c.us' } } });
  client.emit('message', text('G2', '9@g.us', '99@lid'));
  assert.deepEqual(ctx.events[3].data.lids, { '99@lid': '4915112345678@c.us' });
});

test('our own message from the phone waits in line behind what waits', async () => {
  const { ctx, client } = await started({ transferDir: tmp() });
  let downloaded;
  const picture = {
    id: { _serialized: 'false_1@c.us_P1', id: 'P1', remote: '1@c.us' }, from: '1@c.us', fromMe: false, hasMedia: true, body: '', _data: {},
    downloadMedia: () => new Promise((resolve) => { downloaded = () => resolve({ mimetype: 'image/jpeg', data: 'eA==' }); }),
  };
  client.emit('message', picture);
  client.emit('message_create', { id: { _serialized: 'true_1@c.us_O1', id: 'O1', remote: '1@c.us' }, from: '111@c.us', to: '1@c.us', fromMe: true, body: 'mine', _data: {} });
  for (let i = 0; i < 50 && !downloaded; i += 1) await new Promise((r) => setTimeout(r, 10));
  assert.equal(ctx.events.length, 0);
  downloaded();
  for (let i = 0; i < 50 && ctx.events.length < 2; i += 1) await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual(ctx.events.map((e) => e.data.message.id.id), ['P1', 'O1']);
});

test('a read whose chat was read before a message came keeps that message unread', async () => {
  const { ctx, client } = await started();
  const text = (id, t) => ({ id: { _serialized: `false_9@g.us_${id}`, id, remote: '9@g.us' }, from: '9@g.us', author: '1@c.us', fromMe: false, hasMedia: false, body: id, timestamp: t, _data: {} });
  client.emit('message', text('A1', 100));
  client.emit('message', text('A2', 105)); // came while the library read the chat (at 100)
  client.emit('unread_count', { id: { _serialized: '9@g.us' }, unreadCount: 0, timestamp: 100 });
  client.emit('unread_count', { id: { _serialized: '9@g.us' }, unreadCount: 0, timestamp: 105 });
  const reads = ctx.events.filter((e) => e.name === 'unread_count').map((e) => e.data.readIds);
  assert.deepEqual(reads, [['A1'], ['A2']]);
});

test('history: only after a link, behind live messages still waiting, without live or undecrypted ones', async () => {
  const transfer = tmp();
  const profile = path.join(transfer, 'profile.zip');
  fs.writeFileSync(profile, 'zip');
  const restored = await started({ profileZip: profile });
  restored.client.getChats = async () => { throw new Error('not asked'); };
  restored.client.emit('ready');
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(restored.ctx.events.filter((e) => e.name === 'history').length, 0, 'a start from a saved profile');

  const { ctx, client } = await started({ transferDir: tmp() });
  let downloaded;
  const live = {
    id: { _serialized: 'false_1@c.us_M1', id: 'M1', remote: '1@c.us' }, from: '1@c.us', fromMe: false, hasMedia: true, body: '', _data: {},
    downloadMedia: () => new Promise((resolve) => { downloaded = () => resolve({ mimetype: 'image/jpeg', data: 'eA==' }); }),
  };
  const old = (id, extra = {}) => ({ id: { _serialized: `false_1@c.us_${id}`, id, remote: '1@c.us' }, from: '1@c.us', fromMe: false, body: id, _data: {}, ...extra });
  client.getChats = async () => [{
    id: { _serialized: '1@c.us' }, name: 'One', timestamp: 5,
    fetchMessages: async () => [old('H1'), old('M1', { _data: { isNewMsg: true } }), old('C1', { type: 'ciphertext' })],
  }, { id: { _serialized: '55@lid' }, name: 'Lid chat', timestamp: 4, fetchMessages: async () => [] }];
  client.getContactLidAndPhone = async (ids) => ids.map((lid) => ({ lid, pn: '4915112345678@c.us' }));
  client.emit('message', live);
  client.emit('ready');
  for (let i = 0; i < 50 && !downloaded; i += 1) await new Promise((r) => setTimeout(r, 10));
  await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(ctx.events.map((e) => e.name).filter((n) => n !== 'ready' && n !== 'lid_mapping'), [], 'all wait behind the download');
  downloaded();
  for (let i = 0; i < 50 && ctx.events.filter((e) => e.name === 'history').length < 2; i += 1) await new Promise((r) => setTimeout(r, 10));
  const names = ctx.events.map((e) => (e.name === 'history' ? `history:${e.data.messages.map((m) => m.id.id).join(',')}` : e.name));
  assert.deepEqual(names.filter((n) => n !== 'ready' && n !== 'lid_mapping'), ['message', 'history:', 'history:H1']);
  assert.deepEqual(ctx.events.find((e) => e.name === 'lid_mapping').data, { lids: { '55@lid': '4915112345678@c.us' } });
});

test('a QR after a start from a saved profile means a new link: history goes once ready', async () => {
  const transfer = tmp();
  const profile = path.join(transfer, 'profile.zip');
  fs.writeFileSync(profile, 'zip');
  const { ctx, client } = await started({ profileZip: profile });
  client.getChats = async () => [];
  client.emit('qr', '2@code');
  client.emit('ready');
  for (let i = 0; i < 50 && !ctx.events.some((e) => e.name === 'history'); i += 1) await new Promise((r) => setTimeout(r, 10));
  assert.ok(ctx.events.some((e) => e.name === 'history'));
});

test('a direct chat\'s LID already asked about beside waits for that lookup only', async () => {
  const { ctx, client } = await started();
  const answers = [];
  client.getContactLidAndPhone = (ids) => new Promise((resolve) => { answers.push(() => resolve(ids.map((lid) => ({ lid, pn: `${lid.split('@')[0]}0@c.us` })))); });
  const text = (id, from, author) => ({ id: { _serialized: `false_${from}_${id}`, id, remote: from }, from, author, fromMe: false, hasMedia: false, body: id, _data: {} });
  client.emit('message', text('G1', '9@g.us', '77@lid')); // 77 asked beside
  client.emit('message', text('G2', '9@g.us', '88@lid')); // 88 asked beside, after 77
  client.emit('message', text('D1', '77@lid')); // 77 writes directly: waits for 77's answer
  for (let i = 0; i < 50 && answers.length < 1; i += 1) await new Promise((r) => setTimeout(r, 10));
  answers[0]();
  for (let i = 0; i < 50 && !ctx.events.some((e) => e.data.message && e.data.message.id.id === 'D1'); i += 1) await new Promise((r) => setTimeout(r, 10));
  const d1 = ctx.events.find((e) => e.data.message && e.data.message.id.id === 'D1');
  assert.deepEqual(d1.data.lids, { '77@lid': '770@c.us' }, 'out before 88\'s lookup is answered');
  for (let i = 0; i < 50 && answers.length < 2; i += 1) await new Promise((r) => setTimeout(r, 10));
  answers[1]();
});
