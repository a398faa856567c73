#!/usr/bin/env node
'use strict';
// node bridge.js --fd 3 --engine baileys|webjs [--transfer-dir DIR] [--fence-after-s S]
//
// The channel to OpenWA is the socket on --fd (docs/bridge.md); stdout is left to the
// libraries' own printing and never carries a frame.

const net = require('node:net');
const { Bridge } = require('./lib/bridge');

function parseArgs(argv) {
  const out = { fd: null, engine: null, transferDir: null, fenceAfterS: null };
  for (let i = 0; i < argv.length; i += 1) {
    const [flag, inline] = argv[i].split('=', 2);
    const value = () => (inline !== undefined ? inline : argv[++i]);
    if (flag === '--fd') out.fd = Number(value());
    else if (flag === '--engine') out.engine = value();
    else if (flag === '--transfer-dir') out.transferDir = value();
    else if (flag === '--fence-after-s') out.fenceAfterS = Number(value());
    else throw new Error(`unknown argument ${argv[i]}`);
  }
  if (!Number.isInteger(out.fd) || out.fd < 0) throw new Error('--fd N is required');
  if (out.engine !== 'baileys' && out.engine !== 'webjs') throw new Error('--engine baileys|webjs is required');
  if (out.fenceAfterS !== null && !(out.fenceAfterS > 0)) throw new Error('--fence-after-s must be a positive number');
  return out;
}

function engineFactory(engine) {
  if (engine === 'baileys') {
    const { BaileysSession, loadBaileys } = require('./lib/baileys');
    const lib = loadBaileys();
    return { library: lib.version, createSession: (ctx) => new BaileysSession(ctx, lib) };
  }
  const { WebjsSession, loadWebjs } = require('./lib/webjs');
  const lib = loadWebjs();
  return { library: lib.version, createSession: (ctx) => new WebjsSession(ctx, lib) };
}

function main() {
  let args;
  try {
    args = parseArgs(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`bridge: ${err.message}\nusage: node bridge.js --fd 3 --engine baileys|webjs [--transfer-dir DIR] [--fence-after-s S]\n`);
    process.exit(2);
  }
  const { library, createSession } = engineFactory(args.engine);
  const channel = new net.Socket({ fd: args.fd, readable: true, writable: true });
  const bridge = new Bridge({
    engine: args.engine,
    library,
    createSession,
    channel,
    transferDir: args.transferDir,
    fenceAfterMs: args.fenceAfterS === null ? null : args.fenceAfterS * 1000,
  });
  // One session's bug must not end the others: report it to that session and go on.
  process.on('uncaughtException', (err) => bridge.reportUncaught(err, 'uncaughtException'));
  process.on('unhandledRejection', (err) => bridge.reportUncaught(err, 'unhandledRejection'));
  for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP']) {
    process.on(signal, () => bridge.signalled(signal));
  }
  // whatever way the process ends, no Chromium of ours stays behind
  process.on('exit', () => bridge.killUnclosed());
  bridge.run();
}

main();
