'use strict';
// Test helpers: a bridge child process on fd 3, a recording proxy that refuses, frames.

const net = require('node:net');
const path = require('node:path');
const { spawn } = require('node:child_process');
const { LineReader } = require('../lib/protocol');

const BRIDGE = path.join(__dirname, '..', 'bridge.js');

/** An HTTP proxy on 127.0.0.1 that records each request line and refuses it (403). */
async function refusingProxy() {
  const seen = [];
  const waiters = [];
  const server = net.createServer((sock) => {
    let head = '';
    sock.on('error', () => {});
    sock.on('data', (chunk) => {
      head += chunk.toString('latin1');
      const end = head.indexOf('\r\n');
      if (end === -1) return;
      const line = head.slice(0, end);
      if (!seen.includes(line)) seen.push(line);
      for (const w of waiters.splice(0)) w();
      sock.end('HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
      head = '';
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    seen,
    async waitFor(predicate, ms = 30000) {
      const deadline = Date.now() + ms;
      while (!seen.some(predicate)) {
        if (Date.now() > deadline) throw new Error(`proxy never saw it; saw ${JSON.stringify(seen)}`);
        await new Promise((resolve) => { waiters.push(resolve); setTimeout(resolve, 200); });
      }
    },
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}

/** A channel end that collects frames and lets a test wait for one. */
class Peer {
  constructor(socket) {
    this.socket = socket;
    this.frames = [];
    this.waiters = [];
    this.nextId = 1;
    this.reader = new LineReader({ onLine: (line) => this.onFrame(JSON.parse(line)) });
    socket.on('data', (chunk) => this.reader.push(chunk));
    socket.on('error', () => {});
  }

  onFrame(frame) {
    this.frames.push(frame);
    for (const w of [...this.waiters]) w();
  }

  waitFor(predicate, ms = 20000, what = 'a frame') {
    return new Promise((resolve, reject) => {
      const check = () => {
        const hit = this.frames.find(predicate);
        if (hit) {
          clearTimeout(timer);
          this.waiters = this.waiters.filter((w) => w !== check);
          resolve(hit);
        }
      };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== check);
        reject(new Error(`timed out waiting for ${what}; frames: ${JSON.stringify(this.frames).slice(0, 2000)}`));
      }, ms);
      this.waiters.push(check);
      check();
    });
  }

  write(frame) {
    this.socket.write(JSON.stringify(frame) + '\n');
  }

  command(op, session, args, extra = {}) {
    const id = this.nextId++;
    this.write({ v: 1, id, op, session, args, ...extra });
    return this.waitFor((f) => f.kind === 'reply' && f.id === id, 60000, `reply ${id} (${op})`);
  }
}

/** Starts bridge.js with one end of a socket pair as fd 3; resolves with {child, peer}. */
function spawnBridge(engine, extraArgs = [], env = {}) {
  const child = spawn(process.execPath, [BRIDGE, '--fd', '3', '--engine', engine, ...extraArgs], {
    stdio: ['ignore', 'ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });
  let stderr = '';
  child.stderr.on('data', (d) => { stderr += d.toString(); });
  const peer = new Peer(child.stdio[3]);
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  return { child, peer, exited, stderr: () => stderr };
}

module.exports = { refusingProxy, Peer, spawnBridge, BRIDGE };
