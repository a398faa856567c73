'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const { EventEmitter } = require('node:events');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { BaileysSession, makeKeyStore, mapError, ADDRESSING_KEPT, POLL_KIND, POLLS_KEPT } = require('../lib/baileys');
const { reviveBuffers } = require('../lib/protocol');
const { toWireValue } = require('../lib/protocol');
const { proto } = require('@whiskeysockets/baileys');

function fakeCtx() {
  const events = [];
  const authFrames = [];
  return {
    session: 's1',
    events,
    authFrames,
    log: () => {},
    event: (name, data) => events.push({ name, data: toWireValue(data) }),
    auth: (payload) => authFrames.push(toWireValue(payload)),
    scope: (fn) => fn(),
  };
}

/** A stand-in for makeWASocket's result: records calls, emits what the test says. */
function fakeLib() {
  const lib = {
    sockets: [],
    configs: [],
    initAuthCreds: () => ({ noiseKey: { public: Buffer.from([1]) }, registered: false }),
    makeCacheableSignalKeyStore: (store) => store,
    proto,
    Browsers: { ubuntu: (b) => ['Ubuntu', b, '22.04'] },
    isJidGroup: (j) => j.endsWith('@g.us'),
    areJidsSameUser: (a, b) => a.split(/[:@]/)[0] === b.split(/[:@]/)[0],
    pino: Object.assign(() => ({ level: 'warn' }), { destination: () => ({}) }),
    makeWASocket(config) {
      lib.configs.push(config);
      const ev = new EventEmitter();
      const ws = new EventEmitter();
      const calls = [];
      const sock = {
        ev, ws, calls, user: { id: '111:5@s.whatsapp.net' },
        end(err) {
          if (sock.ended) return;
          sock.ended = true;
          ev.emit('connection.update', { connection: 'close', lastDisconnect: { error: err, date: new Date() } });
        },
        async sendMessage(jid, content, options) {
          calls.push(['sendMessage', jid, content, options]);
          if (sock.failSend) throw sock.failSend;
          return { key: { remoteJid: jid, id: options && options.messageId, fromMe: true }, message: { conversation: 'x' } };
        },
        async readMessages(keys) { calls.push(['readMessages', keys]); },
        async profilePictureUrl(jid) {
          calls.push(['profilePictureUrl', jid]);
          const e = new Error('item-not-found'); e.data = 404; throw e;
        },
        async onWhatsApp(jid) { calls.push(['onWhatsApp', jid]); return [{ jid, exists: true }]; },
        async requestPairingCode(phone) { calls.push(['requestPairingCode', phone]); return 'ABCD1234'; },
        async sendPresenceUpdate(type, jid) { calls.push(['sendPresenceUpdate', type, jid]); },
        async groupParticipantsUpdate(g, p, a) { calls.push(['groupParticipantsUpdate', g, p, a]); return p.map((jid) => ({ jid, status: '403', content: { tag: 'x' } })); },
        async groupSettingUpdate(g, s) { calls.push(['groupSettingUpdate', g, s]); },
        async groupUpdateSubject(g, s) { calls.push(['groupUpdateSubject', g, s]); },
        async groupMetadata(g) { calls.push(['groupMetadata', g]); return { id: g, subject: 'S', participants: [] }; },
        async logout() { calls.push(['logout']); sock.end(Object.assign(new Error('Intentional Logout'), { output: { statusCode: 401 } })); },
      };
      lib.sockets.push(sock);
      return sock;
    },
  };
  return lib;
}

async function started(args = {}) {
  const ctx = fakeCtx();
  const lib = fakeLib();
  const s = new BaileysSession(ctx, lib);
  await s.start({ auth: null, ...args });
  return { ctx, lib, s, sock: lib.sockets[0] };
}

