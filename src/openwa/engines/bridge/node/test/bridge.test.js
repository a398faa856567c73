'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const { PassThrough, Duplex } = require('node:stream');
const { Bridge } = require('../lib/bridge');
const { BridgeError, LineReader } = require('../lib/protocol');

/** A duplex pair: what the bridge writes comes out of `frames`; `write` feeds it. */
function harness(createSession, opts = {}) {
  const toBridge = new PassThrough();
  const fromBridge = new PassThrough();
  const channel = Duplex.from({ readable: toBridge, writable: fromBridge });
  const frames = [];
  const waiters = [];
  const reader = new LineReader({ onLine: (l) => { frames.push(JSON.parse(l)); waiters.forEach((w) => w()); } });
  fromBridge.on('data', (d) => reader.push(d));
  const exits = [];
  const logs = [];
  const bridge = new Bridge({
    engine: 'baileys', library: 'test', createSession, channel,
    log: (m) => logs.push(m), exit: (c) => exits.push(c), closeGraceMs: 300, ...opts,
  });
  bridge.run();
  const waitFor = (pred, ms = 2000) => new Promise((resolve, reject) => {
    const check = () => { const f = frames.find(pred); if (f) { resolve(f); return true; } return false; };
    if (check()) return;
    const t = setTimeout(() => reject(new Error(`no frame; got ${JSON.stringify(frames)}`)), ms);
    waiters.push(() => { if (check()) clearTimeout(t); });
  });
  const send = (obj) => toBridge.write(typeof obj === 'string' ? obj : JSON.stringify(obj) + '\n');
  const reply = (id) => waitFor((f) => f.kind === 'reply' && f.id === id);
  return { bridge, frames, send, reply, waitFor, exits, logs, toBridge };
}

class FakeSession {
  constructor(ctx) {
    this.ctx = ctx;
    this.started = null;
    this.stopped = 0;
    FakeSession.last = this;
  }
  async start(args) { this.started = args; this.ctx.event('connection.update', { connection: 'connecting' }); }
  async stop() { this.stopped += 1; }
  async logout() { this.loggedOut = true; }
  async command(op, args) {
    if (op === 'echo') return { args };
    if (op === 'slow') { await new Promise((r) => setTimeout(r, 50)); return { slow: true }; }
    if (op === 'refuse') throw new BridgeError('refused', 'not an admin');
    if (op === 'crash') throw new TypeError('oops');
    if (op === 'throw_later') { setTimeout(() => this.ctx.scope(() => { throw new Error('late'); }), 5); return {}; }
    throw new BridgeError('bad_request', `unknown op ${op}`);
  }
}

test('hello comes first', async () => {
  const h = harness((ctx) => new FakeSession(ctx));
  const hello = await h.waitFor(() => true);
  assert.equal(hello.kind, 'hello');
  assert.equal(hello.engine, 'baileys');
  assert.equal(hello.v, 1);
  assert.equal(hello.pid, process.pid);
  assert.equal(h.frames[0], hello);
});

test('start, commands, and one reply per id', async () => {
  const h = harness((ctx) => new FakeSession(ctx));
  h.send({ v: 1, id: 1, op: 'start', session: 's1', args: { auth: null } });
  assert.deepEqual((await h.reply(1)).result, {});
  await h.waitFor((f) => f.kind === 'event' && f.session === 's1' && f.name === 'connection.update');
  h.send({ v: 1, id: 2, op: 'slow', session: 's1' });
  h.send({ v: 1, id: 3, op: 'echo', session: 's1', args: { x: { type: 'Buffer', data: 'AQ==' } } });
  h.send({ v: 1, id: 2, op: 'echo', session: 's1' }); // id 2 still in flight: skipped
  const r3 = await h.reply(3);
  assert.deepEqual(r3.result.args.x, { type: 'Buffer', data: 'AQ==' }, 'Buffers revived and re-encoded');
  assert.deepEqual((await h.reply(2)).result, { slow: true });
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(h.frames.filter((f) => f.kind === 'reply' && f.id === 2).length, 1);
  h.send({ v: 1, id: 4, op: 'ping' });
  assert.equal((await h.reply(4)).result.sessions, 1);
});

test('error kinds: unknown op, no session, refused, internal, bad args', async () => {
  const h = harness((ctx) => new FakeSession(ctx));
  h.send({ v: 1, id: 1, op: 'start', session: 's1' });
  await h.reply(1);
  h.send({ v: 1, id: 2, op: 'frobnicate', session: 's1' });
  h.send({ v: 1, id: 3, op: 'echo', session: 'nobody' });
  h.send({ v: 1, id: 4, op: 'refuse', session: 's1' });
  h.send({ v: 1, id: 5, op: 'crash', session: 's1' });
  h.send({ v: 1, id: 6, op: 'echo' });
  h.send({ v: 1, id: 7, op: 'echo', session: 's1', args: [1] });
  h.send({ v: 1, id: 8, session: 's1' });
  assert.equal((await h.reply(2)).error.kind, 'bad_request');
  assert.equal((await h.reply(3)).error.kind, 'no_session');
  assert.deepEqual((await h.reply(4)).error, { kind: 'refused', message: 'not an admin', retryable: false });
  assert.deepEqual((await h.reply(5)).error, { kind: 'internal', message: 'oops', retryable: false });
  assert.equal((await h.reply(6)).error.kind, 'bad_request');
  assert.equal((await h.reply(7)).error.kind, 'bad_request');
  assert.equal((await h.reply(8)).error.kind, 'bad_request');
});

