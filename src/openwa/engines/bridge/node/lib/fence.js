'use strict';
// Fencing (docs/bridge.md, Heartbeats): the API process sends a heartbeat every third of
// `--fence-after-s`. A bridge that hears nothing from it for that long drops its
// sessions' connections: its API process is paused, hung or cut off, and another
// instance may have taken the sessions over (leases); two clients of one device take
// the connection from each other.

const { performance } = require('node:perf_hooks');

/**
 * Calls `onSilence(silentMs)` once the channel has been quiet for `afterMs` (every frame
 * read counts, `heard()`), and again every `afterMs` for as long as it stays quiet.
 * The clock is monotonic: a wall-clock jump neither fences nor delays a fence.
 */
class Watchdog {
  /**
   * @param {object} opts
   * @param {number} opts.afterMs
   * @param {(silentMs: number) => void} opts.onSilence
   * @param {() => number} [opts.now]  milliseconds, monotonic (tests give their own)
   * @param {{setTimeout: Function, clearTimeout: Function}} [opts.timers]  (tests)
   */
  constructor({ afterMs, onSilence, now = () => performance.now(), timers = { setTimeout, clearTimeout } }) {
    if (!(afterMs > 0)) throw new TypeError('afterMs must be a positive number');
    this.afterMs = afterMs;
    this.onSilence = onSilence;
    this.now = now;
    this.timers = timers;
    this.last = null;
    this.timer = null;
  }

  start() {
    this.last = this.now();
    this.schedule(this.afterMs);
  }

  /** A frame came from the API process. Cheap: no timer is touched. */
  heard() {
    this.last = this.now();
  }

  stop() {
    if (this.timer !== null) this.timers.clearTimeout(this.timer);
    this.timer = null;
  }

  schedule(ms) {
    this.timer = this.timers.setTimeout(() => this.check(), ms);
    // the channel keeps the process alive, never this timer
    if (this.timer && typeof this.timer.unref === 'function') this.timer.unref();
  }

  check() {
    const silent = this.now() - this.last;
    if (silent < this.afterMs) {
      this.schedule(this.afterMs - silent);
      return;
    }
    this.schedule(this.afterMs);
    this.onSilence(silent);
  }
}

module.exports = { Watchdog };