test('key store: get what was seeded, set and delete report auth frames', async () => {
  const reported = [];
  const store = makeKeyStore({ 'pre-key': { 1: { public: Buffer.from([1]) }, 2: null } }, (d) => reported.push(d), proto);
  const got = await store.get('pre-key', ['1', '2', '3']);
  assert.deepEqual([...got['1'].public], [1]);
  assert.equal(got['2'], undefined);
  assert.equal(got['3'], undefined);
  await store.set({ 'pre-key': { 3: { public: Buffer.from([3]) }, 1: null }, session: { 'a.0': Buffer.from('s') } });
  assert.deepEqual(toWireValue(reported), [{
    'pre-key': { 3: { public: { type: 'Buffer', data: 'Aw==' } }, 1: null },
    session: { 'a.0': { type: 'Buffer', data: 'cw==' } },
  }]);
  assert.equal((await store.get('pre-key', ['1']))['1'], undefined);
  assert.equal(store.size(), 2);
});

test('key store: app-state-sync-key values come back as protobuf objects', async () => {
  const store = makeKeyStore({ 'app-state-sync-key': { AAA: { keyData: Buffer.from([7]), timestamp: 5 } } }, () => {}, proto);
  const { AAA } = await store.get('app-state-sync-key', ['AAA']);
  assert.ok(AAA instanceof proto.Message.AppStateSyncKeyData);
  assert.deepEqual([...AAA.keyData], [7]);
});

test('start: a new device reports its creds; creds.update reports the full creds; keys.set reports keys', async () => {
  const { ctx, lib, sock } = await started({ qrTimeoutS: 30 });
  const config = lib.configs[0];
  assert.equal(config.printQRInTerminal, false);
  assert.equal(config.markOnlineOnConnect, false);
  assert.equal(config.syncFullHistory, false);
  assert.equal(config.qrTimeout, 30000);
  assert.equal(config.agent, undefined);
  assert.deepEqual(ctx.authFrames[0].creds.noiseKey.public, { type: 'Buffer', data: 'AQ==' });
  config.auth.creds.me = { id: '111@s.whatsapp.net' }; // what the socket's own listener does
  sock.ev.emit('creds.update', { me: { id: '111@s.whatsapp.net' } });
  assert.equal(ctx.authFrames[1].creds.me.id, '111@s.whatsapp.net');
  assert.ok(ctx.authFrames[1].creds.noiseKey, 'the full creds, not the update');
  await config.auth.keys.set({ 'sender-key': { k: null } });
  assert.deepEqual(ctx.authFrames[2], { keys: { 'sender-key': { k: null } } });
});

test('start with saved auth: no creds frame, keys seeded', async () => {
  const ctx = fakeCtx();
  const lib = fakeLib();
  await new BaileysSession(ctx, lib).start({ auth: { creds: { registered: true }, keys: { session: { x: Buffer.from([1]) } } } });
  assert.equal(ctx.authFrames.length, 0);
  const got = await lib.configs[0].auth.keys.get('session', ['x']);
  assert.deepEqual([...got.x], [1]);
});

test('proxy: http gives an HttpsProxyAgent, socks5 a SocksProxyAgent over socks5h, for both agents', async () => {
  const made = [];
  class HttpsProxyAgent { constructor(u) { made.push(['http', u]); } }
  class SocksProxyAgent { constructor(u) { made.push(['socks', u]); } }
  const loaders = { http: async () => ({ HttpsProxyAgent }), socks: async () => ({ SocksProxyAgent }) };
  for (const proxy of ['http://u:p@127.0.0.1:3128', 'socks5://127.0.0.1:1080']) {
    const lib = fakeLib();
    await new BaileysSession(fakeCtx(), lib, { agentLoaders: loaders }).start({ proxy });
    assert.ok(lib.configs[0].agent);
    assert.equal(lib.configs[0].agent, lib.configs[0].fetchAgent);
  }
  assert.deepEqual(made, [['http', 'http://u:p@127.0.0.1:3128/'], ['socks', 'socks5h://127.0.0.1:1080']]);
  await assert.rejects(new BaileysSession(fakeCtx(), fakeLib()).start({ proxy: 'ftp://x' }), { kind: 'bad_request' });
});

