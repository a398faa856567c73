'use strict';
// The wire between the bridge and OpenWA's Python side (docs/bridge.md): JSON frames,
// one per line, binary values as {"type": "Buffer", "data": "<base64>"}.
//
// This module must not load Baileys or whatsapp-web.js: a webjs bridge should not pay
// for Baileys' memory just to frame its lines.

const VERSION = 1;
const MAX_LINE = 64 * 1024 * 1024; // docs/bridge.md: at most 64 MiB a frame

// A single field larger than this is left out of an event rather than sent: media
// never rides in a frame, so a value this large is a library internal, not data.
const MAX_FIELD = 8 * 1024 * 1024;

const ERROR_KINDS = new Set([
  'bad_request', 'expired', 'no_session', 'not_ready', 'pairing', 'send_failed', 'refused', 'internal',
]);

/** An error the bridge answers a command with: its `kind` is one of docs/bridge.md's. */
class BridgeError extends Error {
  constructor(kind, message, { retryable = false } = {}) {
    super(message);
    if (!ERROR_KINDS.has(kind)) throw new TypeError(`unknown error kind ${kind}`);
    this.name = 'BridgeError';
    this.kind = kind;
    this.retryable = retryable;
  }

  toWire() {
    return { kind: this.kind, message: this.message, retryable: this.retryable };
  }
}

const badRequest = (message) => new BridgeError('bad_request', message);
const notReady = (message = 'the session is not connected') =>
  new BridgeError('not_ready', message, { retryable: true });

/** The wire form of any thrown value: a BridgeError keeps its kind, anything else is `internal`. */
function errorToWire(err, fallbackKind = 'internal') {
  if (err instanceof BridgeError) return err.toWire();
  const message = err && err.message ? String(err.message) : String(err);
  return { kind: fallbackKind, message, retryable: false };
}

// ---------------------------------------------------------------------------------------
// JSON-safe values

function isLong(value) {
  // protobufjs' Long (timestamps of decoded messages), without depending on the `long` package
  return value !== null && typeof value === 'object' && value.__isLong__ === true
    && typeof value.toNumber === 'function';
}

function isProtoMessage(value) {
  // Baileys' WAProto classes are protobufjs static code: every instance's constructor has
  // `toObject` and `decode`. Their own toJSON would turn enums into names and bytes into
  // bare base64 while the same fields in Baileys' plain objects are numbers and Buffers;
  // converting here keeps one form on the wire.
  const ctor = value && value.constructor;
  return Boolean(ctor && ctor !== Object && typeof ctor.toObject === 'function'
    && typeof ctor.decode === 'function');
}

const PROTO_OPTIONS = { longs: Number, enums: Number, defaults: false };

/**
 * A copy of `value` that JSON.stringify writes as the wire wants: Buffers and
 * Uint8Arrays as {"type": "Buffer", "data": base64}, protobuf messages as plain objects
 * (enums as numbers), Longs and bigints as numbers (or strings when too large),
 * Dates as ISO strings, Errors as {name, message, statusCode?}. Functions, circular
 * references and fields over MAX_FIELD are left out (`onDrop(path, why)` hears of them).
 */
