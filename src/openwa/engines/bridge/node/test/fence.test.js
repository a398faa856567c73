'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const { Watchdog } = require('../lib/fence');

/** A clock and timers the test moves by hand: no test waits on real time. */
function fakeTime() {
  let now = 0;
  const pending = new Set();
  return {
    now: () => now,
    timers: {
      setTimeout: (fn, ms) => { const timer = { fn, at: now + ms }; pending.add(timer); return timer; },
      clearTimeout: (timer) => pending.delete(timer),
    },
    advance(ms) {
      const end = now + ms;
      for (;;) {
        const due = [...pending].filter((t) => t.at <= end).sort((a, b) => a.at - b.at)[0];
        if (!due) break;
        pending.delete(due);
        now = due.at;
        due.fn();
      }
      now = end;
    },
  };
}

function watched(afterMs = 1000) {
  const time = fakeTime();
  const silences = [];
  const dog = new Watchdog({ afterMs, onSilence: (ms) => silences.push(ms), now: time.now, timers: time.timers });
  dog.start();
  return { time, silences, dog };
}

test('a channel heard from within afterMs is never fenced', () => {
  const { time, silences, dog } = watched();
  for (let i = 0; i < 10; i += 1) {
    time.advance(900);
    dog.heard();
  }
  time.advance(999);
  assert.deepEqual(silences, []);
});

test('silence fences once afterMs has passed, again every afterMs it lasts, and a frame re-arms', () => {
  const { time, silences, dog } = watched();
  time.advance(600);
  dog.heard(); // the deadline moves with what was heard
  time.advance(999);
  assert.deepEqual(silences, []);
  time.advance(1);
  assert.deepEqual(silences, [1000]);
  time.advance(1000);
  assert.deepEqual(silences, [1000, 2000], 'still silent: fenced again (nothing left to close by then)');
  dog.heard();
  time.advance(999);
  assert.equal(silences.length, 2);
  time.advance(1);
  assert.deepEqual(silences, [1000, 2000, 1000]);
});

test('a stopped watchdog never fires; afterMs must be positive', () => {
  const { time, silences, dog } = watched();
  dog.stop();
  time.advance(10000);
  assert.deepEqual(silences, []);
  assert.throws(() => new Watchdog({ afterMs: 0, onSilence: () => {} }), TypeError);
});