test('events are forwarded; close carries statusCode and message, ends the socket, commands go not_ready', async () => {
  const { ctx, s, sock } = await started();
  sock.ev.emit('connection.update', { qr: '2@abc' });
  sock.ev.emit('connection.update', { connection: 'open' });
  sock.ev.emit('messages.upsert', { type: 'notify', messages: [proto.WebMessageInfo.fromObject({ key: { id: 'M1' }, messageTimestamp: 5, message: { conversation: 'hi' } })] });
  sock.ev.emit('group-participants.update', { id: 'g@g.us', author: 'a@s.whatsapp.net', participants: ['b@s.whatsapp.net'], action: 'add' });
  assert.deepEqual((await s.command('check', { phone: '+49 111' })), { id: '49111@s.whatsapp.net' });
  const err = Object.assign(new Error('Connection Failure'), { output: { statusCode: 401 } });
  sock.end(err);
  const names = ctx.events.map((e) => e.name);
  assert.deepEqual(names, ['connection.update', 'connection.update', 'messages.upsert', 'group-participants.update', 'connection.update']);
  assert.deepEqual(ctx.events[0].data, { qr: '2@abc' });
  assert.deepEqual(ctx.events[2].data.messages[0], { key: { id: 'M1' }, messageTimestamp: 5, message: { conversation: 'hi' } });
  assert.deepEqual(ctx.events[4].data, { connection: 'close', lastDisconnect: { statusCode: 401, message: 'Connection Failure' } });
  await assert.rejects(s.command('check', { phone: '1' }), { kind: 'not_ready', retryable: true });
});

test('a websocket upgrade answered with HTTP (a refusing proxy) closes as 408 naming the status', async () => {
  const { ctx, sock } = await started();
  sock.ws.emit('unexpected-response', null, { statusCode: 403 });
  const close = ctx.events.find((e) => e.data.connection === 'close');
  assert.equal(close.data.lastDisconnect.statusCode, 408);
  assert.equal(close.data.lastDisconnect.httpStatus, 403);
  assert.ok(sock.ws.listenerCount('error') > 0, 'the late ws error has a listener');
});

test('history sync: messages only, in chunks, isLatest on the last', async () => {
  const { ctx, sock } = await started();
  const messages = Array.from({ length: 1001 }, (_, i) => ({ key: { id: `m${i}` } }));
  sock.ev.emit('messaging-history.set', { chats: [{ id: 'c' }], contacts: [{ id: 'x' }], messages, isLatest: true, syncType: 2 });
  const frames = ctx.events.filter((e) => e.name === 'messaging-history.set');
  assert.deepEqual(frames.map((f) => f.data.messages.length), [500, 500, 1]);
  assert.deepEqual(frames.map((f) => f.data.isLatest), [false, false, true]);
  assert.equal(frames[0].data.chats, undefined);
});

test('history sync: the phone\'s unread messages are named across the frames a set is cut into', async () => {
  const { ctx, sock } = await started();
  const info = (id, chat, t, fromMe = false, message = { conversation: id }) => ({ key: { id, remoteJid: chat, fromMe }, message, messageTimestamp: t });
  const long = (n) => ({ toNumber: () => n });
  const filler = Array.from({ length: 499 }, (_, i) => info(`f${i}`, 'b@s.whatsapp.net', i));
  const a = 'a@s.whatsapp.net';
  const messages = [...filler, info('A1', a, 350), info('A2', a, long(300)), info('A3', a, '200'), info('A4', a, 400, true),
    info('A5', a, 500, false, { reactionMessage: { text: 'x' } }), { ...info('A6', a, 600), messageStubType: 1 },
    info('C1', 'c@s.whatsapp.net', 10)];
  const chats = [{ id: a, unreadCount: 2 }, { id: 'b@s.whatsapp.net', unreadCount: 0 }, { id: 'c@s.whatsapp.net', unreadCount: 1, lastMsgTimestamp: 20 }];
  sock.ev.emit('messaging-history.set', { chats, messages, isLatest: true, syncType: 0 });
  sock.ev.emit('messaging-history.set', { chats, messages: [info('A7', a, 700)], isLatest: true, syncType: 3 });
  const frames = ctx.events.filter((e) => e.name === 'messaging-history.set');
  // the newest two from the other side over the whole set: A1 (350) and A2 (300), not A3
  // (the newest two of the second frame alone), our own A4, a reaction or a notice; not
  // C1 (its chat's last message is not in the set), nor anything of a later sync
  assert.deepEqual(frames.map((f) => f.data.unreadIds), [['A1'], ['A2'], []]);
});

