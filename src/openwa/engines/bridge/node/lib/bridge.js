'use strict';
// One bridge process: reads commands, runs them on its sessions, answers each exactly
// once, and forwards what the sessions report (docs/bridge.md). Knows nothing of either
// library: an engine is a factory of session adapters (lib/baileys.js, lib/webjs.js).

const { AsyncLocalStorage } = require('node:async_hooks');
const {
  VERSION, BridgeError, badRequest, errorToWire, reviveBuffers, LineReader, FrameWriter,
} = require('./protocol');
const { Watchdog } = require('./fence');

// Which session an async chain works for, so an exception nobody caught can be reported
// to that session (as a `bridge.error` event) instead of killing the process.
const sessionScope = new AsyncLocalStorage();

// Ops that are the process' own; every other op names a session.
const PROCESS_OPS = new Set(['ping', 'shutdown']);
// Ops of a session's life: run one at a time per session, in arrival order.
const LIFECYCLE_OPS = new Set(['start', 'stop', 'logout']);

// How long closing the sessions may take before the process exits anyway.
const CLOSE_GRACE_MS = 4000;

class Bridge {
  /**
   * @param {object} opts
   * @param {string} opts.engine  `baileys` or `webjs` (for `hello`)
   * @param {(ctx) => object} opts.createSession  builds a session adapter (see lib/baileys.js)
   * @param {string} opts.library  the library's version (for `hello`)
   * @param {import('net').Socket|import('stream').Duplex} opts.channel
   * @param {(msg: string) => void} [opts.log]  to stderr
   * @param {(code: number) => void} [opts.exit]
   * @param {string} [opts.transferDir]
   * @param {number} [opts.fenceAfterMs]  fence after this long without a frame (lib/fence.js); unset: never
   */
  constructor({
    engine, library, createSession, channel, log, exit, transferDir, closeGraceMs, fenceAfterMs,
  }) {
    this.engine = engine;
    this.library = library;
    this.createSession = createSession;
    this.channel = channel;
    this.log = log || ((msg) => process.stderr.write(`[bridge ${process.pid}] ${msg}\n`));
    this.exit = exit || ((code) => process.exit(code));
    this.transferDir = transferDir || null;
    this.closeGraceMs = closeGraceMs === undefined ? CLOSE_GRACE_MS : closeGraceMs;
    this.sessions = new Map(); // session id -> adapter
    this.unclosed = new Set(); // adapters whose stop() has not finished (killed at exit)
    this.lifecycle = new Map(); // session id -> tail of its start/stop/logout chain
    this.inFlight = new Set(); // command ids not answered yet
    this.closing = null;
    this.watchdog = fenceAfterMs
      ? new Watchdog({ afterMs: fenceAfterMs, onSilence: (silentMs) => this.fence(silentMs) })
      : null;
    this.writer = new FrameWriter(channel, { onError: (err) => this.log(`write: ${err.message}`) });
    this.reader = new LineReader({
      onLine: (line) => this.onLine(line),
      onOversize: (n) => this.log(`skipped a frame of ${n} bytes (over 64 MiB)`),
    });
  }

  /** Says hello and starts reading; the process ends when the channel does. */
  run() {
    this.send({
      kind: 'hello', engine: this.engine, node: process.version, library: this.library, pid: process.pid,
    });
    this.channel.on('data', (chunk) => {
      if (this.watchdog) this.watchdog.heard();
      this.reader.push(chunk);
    });
    if (this.watchdog) this.watchdog.start();
    const gone = (why) => () => { this.channelGone = true; this.shutdown(`channel ${why}`); };
    this.channel.on('end', gone('ended'));
    this.channel.on('close', gone('closed'));
    this.channel.on('error', (err) => {
      this.channelGone = true;
      this.log(`channel error: ${err.message}`);
      this.shutdown('channel error');
    });
  }

  send(frame) {
    return this.writer.send(frame);
  }

  /** What a session adapter gets: its way to report events and auth changes. */
  sessionContext(session) {
    return {
      session,
      transferDir: this.transferDir,
      log: (msg) => this.log(`${session}: ${msg}`),
      event: (name, data) => this.send({ kind: 'event', session, name, data: data === undefined ? null : data }),
      auth: (payload) => this.send({ kind: 'auth', session, ...payload }),
      // Runs fn inside this session's scope (library callbacks the adapter registers).
      scope: (fn) => sessionScope.run({ session }, fn),
    };
  }