test('a command read after its deadline is not run', async () => {
  let ran = false;
  const h = harness((ctx) => { ran = true; return new FakeSession(ctx); });
  h.send({ v: 1, id: 1, op: 'start', session: 's1', deadline: Date.now() / 1000 - 1 });
  const r = await h.reply(1);
  assert.equal(r.error.kind, 'expired');
  assert.equal(ran, false);
  h.send({ v: 1, id: 2, op: 'start', session: 's1', deadline: Date.now() / 1000 + 60 });
  assert.deepEqual((await h.reply(2)).result, {});
});

test('bad frames: bad JSON and no id are skipped, a wrong version with an id is answered', async () => {
  const h = harness((ctx) => new FakeSession(ctx));
  h.send('this is not json\n');
  h.send('[1,2]\n');
  h.send({ v: 1, op: 'start', args: { auth: { creds: { noiseKey: 'SECRET-KEY-MATERIAL' } } } });
  h.send('{"v":1,"id":9,"op":"start","args":{"auth":"SECRET-KEY-MATERIAL"\n');
  h.send({ v: 1, op: 'ping' });
  h.send({ v: 2, id: 5, op: 'ping' });
  h.send({ v: 1, id: 6, op: 'ping' });
  const r5 = await h.reply(5);
  assert.equal(r5.error.kind, 'bad_request');
  assert.match(r5.error.message, /version/);
  await h.reply(6);
  assert.equal(h.frames.filter((f) => f.kind === 'reply').length, 2);
  assert.ok(h.logs.some((l) => /not JSON/.test(l)));
  // A bad frame is never echoed: a `start` carries the session's keys.
  assert.ok(!h.logs.some((l) => l.includes('SECRET-KEY-MATERIAL')), h.logs.join('\n'));
});

test('an over-long line is skipped and the channel goes on', async () => {
  const h = harness((ctx) => new FakeSession(ctx));
  h.bridge.reader.maxLine = 1000;
  h.send(`{"v":1,"id":1,"op":"ping","pad":"${'x'.repeat(5000)}"}\n`);
  h.send({ v: 1, id: 2, op: 'ping' });
  await h.reply(2);
  assert.equal(h.frames.filter((f) => f.id === 1).length, 0);
  assert.ok(h.logs.some((l) => /skipped a frame of/.test(l)));
});

test('a second start replaces the session; stop and logout end it', async () => {
  const created = [];
  const h = harness((ctx) => { const s = new FakeSession(ctx); created.push(s); return s; });
  h.send({ v: 1, id: 1, op: 'start', session: 's1' });
  h.send({ v: 1, id: 2, op: 'start', session: 's1' });
  await h.reply(1);
  await h.reply(2);
  assert.equal(created.length, 2);
  assert.equal(created[0].stopped, 1, 'the first client was closed before the second started');
  h.send({ v: 1, id: 3, op: 'logout', session: 's1' });
  await h.reply(3);
  assert.ok(created[1].loggedOut);
  h.send({ v: 1, id: 4, op: 'stop', session: 's1' });
  assert.equal((await h.reply(4)).error.kind, 'no_session');
});

test('an exception thrown later inside a session becomes bridge.error, the process lives', async () => {
  const h = harness((ctx) => new FakeSession(ctx));
  const handler = (err) => h.bridge.reportUncaught(err, 'uncaughtException');
  const listeners = process.listeners('uncaughtException');
  process.removeAllListeners('uncaughtException');
  process.on('uncaughtException', handler);
  try {
    h.send({ v: 1, id: 1, op: 'start', session: 's1' });
    await h.reply(1);
    h.send({ v: 1, id: 2, op: 'throw_later', session: 's1' });
    await h.reply(2);
    const ev = await h.waitFor((f) => f.kind === 'event' && f.name === 'bridge.error');
    assert.equal(ev.session, 's1');
    assert.equal(ev.data.message, 'late');
  } finally {
    process.removeListener('uncaughtException', handler);
    for (const l of listeners) process.on('uncaughtException', l);
  }
});