test('send: our id as messageId, typed content to Baileys content, quotes', async () => {
  const { s, sock } = await started();
  sock.ev.emit('connection.update', { connection: 'open' });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bridge-test-'));
  const file = path.join(dir, 'a.jpg');
  fs.writeFileSync(file, 'x');
  const cases = [
    ['text', { text: 'hi', mentions: ['2@s.whatsapp.net'], replyTo: 'Q1', replyToText: 'orig', replyToSender: '3@s.whatsapp.net' }],
    ['image', { caption: 'cap', media: { path: file, mimetype: 'image/jpeg' } }],
    ['voice', { media: { path: file, mimetype: 'audio/ogg; codecs=opus' } }],
    ['document', { caption: 'c', media: { path: file, mimetype: 'application/pdf', filename: 'a.pdf' } }],
    ['location', { location: { latitude: 1.5, longitude: 2.5, name: 'N' } }],
    ['contacts', { contacts: [{ name: 'A', phoneNumber: '1', vcard: 'BEGIN:VCARD' }] }],
    ['reaction', { messageId: 'T1', emoji: '👍', targetFromMe: false, targetSender: '4@s.whatsapp.net' }],
  ];
  for (const [i, [type, content]] of cases.entries()) {
    const r = await s.command('send', { id: `OUR${i}`, chatId: i === 6 ? 'g@g.us' : '2@s.whatsapp.net', type, content });
    assert.deepEqual(r, { id: `OUR${i}` });
  }
  const sent = sock.calls.filter((c) => c[0] === 'sendMessage');
  assert.deepEqual(sent.map((c) => c[3].messageId), cases.map((_, i) => `OUR${i}`));
  assert.deepEqual(sent[0][2], { text: 'hi', mentions: ['2@s.whatsapp.net'] });
  assert.deepEqual(sent[0][3].quoted, { key: { remoteJid: '2@s.whatsapp.net', id: 'Q1', fromMe: false, participant: '3@s.whatsapp.net' }, message: { conversation: 'orig' } });
  // Without a thumbnail from the API, none: Baileys would make one with a shell's ffmpeg.
  assert.deepEqual(sent[1][2], { image: { url: file }, mimetype: 'image/jpeg', caption: 'cap', jpegThumbnail: null });
  assert.deepEqual(sent[2][2], { audio: { url: file }, mimetype: 'audio/ogg; codecs=opus', ptt: true });
  assert.deepEqual(sent[3][2], { document: { url: file }, mimetype: 'application/pdf', fileName: 'a.pdf', caption: 'c' });
  assert.deepEqual(sent[4][2], { location: { degreesLatitude: 1.5, degreesLongitude: 2.5, name: 'N' } });
  assert.deepEqual(sent[5][2], { contacts: { displayName: 'A', contacts: [{ displayName: 'A', vcard: 'BEGIN:VCARD' }] } });
  assert.deepEqual(sent[6][2], { react: { text: '👍', key: { remoteJid: 'g@g.us', id: 'T1', fromMe: false, participant: '4@s.whatsapp.net' } } });
  // A clip with the details the API made: Baileys takes them as they are.
  await s.command('send', { id: 'V1', chatId: '2@s.whatsapp.net', type: 'video', content: { media: { path: file, mimetype: 'video/mp4', thumbnail: Buffer.from('jpeg').toString('base64'), width: 160, height: 120, seconds: 2 } } });
  const video = sock.calls.filter((c) => c[0] === 'sendMessage').at(-1)[2];
  assert.deepEqual(video, { video: { url: file }, mimetype: 'video/mp4', jpegThumbnail: Buffer.from('jpeg'), width: 160, height: 120, seconds: 2 });
  await assert.rejects(s.command('send', { id: 'X', chatId: 'c', type: 'image', content: { media: { path: '/nope' } } }), { kind: 'bad_request' });
  await assert.rejects(s.command('send', { id: 'X', chatId: 'c', type: 'poll', content: {} }), { kind: 'bad_request' });
  fs.rmSync(dir, { recursive: true });
});