  /** A library failure no handler caught: log it, tell the session's owner if known. */
  reportUncaught(err, origin) {
    const store = sessionScope.getStore();
    const session = store && store.session;
    this.log(`${origin}${session ? ` in session ${session}` : ''}: ${err && err.stack ? err.stack : err}`);
    if (session) {
      this.send({
        kind: 'event',
        session,
        name: 'bridge.error',
        data: { origin, message: err && err.message ? String(err.message) : String(err) },
      });
    }
  }

  onLine(line) {
    let frame;
    try {
      frame = JSON.parse(line, reviveBuffers);
    } catch (err) {
      // never the frame itself: a `start` carries the session's keys
      this.log(`skipped a frame that is not JSON (${line.length} bytes): ${err.message}`);
      return;
    }
    if (frame === null || typeof frame !== 'object' || Array.isArray(frame)) {
      this.log(`skipped a frame that is not an object (${line.length} bytes)`);
      return;
    }
    if (frame.kind === 'heartbeat') return; // its arrival was all it had to say
    const { id } = frame;
    if (!Number.isSafeInteger(id) || id <= 0) {
      this.log(`skipped a frame without a valid id (op ${JSON.stringify(String(frame.op)).slice(0, 40)})`);
      return;
    }
    if (this.inFlight.has(id)) {
      // answering it would give that id two replies; the first command's answer stands
      this.log(`skipped command ${id}: that id is still being answered`);
      return;
    }
    this.inFlight.add(id);
    this.handle(frame).then(
      (result) => this.reply(id, { result: result === undefined ? {} : result }),
      (err) => {
        if (!(err instanceof BridgeError)) this.log(`command ${id} (${frame.op}): ${err && err.stack ? err.stack : err}`);
        this.reply(id, { error: errorToWire(err) });
      },
    );
  }

  reply(id, body) {
    this.inFlight.delete(id);
    return this.send({ kind: 'reply', id, ...body });
  }

  async handle(frame) {
    if (frame.v !== VERSION) throw badRequest(`protocol version ${JSON.stringify(frame.v)} is not ${VERSION}`);
    const { op, session, deadline } = frame;
    if (typeof op !== 'string') throw badRequest('op missing');
    if (deadline !== undefined && deadline !== null) {
      if (typeof deadline !== 'number') throw badRequest('deadline must be Unix seconds');
      if (Date.now() / 1000 > deadline) throw new BridgeError('expired', `${op} read after its deadline`);
    }
    const args = frame.args === undefined || frame.args === null ? {} : frame.args;
    if (typeof args !== 'object' || Array.isArray(args)) throw badRequest('args must be an object');
    if (this.closing) throw new BridgeError('not_ready', 'the bridge is shutting down', { retryable: true });

    if (PROCESS_OPS.has(op)) {
      if (op === 'ping') {
        return { sessions: this.sessions.size, rss: process.memoryUsage.rss() };
      }
      // shutdown: answer first, then go (the reply is the caller's only sign it was heard)
      setImmediate(() => this.shutdown('shutdown requested'));
      return {};
    }
    if (typeof session !== 'string' || !session) throw badRequest(`${op} needs a session`);
    return sessionScope.run({ session }, () => {
      if (LIFECYCLE_OPS.has(op)) return this.inLifecycle(session, () => this.lifecycleOp(op, session, args));
      const adapter = this.sessions.get(session);
      if (!adapter) throw new BridgeError('no_session', `no session ${session} in this bridge`);
      return adapter.command(op, args);
    });
  }

  inLifecycle(session, fn) {
    const prev = this.lifecycle.get(session) || Promise.resolve();
    const next = prev.catch(() => {}).then(fn);
    const tail = next.catch(() => {});
    this.lifecycle.set(session, tail);
    tail.then(() => { if (this.lifecycle.get(session) === tail) this.lifecycle.delete(session); });
    return next;
  }

  async lifecycleOp(op, session, args) {
    const current = this.sessions.get(session);
    if (op === 'start') {
      if (current) {
        // a start for a running session is a reconnect: the old client goes first
        this.sessions.delete(session);
        await this.closeAdapter(session, current);
      }
      const adapter = this.createSession(this.sessionContext(session));
      this.sessions.set(session, adapter);
      this.unclosed.add(adapter);
      try {
        await adapter.start({ transferDir: this.transferDir, ...args });
      } catch (err) {
        this.sessions.delete(session);
        await this.closeAdapter(session, adapter);
        throw err;
      }
      return {};
    }
    if (!current) throw new BridgeError('no_session', `no session ${session} in this bridge`);
    this.sessions.delete(session);
    if (op === 'stop') {
      await current.stop();
      this.unclosed.delete(current);
      return {};
    }
    try {
      await current.logout();
    } finally {
      await this.closeAdapter(session, current);
    }
    return {};
  }