test('shutdown answers, closes the sessions and exits; so does the channel ending', async () => {
  const h = harness((ctx) => new FakeSession(ctx));
  h.send({ v: 1, id: 1, op: 'start', session: 's1' });
  await h.reply(1);
  const s = FakeSession.last;
  h.send({ v: 1, id: 2, op: 'shutdown' });
  await h.reply(2);
  while (!h.bridge.closing) await new Promise((r) => setImmediate(r));
  await h.bridge.closing;
  assert.equal(s.stopped, 1);
  assert.deepEqual(h.exits, [0]);

  const h2 = harness((ctx) => new FakeSession(ctx));
  h2.send({ v: 1, id: 1, op: 'start', session: 's1' });
  await h2.reply(1);
  const s2 = FakeSession.last;
  h2.toBridge.end();
  await new Promise((r) => setTimeout(r, 50));
  await h2.bridge.closing;
  assert.equal(s2.stopped, 1);
  assert.deepEqual(h2.exits, [0]);
});

test('a signal is left to the API process while the channel is open; a second one shuts down', async () => {
  const h = harness((ctx) => new FakeSession(ctx));
  h.send({ v: 1, id: 1, op: 'start', session: 's1' });
  await h.reply(1);
  const s = FakeSession.last;
  h.bridge.signalled('SIGINT');
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(h.bridge.closing, null, 'not shutting down');
  assert.equal(s.stopped, 0);
  // The API process stops the session as it always does (whatsapp-web.js saves then).
  h.send({ v: 1, id: 2, op: 'stop', session: 's1' });
  const stopped = await h.reply(2);
  assert.deepEqual(stopped.result, {}, JSON.stringify(stopped));
  assert.equal(s.stopped, 1);
  h.bridge.signalled('SIGINT');
  await h.bridge.closing;
  assert.deepEqual(h.exits, [0]);
});

test('a signal with the channel gone shuts down at once', async () => {
  const h = harness((ctx) => new FakeSession(ctx));
  h.bridge.channelGone = true;
  h.bridge.signalled('SIGTERM');
  await h.bridge.closing;
  assert.deepEqual(h.exits, [0]);
});

test('a session that will not close does not keep the process: exit after the grace, kill() called', async () => {
  let killed = false;
  const h = harness((ctx) => Object.assign(new FakeSession(ctx), {
    stop: () => new Promise(() => {}), kill: () => { killed = true; },
  }));
  h.send({ v: 1, id: 1, op: 'start', session: 's1' });
  await h.reply(1);
  h.bridge.shutdown('test');
  await new Promise((r) => setTimeout(r, 500));
  assert.deepEqual(h.exits, [1]);
  assert.ok(killed);
});

test('a silent API process gets every session fenced: closed, reported, not started again', async () => {
  const created = [];
  const h = harness((ctx) => { const s = new FakeSession(ctx); created.push(s); return s; }, { fenceAfterMs: 150 });
  try {
    h.send({ v: 1, id: 1, op: 'start', session: 's1' });
    h.send({ v: 1, id: 2, op: 'start', session: 's2' });
    await h.reply(1);
    await h.reply(2);
    const fenced = (session) => h.waitFor((f) => f.name === 'bridge.fenced' && f.session === session);
    for (const f of [await fenced('s1'), await fenced('s2')]) {
      assert.equal(f.kind, 'event');
      assert.match(f.data.reason, /^fenced: the API process stopped answering \(nothing for 0\.\d s\)$/);
    }
    assert.deepEqual(created.map((s) => s.stopped), [1, 1], 'closed as a stop closes them');
    assert.ok(!created.some((s) => s.loggedOut), 'never logged out');
    assert.equal(h.bridge.sessions.size, 0, 'nothing left to reconnect by itself');
    // The API process is back: the fenced session is gone until it starts it again.
    h.send({ v: 1, id: 3, op: 'echo', session: 's1' });
    assert.equal((await h.reply(3)).error.kind, 'no_session');
    h.send({ v: 1, id: 4, op: 'start', session: 's1' });
    await h.reply(4);
    assert.equal(created.length, 3);
    assert.equal(h.frames.filter((f) => f.name === 'bridge.fenced').length, 2);
  } finally {
    h.bridge.watchdog.stop();
  }
});

test('heartbeats keep the sessions: no fence while they come', async () => {
  const h = harness((ctx) => new FakeSession(ctx), { fenceAfterMs: 250 });
  const beat = setInterval(() => h.send({ v: 1, kind: 'heartbeat' }), 40);
  try {
    h.send({ v: 1, id: 1, op: 'start', session: 's1' });
    await h.reply(1);
    await new Promise((r) => setTimeout(r, 750)); // three times the fence's silence
    assert.equal(FakeSession.last.stopped, 0);
    assert.equal(h.frames.filter((f) => f.name === 'bridge.fenced').length, 0);
    assert.ok(!h.logs.some((l) => /skipped/.test(l)), 'a heartbeat is not a bad frame');
  } finally {
    clearInterval(beat);
    h.bridge.watchdog.stop();
  }
});