test('send failures: closed connection is not_ready, a refusal is not retryable, others are', async () => {
  const { s, sock } = await started();
  sock.ev.emit('connection.update', { connection: 'open' });
  sock.failSend = Object.assign(new Error('Connection Closed'), { output: { statusCode: 428 } });
  await assert.rejects(s.command('send', { id: 'a', chatId: 'c', type: 'text', content: { text: 'x' } }), { kind: 'not_ready', retryable: true });
  sock.failSend = Object.assign(new Error('forbidden'), { data: 403 });
  await assert.rejects(s.command('send', { id: 'a', chatId: 'c', type: 'text', content: { text: 'x' } }), { kind: 'send_failed', retryable: false });
  sock.failSend = new Error('upload timed out');
  await assert.rejects(s.command('send', { id: 'a', chatId: 'c', type: 'text', content: { text: 'x' } }), { kind: 'send_failed', retryable: true });
  assert.equal(mapError(Object.assign(new Error('not-authorized'), { data: 401 })).kind, 'refused');
});

test('read, presence, picture, pairing, groups', async () => {
  const { s, sock } = await started();
  await assert.rejects(s.command('read', { chatId: 'c', ids: ['a'] }), { kind: 'not_ready' });
  assert.deepEqual(await s.command('pairing_code', { phone: '+49 151 1' }), { code: 'ABCD1234' });
  sock.ev.emit('connection.update', { connection: 'open' });
  await s.command('read', { chatId: 'g@g.us', ids: ['a', 'b'], senders: { a: '5@s.whatsapp.net' } });
  assert.deepEqual(sock.calls.find((c) => c[0] === 'readMessages')[1], [
    { remoteJid: 'g@g.us', id: 'a', fromMe: false, participant: '5@s.whatsapp.net' },
    { remoteJid: 'g@g.us', id: 'b', fromMe: false },
  ]);
  await s.command('presence', { chatId: 'c@s.whatsapp.net', state: 'typing' });
  await s.command('presence', { state: 'available' });
  assert.deepEqual(sock.calls.filter((c) => c[0] === 'sendPresenceUpdate'), [
    ['sendPresenceUpdate', 'composing', 'c@s.whatsapp.net'], ['sendPresenceUpdate', 'available', undefined]]);
  await assert.rejects(s.command('presence', { chatId: 'c', state: 'dancing' }), { kind: 'bad_request' });
  assert.deepEqual(await s.command('picture', { chatId: 'c@s.whatsapp.net' }), { url: null });
  assert.deepEqual(await s.command('participants', { groupId: 'g@g.us', action: 'add', participants: ['7@s.whatsapp.net'] }),
    [{ jid: '7@s.whatsapp.net', status: '403' }]);
  const info = await s.command('update_group', { groupId: 'g@g.us', subject: 'New', settings: { announce: true, locked: false } });
  assert.equal(info.id, 'g@g.us');
  assert.deepEqual(sock.calls.filter((c) => c[0] === 'groupSettingUpdate').map((c) => c[2]), ['announcement', 'unlocked']);
  await assert.rejects(s.command('subscribe_presence', {}), { kind: 'bad_request' });
  await assert.rejects(s.command('teleport', {}), { kind: 'bad_request' });
});

test('logout tells WhatsApp, stop just closes', async () => {
  const { ctx, s, sock } = await started();
  sock.ev.emit('connection.update', { connection: 'open' });
  await s.logout();
  assert.ok(sock.calls.some((c) => c[0] === 'logout'));
  assert.equal(ctx.events.at(-1).data.lastDisconnect.statusCode, 401);
  const b = await started();
  await b.s.stop();
  assert.ok(b.sock.ended);
  assert.equal(b.s.sock, null);
});