function toWireValue(value, onDrop = () => {}) {
  const seen = new Set();
  const walk = (v, path) => {
    if (v === null || v === undefined) return v;
    switch (typeof v) {
      case 'string':
        if (v.length > MAX_FIELD) { onDrop(path, 'too large'); return undefined; }
        return v;
      case 'number':
        return Number.isFinite(v) ? v : null;
      case 'boolean':
        return v;
      case 'bigint':
        return Number.isSafeInteger(Number(v)) ? Number(v) : v.toString();
      case 'function':
      case 'symbol':
        return undefined;
      default:
        break;
    }
    if (Buffer.isBuffer(v) || v instanceof Uint8Array) {
      if (v.length > MAX_FIELD) { onDrop(path, 'too large'); return undefined; }
      return { type: 'Buffer', data: Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64') };
    }
    if (v instanceof ArrayBuffer) return walk(new Uint8Array(v), path);
    if (isLong(v)) {
      const n = v.toNumber();
      return Number.isSafeInteger(n) ? n : v.toString();
    }
    if (v instanceof Date) return Number.isNaN(v.getTime()) ? null : v.toISOString();
    if (seen.has(v)) { onDrop(path, 'circular'); return undefined; }
    seen.add(v);
    try {
      if (isProtoMessage(v)) return walk(v.constructor.toObject(v, PROTO_OPTIONS), path);
      if (v instanceof Error) {
        const out = { name: v.name, message: v.message };
        const status = v.output && v.output.statusCode;
        if (status !== undefined) out.statusCode = status;
        return out;
      }
      if (Array.isArray(v)) {
        return v.map((item, i) => {
          const w = walk(item, `${path}[${i}]`);
          return w === undefined ? null : w; // JSON would write null for a hole anyway
        });
      }
      if (v instanceof Map) return walk(Object.fromEntries(v), path);
      if (v instanceof Set) return walk([...v], path);
      if (typeof v.toJSON === 'function' && !isPlainObject(v)) {
        return walk(v.toJSON(), path);
      }
      const out = {};
      for (const key of Object.keys(v)) {
        const w = walk(v[key], path ? `${path}.${key}` : key);
        if (w !== undefined) out[key] = w;
      }
      return out;
    } finally {
      seen.delete(v); // only the current path counts: a shared (non-circular) object is fine
    }
  };
  return walk(value, '');
}

function isPlainObject(v) {
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

/** JSON.parse reviver: {"type": "Buffer", "data": "<base64>"} back to a Buffer. */
function reviveBuffers(key, value) {
  if (value !== null && typeof value === 'object' && value.type === 'Buffer'
      && typeof value.data === 'string' && Object.keys(value).length === 2) {
    return Buffer.from(value.data, 'base64');
  }
  return value;
}

/** The wire bytes of one frame (a JSON line), with `v` set. */
function encodeFrame(frame, onDrop) {
  return JSON.stringify(toWireValue({ v: VERSION, ...frame }, onDrop)) + '\n';
}

// ---------------------------------------------------------------------------------------
// Framing

/**
 * Splits a byte stream into lines. A line longer than `maxLine` is skipped whole
 * (`onOversize(length)`), the lines after it are read normally.
 */
class LineReader {
  constructor({ onLine, onOversize = () => {}, maxLine = MAX_LINE }) {
    this.onLine = onLine;
    this.onOversize = onOversize;
    this.maxLine = maxLine;
    this.parts = [];
    this.length = 0;
    this.skipping = false; // inside an over-long line, dropping bytes up to its newline
    this.skipped = 0;
  }

  push(chunk) {
    let start = 0;
    while (start < chunk.length) {
      const nl = chunk.indexOf(0x0a, start);
      const end = nl === -1 ? chunk.length : nl;
      const piece = chunk.subarray(start, end);
      if (this.skipping) {
        this.skipped += piece.length;
      } else if (this.length + piece.length > this.maxLine) {
        // keep nothing of it: holding 64 MiB of a line we will drop helps nobody
        this.skipping = true;
        this.skipped = this.length + piece.length;
        this.parts = [];
        this.length = 0;
      } else if (piece.length) {
        this.parts.push(piece);
        this.length += piece.length;
      }
      if (nl === -1) break;
      this.endLine();
      start = nl + 1;
    }
  }

  endLine() {
    if (this.skipping) {
      this.onOversize(this.skipped);
      this.skipping = false;
      this.skipped = 0;
      return;
    }
    const line = this.parts.length === 1 ? this.parts[0] : Buffer.concat(this.parts, this.length);
    this.parts = [];
    this.length = 0;
    if (line.length) this.onLine(line.toString('utf8'));
  }
}

/**
 * Writes frames to a stream one after the other, in the order given, waiting for
 * 'drain' when the stream's buffer is full (so a slow reader slows the writer's queue,
 * not node's internal buffer). `send` resolves once the frame is handed to the stream.
 */
class FrameWriter {
  constructor(stream, { onError = () => {}, maxLine = MAX_LINE } = {}) {
    this.stream = stream;
    this.onError = onError;
    this.maxLine = maxLine;
    this.queue = [];
    this.waiting = false;
    this.closed = false;
    this.pumping = false;
    stream.on('drain', () => { this.waiting = false; this.pump(); });
    stream.on('close', () => this.close());
  }

  send(frame) {
    if (this.closed) return Promise.resolve(false);
    let line;
    try {
      line = encodeFrame(frame, (path, why) => this.onError(new Error(`${frame.kind} ${frame.name || ''}: left out ${path} (${why})`)));
    } catch (err) {
      this.onError(err);
      return Promise.resolve(false);
    }
    if (Buffer.byteLength(line) > this.maxLine) {
      this.onError(new Error(`${frame.kind} ${frame.name || ''} frame over ${this.maxLine} bytes: not sent`));
      return Promise.resolve(false);
    }
    return new Promise((resolve) => {
      this.queue.push({ line, resolve });
      this.pump();
    });
  }

  pump() {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (!this.waiting && !this.closed && this.queue.length) {
        const { line, resolve } = this.queue.shift();
        const ok = this.stream.write(line);
        resolve(true);
        if (!ok) this.waiting = true;
      }
    } catch (err) {
      this.onError(err);
      this.close();
    } finally {
      this.pumping = false;
    }
  }

  /** Frames still queued are dropped: the reader is gone. */
  close() {
    this.closed = true;
    for (const { resolve } of this.queue.splice(0)) resolve(false);
  }

  get pending() {
    return this.queue.length;
  }
}

// Arguments of an op, checked: a missing one is the caller's mistake (`bad_request`).
function requireString(args, name) {
  const v = args[name];
  if (typeof v !== 'string' || !v) throw badRequest(`${name} is required`);
  return v;
}

function groupIdOf(args) {
  const v = args.groupId !== undefined ? args.groupId : args.group;
  if (typeof v !== 'string' || !v) throw badRequest('groupId is required');
  return v;
}

module.exports = {
  VERSION,
  MAX_LINE,
  MAX_FIELD,
  BridgeError,
  badRequest,
  notReady,
  requireString,
  groupIdOf,
  errorToWire,
  toWireValue,
  reviveBuffers,
  encodeFrame,
  LineReader,
  FrameWriter,
};
