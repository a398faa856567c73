'use strict';
// Inbound media through the real library: a file encrypted the way WhatsApp's media
// servers hold it (Baileys' own encryptedStream), served from loopback in place of
// mmg.whatsapp.net, fetched and decrypted into the transfer directory.
const test = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');
const os = require('node:os');
const path = require('node:path');
const baileys = require('@whiskeysockets/baileys');
const { BaileysSession } = require('../lib/baileys');

async function encrypted(plain) {
  const { mediaKey, encWriteStream } = await baileys.encryptedStream(plain, 'image');
  const chunks = [];
  for await (const chunk of encWriteStream) chunks.push(chunk);
  return { mediaKey, body: Buffer.concat(chunks) };
}

async function serve(body) {
  const requests = [];
  const server = http.createServer((req, res) => {
    requests.push(req.url);
    res.writeHead(200, { 'content-length': body.length });
    res.end(body);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, requests, url: `http://127.0.0.1:${server.address().port}` };
}

function session(transferDir, maxMediaBytes = 1 << 20) {
  const s = new BaileysSession({ session: 's1', log: () => {}, event: () => {}, auth: () => {}, scope: (fn) => fn() });
  Object.assign(s, { transferDir, maxMediaBytes, downloadTimeoutS: 10, agent: undefined });
  return s;
}

test('an image is fetched from the direct path, decrypted and kept in the transfer directory', async () => {
  const plain = crypto.randomBytes(50_000);
  const { mediaKey, body } = await encrypted(plain);
  const media = await serve(body);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bridge-media-'));
  process.env.OPENWA_BRIDGE_MEDIA_URL = media.url;
  try {
    const message = { imageMessage: { mediaKey, directPath: '/v/t62/abc', url: 'http://169.254.169.254/evil', fileLength: plain.length } };
    const got = await session(dir).download({ type: 'image', media: message.imageMessage });
    assert.equal(got.size, plain.length);
    assert.deepEqual(fs.readFileSync(got.path), plain);
    assert.equal(fs.statSync(got.path).mode & 0o777, 0o600);
    // The sender's own `url` is never fetched: only WhatsApp's host, from the direct path.
    assert.deepEqual(media.requests, ['/v/t62/abc']);
  } finally {
    delete process.env.OPENWA_BRIDGE_MEDIA_URL;
    media.server.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('media over the size limit is refused and leaves no file', async () => {
  const plain = crypto.randomBytes(20_000);
  const { mediaKey, body } = await encrypted(plain);
  const media = await serve(body);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bridge-media-'));
  process.env.OPENWA_BRIDGE_MEDIA_URL = media.url;
  try {
    // It claims to be small, and is not: the bytes are counted as they come.
    const image = { mediaKey, directPath: '/v/big', fileLength: 10 };
    await assert.rejects(session(dir, 10_000).download({ type: 'image', media: image }), /size limit/);
    assert.deepEqual(fs.readdirSync(dir), []);
    // One that says so is not fetched at all.
    await assert.rejects(session(dir, 10_000).download({ type: 'image', media: { ...image, fileLength: 20_000 } }), /size limit/);
    assert.equal(media.requests.length, 1);
  } finally {
    delete process.env.OPENWA_BRIDGE_MEDIA_URL;
    media.server.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