test('hold pauses the session websocket; what came meanwhile is read, in order, once it goes on', async () => {
  const { WebSocket, WebSocketServer } = require('ws');
  const server = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise((resolve) => server.once('listening', resolve));
  const peer = new Promise((resolve) => server.once('connection', resolve));
  const { s, sock } = await started();
  // Baileys' websocket client keeps its `ws` socket as `socket`: a real one, on loopback.
  sock.ws.socket = new WebSocket(`ws://127.0.0.1:${server.address().port}`);
  const received = [];
  sock.ws.socket.on('message', (data) => received.push(String(data)));
  await new Promise((resolve) => sock.ws.socket.once('open', resolve));
  const whatsapp = await peer;
  try {
    whatsapp.send('before');
    while (received.length < 1) await new Promise((resolve) => setTimeout(resolve, 5));
    assert.deepEqual(await s.command('hold', { hold: true }), {});
    assert.equal(s.held, true);
    assert.equal(sock.ws.socket.isPaused, true); // `ws` reads nothing off the socket
    for (let i = 0; i < 3; i += 1) whatsapp.send(`held ${i}`);
    assert.deepEqual(await s.command('hold', { hold: false }), {});
    assert.equal(sock.ws.socket.isPaused, false);
    while (received.length < 4) await new Promise((resolve) => setTimeout(resolve, 5));
    assert.deepEqual(received, ['before', 'held 0', 'held 1', 'held 2']);
  } finally {
    sock.ws.socket.terminate();
    await new Promise((resolve) => server.close(resolve));
  }
});

test('hold on a session whose socket is gone only records it', async () => {
  const { s } = await started();
  await s.stop();
  assert.deepEqual(await s.command('hold', { hold: true }), {});
  assert.equal(s.held, true);
});

test('a hold told while the socket connects is applied once the connection is open', async () => {
  const { s, sock } = await started();
  const calls = [];
  sock.ws.socket = { pause: () => calls.push('pause'), resume: () => calls.push('resume') };
  assert.deepEqual(await s.command('hold', { hold: true }), {});
  calls.length = 0; // a connecting `ws` socket ignores pause(): what counts is the open
  sock.ev.emit('connection.update', { connection: 'open' });
  assert.deepEqual(calls, ['pause']);
});

test('a message stanza\'s other addresses go with its upsert, by message id', async () => {
  const { ctx, sock } = await started();
  const lidStanza = {
    id: 'M1', from: '120363@g.us', participant: '8792385306797@lid', addressing_mode: 'lid',
    participant_pn: '4915112345678@s.whatsapp.net', t: '1790580591', notify: 'x',
  };
  sock.ws.emit('CB:message', { tag: 'message', attrs: lidStanza });
  sock.ws.emit('CB:message', { tag: 'message', attrs: { id: 'M2', from: '4915112345678@s.whatsapp.net' } });
  const message = (id) => proto.WebMessageInfo.fromObject({ key: { id, remoteJid: '120363@g.us' }, message: { conversation: 'hi' } });
  sock.ev.emit('messages.upsert', { type: 'notify', messages: [message('M1'), message('M2')] });
  const upsert = ctx.events.find((e) => e.name === 'messages.upsert');
  assert.deepEqual(upsert.data.addressing, {
    M1: { addressing_mode: 'lid', participant_pn: '4915112345678@s.whatsapp.net' },
  });
  // handed over once: the same id again (a retry) carries nothing
  sock.ev.emit('messages.upsert', { type: 'notify', messages: [message('M1')] });
  assert.equal(ctx.events.filter((e) => e.name === 'messages.upsert')[1].data.addressing, undefined);
});

test('stanza addresses whose message never comes are kept within a bound', async () => {
  const { s, sock } = await started();
  for (let i = 0; i <= ADDRESSING_KEPT; i += 1) {
    sock.ws.emit('CB:message', { attrs: { id: `M${i}`, from: `${i}@lid`, sender_pn: `${i}@s.whatsapp.net` } });
  }
  assert.equal(s.addressing.size, ADDRESSING_KEPT);
  assert.equal(s.addressing.has('M0'), false);
  assert.equal(s.addressing.has(`M${ADDRESSING_KEPT}`), true);
  sock.ws.emit('CB:message', null); // a stanza without attributes is passed by
});

test('stanza addresses: our own sends from the phone carry the recipient\'s (peer_recipient_*)', () => {
  const { stanzaAddressing } = require('../lib/baileys');
  assert.deepEqual(stanzaAddressing({ id: 'O1', from: '111@s.whatsapp.net', recipient: '77@lid', peer_recipient_pn: '4915112345678@s.whatsapp.net' }), { peer_recipient_pn: '4915112345678@s.whatsapp.net' });
  assert.equal(stanzaAddressing({ id: 'O2', from: '1@s.whatsapp.net', addressing_mode: 'pn' }), null);
  assert.equal(stanzaAddressing({ from: '1@lid', sender_pn: '2@s.whatsapp.net' }), null, 'no id');
  assert.equal(stanzaAddressing({ id: 'X', sender_pn: 'x'.repeat(500) }), null, 'too long');
});