  /**
   * Our API process has been silent for `silentMs`: every session's connection is
   * closed as `stop` closes it (auth and whatsapp-web.js' profile are kept), then
   * reported with a `bridge.fenced` event. The adapter is dropped, so nothing
   * reconnects by itself; the API process' next `start` brings the session back. Runs
   * in each session's lifecycle chain, after a start or stop already under way.
   */
  fence(silentMs) {
    if (this.closing || !this.sessions.size) return Promise.resolve();
    const reason = `fenced: the API process stopped answering (nothing for ${(silentMs / 1000).toFixed(1)} s)`;
    this.log(`${reason}: closing ${this.sessions.size} sessions`);
    return Promise.all([...this.sessions.keys()].map((session) => sessionScope.run({ session }, () =>
      this.inLifecycle(session, async () => {
        const adapter = this.sessions.get(session);
        if (!adapter) return; // stopped meanwhile
        this.sessions.delete(session);
        // no profile saved: another instance may run the session by now
        await this.closeAdapter(session, adapter, { save: false });
        this.send({ kind: 'event', session, name: 'bridge.fenced', data: { reason } });
      }))));
  }

  async closeAdapter(session, adapter, options = {}) {
    try {
      await adapter.stop(options);
      this.unclosed.delete(adapter);
    } catch (err) {
      this.log(`${session}: closing: ${err && err.message}`);
    }
  }

  /**
   * A signal to the process. We run in a process group of our own (a terminal's Ctrl-C
   * reaches only the API process), but a signal to every process of the service
   * (systemd's default KillMode) reaches us too: while the channel is open, the API process drives
   * the shutdown (it stops each session, whatsapp-web.js saving its profile then, and
   * asks us to go). Shutting down at once, every session closed unsaved, lost the link
   * of a whatsapp-web.js session made in the last minute (RemoteAuth's first save comes
   * a minute after it): a new QR after the restart. A second signal, or one with the
   * channel gone, shuts down at once.
   */
  signalled(signal) {
    this.signals = (this.signals || 0) + 1;
    if (this.signals === 1 && !this.channelGone) {
      this.log(`${signal}: the API process stops the sessions and then us (a second signal: at once)`);
      return;
    }
    this.shutdown(signal);
  }

  /**
   * Closes every session (keeping auth) and exits. Runs once; a hard deadline makes sure
   * the process never outlives its parent for long even if a client will not close.
   */
  shutdown(why) {
    if (this.closing) return this.closing;
    this.log(`shutting down: ${why}`);
    if (this.watchdog) this.watchdog.stop();
    const timer = setTimeout(() => {
      this.log('sessions did not close in time; exiting anyway');
      this.finish(1);
    }, this.closeGraceMs);
    // no profile saved: the API process is gone or closing, and would not take it
    const all = [...this.sessions.entries()].map(([session, adapter]) =>
      sessionScope.run({ session }, () => this.closeAdapter(session, adapter, { save: false })));
    this.sessions.clear();
    this.closing = Promise.all(all).then(() => {
      clearTimeout(timer);
      return this.flushThenFinish(0);
    });
    return this.closing;
  }

  async flushThenFinish(code) {
    // let the frames already queued (the shutdown reply, last events) reach the socket
    await new Promise((resolve) => {
      if (this.writer.closed || this.channel.destroyed || !this.channel.writable) return resolve();
      this.channel.end(resolve);
      setTimeout(resolve, 500).unref();
    });
    this.finish(code);
  }

  finish(code) {
    if (this.finished) return;
    this.finished = true;
    this.killUnclosed();
    this.exit(code);
  }

  /** Last resort at exit: end what a client left running (whatsapp-web.js' Chromium). */
  killUnclosed() {
    for (const adapter of this.unclosed) {
      try { if (adapter.kill) adapter.kill(); } catch { /* exiting anyway */ }
    }
    this.unclosed.clear();
  }
}

module.exports = { Bridge, sessionScope };
