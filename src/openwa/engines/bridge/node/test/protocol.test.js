'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const { PassThrough } = require('node:stream');
const {
  LineReader, FrameWriter, toWireValue, reviveBuffers, encodeFrame, BridgeError, errorToWire,
} = require('../lib/protocol');
const { proto, BufferJSON } = require('@whiskeysockets/baileys');

function collect(opts = {}) {
  const lines = [];
  const oversize = [];
  const reader = new LineReader({ onLine: (l) => lines.push(l), onOversize: (n) => oversize.push(n), ...opts });
  return { reader, lines, oversize };
}

test('lines split across chunks and several lines in one chunk', () => {
  const { reader, lines } = collect();
  reader.push(Buffer.from('{"a":'));
  reader.push(Buffer.from('1}\n{"b":2}\n{"c"'));
  reader.push(Buffer.from(':3}\n'));
  assert.deepEqual(lines, ['{"a":1}', '{"b":2}', '{"c":3}']);
});

test('a multi-byte character split between chunks survives', () => {
  const { reader, lines } = collect();
  const bytes = Buffer.from('{"t":"é😀"}\n');
  reader.push(bytes.subarray(0, 8));
  reader.push(bytes.subarray(8));
  assert.deepEqual(lines, ['{"t":"é😀"}']);
});

test('an over-long line is skipped whole, the next one is read', () => {
  const { reader, lines, oversize } = collect({ maxLine: 10 });
  reader.push(Buffer.from('0123456789'));
  reader.push(Buffer.from('abcdef'));
  reader.push(Buffer.from('ghi\nok\n'));
  assert.deepEqual(lines, ['ok']);
  assert.deepEqual(oversize, [19]);
});

test('Buffers and Uint8Arrays go out as {type: Buffer, data: base64} and come back', () => {
  const value = { a: Buffer.from([1, 2, 3]), b: new Uint8Array([255, 0]), nested: [{ c: Buffer.alloc(0) }] };
  const wire = toWireValue(value);
  assert.deepEqual(wire.a, { type: 'Buffer', data: 'AQID' });
  assert.deepEqual(wire.b, { type: 'Buffer', data: '/wA=' });
  const back = JSON.parse(JSON.stringify(wire), reviveBuffers);
  assert.ok(Buffer.isBuffer(back.a));
  assert.deepEqual([...back.a], [1, 2, 3]);
  assert.deepEqual([...back.b], [255, 0]);
  assert.equal(back.nested[0].c.length, 0);
});

test('our encoding is what Baileys BufferJSON reads, and the other way round', () => {
  const creds = { noiseKey: { private: Buffer.from('secret'), public: Buffer.from([9, 8]) } };
  const ours = JSON.stringify(toWireValue(creds));
  const viaBaileys = JSON.parse(ours, BufferJSON.reviver);
  assert.equal(viaBaileys.noiseKey.private.toString(), 'secret');
  const theirs = JSON.stringify(creds, BufferJSON.replacer);
  const viaUs = JSON.parse(theirs, reviveBuffers);
  assert.deepEqual([...viaUs.noiseKey.public], [9, 8]);
});

test('protobuf messages become plain objects: enums as numbers, Longs as numbers, bytes as Buffers', () => {
  const msg = proto.WebMessageInfo.fromObject({
    key: { remoteJid: '1@s.whatsapp.net', fromMe: true, id: 'ABC' },
    messageTimestamp: 1700000000,
    status: 2,
    message: { imageMessage: { caption: 'hi', mediaKey: Buffer.from([1, 2]), fileLength: 12345 } },
  });
  const wire = toWireValue(msg);
  assert.equal(wire.status, 2);
  assert.equal(wire.messageTimestamp, 1700000000);
  assert.equal(wire.message.imageMessage.fileLength, 12345);
  assert.deepEqual(wire.message.imageMessage.mediaKey, { type: 'Buffer', data: 'AQI=' });
  assert.equal(wire.key.id, 'ABC');
});

test('circular references, functions and Errors are made safe', () => {
  const a = { name: 'a', fn() {} };
  a.self = a;
  const err = new Error('boom');
  err.output = { statusCode: 401 };
  const dropped = [];
  const wire = toWireValue({ a, err, when: new Date(0), big: 10n }, (p, why) => dropped.push(`${p}:${why}`));
  assert.deepEqual(wire.a, { name: 'a' });
  assert.deepEqual(wire.err, { name: 'Error', message: 'boom', statusCode: 401 });
  assert.equal(wire.when, '1970-01-01T00:00:00.000Z');
  assert.equal(wire.big, 10);
  assert.deepEqual(dropped, ['a.self:circular']);
});

test('a shared (not circular) object is written at each place', () => {
  const shared = { x: 1 };
  assert.deepEqual(toWireValue({ a: shared, b: shared }), { a: { x: 1 }, b: { x: 1 } });
});

test('frames carry v: 1', () => {
  assert.deepEqual(JSON.parse(encodeFrame({ kind: 'reply', id: 3, result: {} })), { v: 1, kind: 'reply', id: 3, result: {} });
});

test('errors: kinds are checked, anything else is internal', () => {
  assert.throws(() => new BridgeError('nope', 'x'), TypeError);
  assert.deepEqual(errorToWire(new BridgeError('not_ready', 'later', { retryable: true })), { kind: 'not_ready', message: 'later', retryable: true });
  assert.deepEqual(errorToWire(new Error('x')), { kind: 'internal', message: 'x', retryable: false });
});

test('the writer keeps order and waits for drain', async () => {
  const stream = new PassThrough({ highWaterMark: 16 });
  const writer = new FrameWriter(stream);
  const sends = [];
  for (let i = 0; i < 50; i += 1) sends.push(writer.send({ kind: 'event', n: i }));
  assert.ok(writer.pending > 0, 'frames wait for the reader');
  let text = '';
  stream.on('data', (d) => { text += d; });
  await Promise.all(sends);
  const ns = text.trim().split('\n').map((l) => JSON.parse(l).n);
  assert.deepEqual(ns, [...Array(50).keys()]);
});

test('a frame over the limit is not sent, and says so', async () => {
  const stream = new PassThrough();
  const errors = [];
  const writer = new FrameWriter(stream, { maxLine: 100, onError: (e) => errors.push(e.message) });
  assert.equal(await writer.send({ kind: 'event', name: 'big', data: 'x'.repeat(200) }), false);
  assert.match(errors[0], /over 100 bytes/);
});