test('polls are kept with the auth state, so a vote is read after a restart; the newest only', async () => {
  const { ctx, sock } = await started();
  const secret = Buffer.alloc(32, 7);
  const poll = (id) => proto.WebMessageInfo.fromObject({
    key: { id, remoteJid: '1@s.whatsapp.net' },
    message: { pollCreationMessage: { name: 'Lunch?', options: [{ optionName: 'yes' }], selectableOptionsCount: 1 }, messageContextInfo: { messageSecret: secret } },
  });
  sock.ev.emit('messages.upsert', { type: 'notify', messages: [poll('P1')] });
  await new Promise((r) => setImmediate(r));
  const saved = ctx.authFrames.find((f) => f.keys && f.keys[POLL_KIND]);
  assert.deepEqual(Object.keys(saved.keys[POLL_KIND]), ['P1']);
  assert.equal(saved.keys[POLL_KIND].P1.messageContextInfo.messageSecret.data, secret.toString('base64'));
  // a new bridge: the API process hands the saved keys back at start (JSON, Buffers revived)
  const seeded = JSON.parse(JSON.stringify(saved.keys), reviveBuffers);
  const ctx2 = fakeCtx();
  const lib2 = fakeLib();
  await new BaileysSession(ctx2, lib2).start({ auth: { creds: { registered: true }, keys: seeded } });
  const back = await lib2.configs[0].getMessage({ id: 'P1' });
  assert.equal(back.pollCreationMessage.name, 'Lunch?');
  assert.deepEqual(Buffer.from(back.messageContextInfo.messageSecret), secret);
  assert.equal(await lib2.configs[0].getMessage({ id: 'nope' }), undefined);
  // the newest POLLS_KEPT only: the oldest is deleted as the next one comes
  for (let i = 0; i < POLLS_KEPT; i += 1) lib2.sockets[0].ev.emit('messages.upsert', { type: 'notify', messages: [poll(`Q${i}`)] });
  await new Promise((r) => setImmediate(r));
  const deleted = ctx2.authFrames.filter((f) => f.keys && f.keys[POLL_KIND] && f.keys[POLL_KIND].P1 === null);
  assert.equal(deleted.length, 1);
});

test('polls from a history sync keep the secret on their WebMessageInfo; the newest by time are kept', async () => {
  const { ctx, sock } = await started();
  const secret = Buffer.alloc(32, 9);
  const poll = (id, t, withSecret = true) => proto.WebMessageInfo.fromObject({
    key: { id, remoteJid: '1@s.whatsapp.net' },
    messageTimestamp: t,
    ...(withSecret ? { messageSecret: secret } : {}),
    message: { pollCreationMessageV3: { name: `poll ${id}`, options: [{ optionName: 'a' }], selectableOptionsCount: 1 } },
  });
  // newer live polls first, then a history chunk of older ones (and one without a secret)
  for (let i = 0; i < POLLS_KEPT; i += 1) sock.ev.emit('messages.upsert', { type: 'notify', messages: [poll(`L${i}`, 2000 + i)] });
  sock.ev.emit('messaging-history.set', { messages: [poll('H1', 1000), poll('H2', 1001, false)], isLatest: true });
  await new Promise((r) => setImmediate(r));
  const writes = ctx.authFrames.filter((f) => f.keys && f.keys[POLL_KIND]).map((f) => f.keys[POLL_KIND]);
  const last = writes[writes.length - 1];
  assert.equal(last.H1, null, 'an older history poll does not push out newer ones');
  assert.ok(!writes.some((w) => w.H2), 'a poll without a secret is not kept');
  assert.equal(writes[0].L0.messageContextInfo.messageSecret.data, secret.toString('base64'), 'the WebMessageInfo secret');
  assert.equal(writes[0].L0.t, 2000);
});
