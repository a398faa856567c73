'use strict';
// A session's auth changes on their way to the API process, and its word that they
// are saved (docs/bridge.md, Auth state changes). Each `auth` frame carries this
// adapter's `epoch` and a `seq` counting up from 1; once the API process has written an
// auth state that holds every frame up to some `seq`, it says so with the `auth_saved`
// op ({epoch, seq}), an ordinary command. One write covers every frame merged before
// it, so a burst of changes is settled by one answer, not one each.

const crypto = require('node:crypto');

// How long a change waits for that word before it fails. The API process writes the
// state within milliseconds normally (a large one within a second or so) and tries a
// failed write again every second; 15 s rides out a slow write or a short database
// outage. Longer would stall the session: Baileys handles one received message at a
// time, each waiting here in turn, and a paused API process is not the case this
// covers (the bridge fences itself after half a lease, 7.5 s by default, which settles
// every wait). A failed wait makes Baileys' decrypt fail: it asks the sender for the
// message again (a retry receipt) instead of taking it, so nothing is accepted that a
// crash could lose.
const SAVE_WAIT_MS = 15000;

class AuthAcks {
  /**
   * @param {(frame: object) => unknown} send  the session's `ctx.auth`; a promise of
   *   `false` means the frame was not written (the channel is gone)
   * @param {object} [opts]
   * @param {number} [opts.waitMs]  see SAVE_WAIT_MS
   */
  constructor(send, { waitMs = SAVE_WAIT_MS } = {}) {
    this.sendFrame = send;
    this.waitMs = waitMs;
    // Names this adapter's frames: an answer about another adapter's (a session started
    // again, a bridge restarted, each counting from 1) settles nothing here.
    this.epoch = crypto.randomBytes(8).toString('hex');
    this.seq = 0;
    this.saved = 0; // every frame up to this one is saved
    this.waiting = new Set(); // {seq, resolve, reject, timer}
    this.closed = null; // the error pending and later waits fail with
  }

  /**
   * Sends `payload` as an auth frame and returns its `seq` and whether it was written.
   * Nothing waits for it: Baileys' `creds.update` is an event it does not wait on.
   */
  send(payload) {
    this.seq += 1;
    const seq = this.seq;
    return { seq, written: this.sendFrame({ ...payload, epoch: this.epoch, seq }) };
  }

  /**
   * Sends `payload` and resolves once the API process has saved it, or rejects: after
   * `waitMs`, when the frame could not be written, or when the session closes.
   */
  report(payload) {
    const { seq, written } = this.send(payload);
    if (this.closed) return Promise.reject(this.closed);
    return new Promise((resolve, reject) => {
      const entry = { seq, resolve, reject };
      entry.timer = setTimeout(
        () => this.settle(entry, new Error(`auth change ${seq} not saved by the API process within ${this.waitMs} ms`)),
        this.waitMs,
      );
      this.waiting.add(entry);
      // An unwritten frame never reaches the API process: no later answer covers it.
      Promise.resolve(written).then((ok) => {
        if (ok === false) this.settle(entry, new Error(`auth change ${seq} could not be sent to the API process`));
      }, () => {});
    });
  }

  /**
   * The API process' `auth_saved`: every frame of `epoch` up to `seq` is saved. Whether
   * it was about this adapter's frames.
   */
  ack({ epoch, seq } = {}) {
    if (epoch !== this.epoch || !Number.isSafeInteger(seq)) return false;
    this.saved = Math.max(this.saved, Math.min(seq, this.seq));
    for (const entry of this.waiting) {
      if (entry.seq <= this.saved) this.settle(entry);
    }
    return true;
  }

  /** The session stopped: what waits fails now, and so does every later wait. */
  close(why = new Error('the session stopped before its auth change was saved')) {
    this.closed = why;
    for (const entry of this.waiting) this.settle(entry, why);
  }

  settle(entry, err) {
    if (!this.waiting.delete(entry)) return;
    clearTimeout(entry.timer);
    if (err) entry.reject(err);
    else entry.resolve();
  }

  get pending() {
    return this.waiting.size;
  }
}

module.exports = { AuthAcks, SAVE_WAIT_MS };
