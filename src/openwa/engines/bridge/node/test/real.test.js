'use strict';
// The real libraries, through bridge.js as a child process, with no internet: each
// session is pointed at a proxy on 127.0.0.1 that records the CONNECT and refuses it.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { refusingProxy, spawnBridge } = require('../test-support/helpers');

const CHROMIUM = '/usr/bin/chromium';

/** Processes (not zombies) whose command line mentions `needle`. */
function processesMentioning(needle) {
  const found = [];
  for (const pid of fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      if (stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')) continue;
      if (fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(needle)) found.push(Number(pid));
    } catch { /* gone meanwhile */ }
  }
  return found;
}

/** Chromium processes whose profile lies under `dir` (the bridge's own command line names `dir` too). */
const chromiumsOf = (dir) => processesMentioning(`--user-data-dir=${dir}`);

async function eventually(fn, ms, what) {
  const deadline = Date.now() + ms;
  for (;;) {
    if (fn()) return;
    if (Date.now() > deadline) throw new Error(`never: ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

test('Baileys: the session dials web.whatsapp.com through its proxy; the refusal comes back as close', { timeout: 40000 }, async () => {
  const proxy = await refusingProxy();
  const bridge = spawnBridge('baileys');
  try {
    const hello = await bridge.peer.waitFor((f) => f.kind === 'hello');
    assert.equal(hello.library, '6.17.16');
    const r = await bridge.peer.command('start', 's1', { auth: null, proxy: proxy.url, qrTimeoutS: 60 });
    assert.deepEqual(r.result, {});
    await proxy.waitFor((line) => line.startsWith('CONNECT web.whatsapp.com:443 '));
    const close = await bridge.peer.waitFor((f) => f.kind === 'event' && f.session === 's1'
      && f.name === 'connection.update' && f.data.connection === 'close', 30000, 'close');
    assert.equal(close.data.lastDisconnect.statusCode, 408);
    assert.equal(close.data.lastDisconnect.httpStatus, 403);
    const creds = bridge.peer.frames.find((f) => f.kind === 'auth' && f.creds);
    assert.equal(creds.creds.noiseKey.public.type, 'Buffer', 'a new device reports its creds');
    const send = await bridge.peer.command('send', 's1', { id: 'ABC', chatId: '1@s.whatsapp.net', type: 'text', content: { text: 'x' } });
    assert.equal(send.error.kind, 'not_ready');
  } finally {
    bridge.peer.socket.end(); // the parent going away: the bridge must exit by itself
    const { code } = await bridge.exited;
    assert.equal(code, 0, bridge.stderr());
    await proxy.close();
  }
});

test('whatsapp-web.js: Chromium dials web.whatsapp.com through the proxy; stop leaves no Chromium', { timeout: 60000, skip: fs.existsSync(CHROMIUM) ? false : `no Chromium at ${CHROMIUM}: install Debian's chromium to run this test` }, async () => {
  const proxy = await refusingProxy();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bridge-webjs-'));
  const bridge = spawnBridge('webjs', ['--transfer-dir', dir]);
  try {
    const hello = await bridge.peer.waitFor((f) => f.kind === 'hello');
    assert.equal(hello.library, '1.34.7');
    const r = await bridge.peer.command('start', 's1', { proxy: proxy.url, chromiumPath: CHROMIUM });
    assert.deepEqual(r.result, {});
    await proxy.waitFor((line) => line.startsWith('CONNECT web.whatsapp.com:443 '));
    const failed = await bridge.peer.waitFor((f) => f.kind === 'event' && f.name === 'init_failed', 30000, 'init_failed');
    assert.match(failed.data.message, /ERR_TUNNEL_CONNECTION_FAILED|ERR_/);
    const stop = await bridge.peer.command('stop', 's1');
    assert.deepEqual(stop.result, {});
    await eventually(() => chromiumsOf(dir).length === 0, 10000, 'no Chromium left after stop');
  } finally {
    bridge.peer.socket.end();
    const { code } = await bridge.exited;
    assert.equal(code, 0, bridge.stderr());
    await proxy.close();
    assert.deepEqual(chromiumsOf(dir), []);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('whatsapp-web.js: the parent dying mid-start leaves no Chromium either', { timeout: 60000, skip: fs.existsSync(CHROMIUM) ? false : `no Chromium at ${CHROMIUM}` }, async () => {
  const proxy = await refusingProxy();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bridge-webjs-'));
  const bridge = spawnBridge('webjs', ['--transfer-dir', dir]);
  try {
    await bridge.peer.waitFor((f) => f.kind === 'hello');
    await bridge.peer.command('start', 's1', { proxy: proxy.url, chromiumPath: CHROMIUM });
    await eventually(() => chromiumsOf(dir).length > 0, 20000, 'Chromium started');
    bridge.peer.socket.destroy();
    const { code } = await bridge.exited;
    assert.ok(code === 0 || code === 1, `exit ${code}`);
    await eventually(() => chromiumsOf(dir).length === 0, 5000, 'no Chromium left after the bridge exited');
  } finally {
    await proxy.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('Baileys: its socket hands each message stanza to our listener as well as its own', { timeout: 40000 }, async () => {
  // The bridge reads the stanza's other addresses (a LID sender's number) from the
  // library's `CB:message` emission, which the pinned version makes for every stanza.
  const { BaileysSession, loadBaileys } = require('../lib/baileys');
  const proxy = await refusingProxy();
  const events = [];
  const ctx = {
    session: 's1', log: () => {}, auth: () => {}, scope: (fn) => fn(),
    event: (name, data) => events.push({ name, data }),
  };
  const session = new BaileysSession(ctx, loadBaileys());
  try {
    await session.start({ auth: null, proxy: proxy.url, qrTimeoutS: 60 });
    const listeners = session.sock.ws.listeners('CB:message');
    assert.ok(listeners.length >= 2, 'Baileys\' listener and ours');
    // ours alone (Baileys' would try to decrypt the made-up stanza)
    listeners.at(-1)({ tag: 'message', attrs: { id: 'M1', from: '1@lid', sender_pn: '2@s.whatsapp.net' } });
    assert.deepEqual(session.addressing.get('M1'), { sender_pn: '2@s.whatsapp.net' });
  } finally {
    session.endSocket();
    await proxy.close();
  }
});

test('whatsapp-web.js: what the bridge relies on is in the pinned library', () => {
  const { Client, Events } = require('whatsapp-web.js');
  // the number behind a LID, asked of the page
  assert.equal(typeof Client.prototype.getContactLidAndPhone, 'function');
  // a chat's unread count changing: at zero, read on the phone
  assert.equal(Events.UNREAD_COUNT, 'unread_count');
});
