'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const { AuthAcks } = require('../lib/acks');

test('a frame the channel did not take fails at once, not after the wait', async () => {
  const acks = new AuthAcks(() => Promise.resolve(false), { waitMs: 60000 });
  await assert.rejects(acks.report({ keys: {} }), /could not be sent to the API process/);
  assert.equal(acks.pending, 0);
});

test('an answer naming a frame not sent yet settles only what was sent', async () => {
  const frames = [];
  const acks = new AuthAcks((frame) => frames.push(frame), { waitMs: 60000 });
  const first = acks.report({ keys: { session: { a: null } } });
  acks.ack({ epoch: acks.epoch, seq: 5 });
  await first;
  const later = acks.report({ keys: { session: { b: null } } });
  assert.equal(frames[1].seq, 2);
  assert.equal(acks.pending, 1, 'a later change waits for its own save');
  assert.equal(acks.ack({ epoch: acks.epoch, seq: 'x' }), false);
  acks.close();
  await assert.rejects(later, /the session stopped/);
});
