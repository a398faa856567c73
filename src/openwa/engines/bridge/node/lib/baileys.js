'use strict';
// One Baileys session (one WASocket). The library module is injected so tests can drive
// the adapter with a fake; `loadBaileys()` gives the real one.

const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const { BridgeError, badRequest, notReady, requireString, groupIdOf } = require('./protocol');
const { proxyAgent } = require('./proxy');
const { keepNewest } = require('./bounded');
const { stillUnread, unreadCounts } = require('./unread');

// Library events forwarded as they come (Python translates them). `chats.phoneNumberShare`
// is how Baileys 6.17.16 tells a LID's phone number; `lid-mapping.update` is listed for
// versions that have it (nothing subscribes to a name the library never emits).
const FORWARDED = [
  'connection.update',
  'messages.upsert',
  'messages.update',
  'message-receipt.update',
  'messages.reaction',
  'messages.delete',
  'presence.update',
  'chats.update',
  'chats.upsert',
  'chats.phoneNumberShare',
  'contacts.update',
  'contacts.upsert',
  'groups.update',
  'groups.upsert',
  'group-participants.update',
  'call',
  'messaging-history.set',
  'lid-mapping.update',
];

// The other address WhatsApp writes on a message stanza next to its sender and recipient:
// a LID-addressed sender's phone number (`participant_pn` in groups, `sender_pn` in direct
// chats), a number-addressed one's LID (`*_lid`), and the same for the recipient of a
// message we sent from another device (`peer_recipient_*`, as whatsmeow reads it, else
// `recipient_*`). Baileys 6.17.16 reads the stanza but passes none of
// them on, so a LID sender would stay a LID: the bridge keeps them by message id from the
// raw stanza and hands them over with the message's `messages.upsert` (`addressing`).
const ADDRESSING_ATTRS = [
  'addressing_mode',
  'participant_pn', 'sender_pn', 'peer_recipient_pn', 'recipient_pn',
  'participant_lid', 'sender_lid', 'peer_recipient_lid', 'recipient_lid',
];
// Stanzas whose message never comes (undecryptable, a retry) are forgotten past this many:
// room for an offline backlog, whose stanzas all arrive before Baileys decrypts them.
const ADDRESSING_KEPT = 20000;

/** The alternative addresses on a message stanza's attributes, or null when it has none. */
function stanzaAddressing(attrs) {
  if (!attrs || typeof attrs.id !== 'string' || !attrs.id) return null;
  const found = {};
  for (const name of ADDRESSING_ATTRS) {
    const value = attrs[name];
    if (typeof value === 'string' && value && value.length <= 200) found[name] = value;
  }
  return Object.keys(found).some((name) => name !== 'addressing_mode') ? found : null;
}

// proto.HistorySync.HistorySyncType.INITIAL_BOOTSTRAP: the chats as they are at the link.
const INITIAL_BOOTSTRAP = 0;
// What WhatsApp does not count as unread: messages that only change another one.
const NOT_COUNTED = new Set([
  'protocolMessage', 'reactionMessage', 'encReactionMessage', 'pollUpdateMessage', 'keepInChatMessage', 'pinInChatMessage',
]);
const BESIDE = new Set(['messageContextInfo', 'senderKeyDistributionMessage']);

/** Whether a history entry counts toward its chat's unread count (notices do not either). */
function countsAsUnread(info) {
  if (!info || !info.key || !info.message || info.messageStubType) return false;
  const kinds = Object.keys(info.message).filter((kind) => !BESIDE.has(kind));
  return kinds.length > 0 && !kinds.every((kind) => NOT_COUNTED.has(kind));
}

// A history sync can carry tens of thousands of messages: sent in frames of this many.
const HISTORY_CHUNK = 500;
// Polls kept with the session's auth state (a key kind of ours in the key store, saved by
// the API process with the rest), so that a vote is read after a bridge restart too: the
// newest this many by the poll's time, each only what decrypting a vote needs: the poll,
// its secret (on the message, or, in a history sync, on the WebMessageInfo) and its time.
const POLL_KIND = 'openwa-poll';
const POLLS_KEPT = 200;
const POLL_FIELDS = ['pollCreationMessage', 'pollCreationMessageV2', 'pollCreationMessageV3'];

// Our recent sends, for Baileys' getMessage (a recipient's retry request re-encrypts them).
const SENT_CACHE = 1000;

const PRESENCE = {
  typing: 'composing',
  recording: 'recording',
  paused: 'paused',
  available: 'available',
  unavailable: 'unavailable',
};

// Media that comes with a message, by its field; the value is Baileys' media type.
const MEDIA_FIELDS = {
  imageMessage: 'image',
  videoMessage: 'video',
  ptvMessage: 'video',
  audioMessage: 'audio',
  documentMessage: 'document',
  stickerMessage: 'sticker',
};
const WRAPPERS = ['ephemeralMessage', 'viewOnceMessage', 'viewOnceMessageV2', 'viewOnceMessageV2Extension', 'documentWithCaptionMessage'];
const DEFAULT_MAX_MEDIA_BYTES = 64 * 1024 * 1024;
const DEFAULT_DOWNLOAD_TIMEOUT_S = 300;

/** The media part of a message (unwrapped), or null. */
function mediaOf(message) {
  let m = message;
  for (let i = 0; m && i < 4; i += 1) {
    const wrapper = WRAPPERS.find((w) => m[w] && m[w].message);
    if (!wrapper) break;
    m = m[wrapper].message;
  }
  if (!m) return null;
  for (const [field, type] of Object.entries(MEDIA_FIELDS)) {
    if (m[field]) return { type, media: m[field] };
  }
  return null;
}

const GROUP_SETTINGS = {
  announce: ['announcement', 'not_announcement'],
  locked: ['locked', 'unlocked'],
};

function loadBaileys() {
  const lib = require('@whiskeysockets/baileys');
  return {
    makeWASocket: lib.default || lib.makeWASocket,
    initAuthCreds: lib.initAuthCreds,
    makeCacheableSignalKeyStore: lib.makeCacheableSignalKeyStore,
    proto: lib.proto,
    Browsers: lib.Browsers,
    areJidsSameUser: lib.areJidsSameUser,
    isJidGroup: lib.isJidGroup,
    downloadContentFromMessage: lib.downloadContentFromMessage,
    version: require('@whiskeysockets/baileys/package.json').version,
    pino: require('pino'),
  };
}

/**
 * Baileys' SignalKeyStore over an in-memory map seeded from the saved keys
 * (`{type: {id: value}}`). Every `set` is reported through `onSet(data)` (a `null` value
 * is a deletion) so the Python side keeps the same state in its store.
 */
function makeKeyStore(seed, onSet, proto) {
  const byType = new Map();
  for (const [type, values] of Object.entries(seed || {})) {
    byType.set(type, new Map(Object.entries(values || {}).filter(([, v]) => v !== null && v !== undefined)));
  }
  return {
    async get(type, ids) {
      const values = byType.get(type);
      const out = {};
      for (const id of ids) {
        let value = values ? values.get(id) : undefined;
        if (value !== undefined && type === 'app-state-sync-key' && proto) {
          // saved as plain JSON; Baileys wants the protobuf object back
          value = proto.Message.AppStateSyncKeyData.fromObject(value);
        }
        out[id] = value;
      }
      return out;
    },
    async set(data) {
      const report = {};
      for (const [type, values] of Object.entries(data || {})) {
        if (!byType.has(type)) byType.set(type, new Map());
        const map = byType.get(type);
        report[type] = {};
        for (const [id, value] of Object.entries(values || {})) {
          if (value === null || value === undefined) {
            map.delete(id);
            report[type][id] = null;
          } else {
            map.set(id, value);
            report[type][id] = value;
          }
        }
      }
      onSet(report);
    },
    // for tests and `ping`-style introspection
    size() {
      let n = 0;
      for (const m of byType.values()) n += m.size;
      return n;
    },
  };
}

/** The command's library failure in the wire's words. */
function mapError(err, { sending = false } = {}) {
  if (err instanceof BridgeError) return err;
  const message = err && err.message ? err.message : String(err);
  const status = err && err.output ? err.output.statusCode : undefined;
  // Baileys' "Connection Closed" (428) and friends: the socket is not up
  if (status === 428 || /connection (closed|terminated|lost)/i.test(message)) {
    return notReady(message);
  }
  // an error node in WhatsApp's answer: Boom carries its code as `data`
  const code = err && typeof err.data === 'number' ? err.data : undefined;
  if (code !== undefined && code >= 400 && code < 500 && !sending) {
    return new BridgeError('refused', `${message} (${code})`);
  }
  if (sending) {
    // Baileys sends under our id, so another try cannot duplicate the message, except
    // when WhatsApp refused it (a 4xx answer): trying again will not help then.
    const refused = code !== undefined && code >= 400 && code < 500;
    return new BridgeError('send_failed', message, { retryable: !refused });
  }
  return new BridgeError('internal', message);
}

// What the API made of a picture or clip (capped: src/openwa/media/details.py). A
// thumbnail given as null still counts as given: Baileys then makes none itself, where
// it would run ffmpeg on the file through a shell with no limit on what it may take.
function shownDetails(media) {
  const out = {
    jpegThumbnail: typeof media.thumbnail === 'string' ? Buffer.from(media.thumbnail, 'base64') : null,
  };
  if (Number.isInteger(media.width) && Number.isInteger(media.height)) {
    out.width = media.width;
    out.height = media.height;
  }
  if (Number.isInteger(media.seconds)) out.seconds = media.seconds;
  return out;
}

function mediaPath(content) {
  const media = content.media || content;
  const file = media.path;
  if (typeof file !== 'string' || !file) throw badRequest('media needs a path');
  if (!fs.existsSync(file)) throw badRequest(`media file ${file} does not exist`);
  return { path: file, mimetype: media.mimetype, filename: media.filename };
}

/**
 * sock.end(), then a listener for the error `ws` emits on the next tick when a socket
 * still connecting is closed: end() removed Baileys' own 'error' listeners, and an
 * 'error' nobody listens to would be thrown as an uncaught exception.
 */
function endQuietly(sock, err) {
  try {
    sock.end(err);
  } finally {
    if (sock.ws && typeof sock.ws.on === 'function'
      && (typeof sock.ws.listenerCount !== 'function' || sock.ws.listenerCount('error') === 0)) {
      sock.ws.on('error', () => {});
    }
  }
}

class BaileysSession {
  /**
   * @param {object} ctx  from Bridge.sessionContext: {session, event, auth, log, scope}
   * @param {object} [lib]  loadBaileys() or a fake with the same shape
   */
  constructor(ctx, lib, options = {}) {
    this.ctx = ctx;
    this.lib = lib || loadBaileys();
    this.agents = options.agentLoaders || {};
    this.sock = null;
    this.open = false;
    this.closed = false;
    this.sent = new Map(); // message id -> proto.IMessage, for getMessage
    // Polls we received, for getMessage too: Baileys decrypts a vote with its poll's
    // secret and reports it as `messages.update` `pollUpdates` (in memory: a vote on a
    // poll seen before this bridge started cannot be read).
    this.polls = new Map();
    this.addressing = new Map(); // message id -> stanzaAddressing(), until its upsert
  }

  async start({ auth, proxy, qrTimeoutS, browser, transferDir, maxMediaBytes, downloadTimeoutS } = {}) {
    const { lib, ctx } = this;
    let creds = auth && auth.creds;
    if (!creds) {
      creds = lib.initAuthCreds();
      // a new device: report its creds now, so the store never holds keys without them
      ctx.auth({ creds });
    }
    const store = makeKeyStore(auth && auth.keys, (keys) => ctx.auth({ keys }), lib.proto);
    // Baileys logs JSON to stdout unless given a logger; stdout is not our channel, but
    // keep it quiet there anyway and put warnings on stderr.
    const logger = lib.pino({ level: 'warn', base: { session: ctx.session } }, lib.pino.destination({ dest: 2, sync: true }));
    const agent = proxy ? await proxyAgent(proxy, this.agents) : undefined;
    this.agent = agent;
    this.transferDir = transferDir;
    this.maxMediaBytes = maxMediaBytes || DEFAULT_MAX_MEDIA_BYTES;
    this.downloadTimeoutS = downloadTimeoutS || DEFAULT_DOWNLOAD_TIMEOUT_S;
    // Events go on in order, including those that wait for a download.
    this.queue = Promise.resolve();
    this.waiting = 0;
    const config = {
      auth: { creds, keys: lib.makeCacheableSignalKeyStore(store, logger) },
      logger,
      browser: Array.isArray(browser) ? browser : lib.Browsers.ubuntu('Chrome'),
      printQRInTerminal: false,
      markOnlineOnConnect: false,
      syncFullHistory: false,
      getMessage: async (key) => this.sent.get(key.id) || this.polls.get(key.id) || this.savedPoll(key.id),
    };
    if (agent) {
      config.agent = agent;
      config.fetchAgent = agent;
    }
    if (typeof qrTimeoutS === 'number' && qrTimeoutS > 0) config.qrTimeout = Math.round(qrTimeoutS * 1000);
    this.creds = creds;
    this.keyStore = store;
    // the saved polls (id, time), oldest first, so the bound drops the oldest
    this.pollOrder = Object.entries((auth && auth.keys && auth.keys[POLL_KIND]) || {})
      .filter(([, value]) => value)
      .map(([id, value]) => [id, Number(value.t) || 0])
      .sort((a, b) => a[1] - b[1]);
    const sock = lib.makeWASocket(config);
    this.sock = sock;
    // Baileys' websocket client listens to 'unexpected-response' itself (to re-emit it),
    // which tells `ws` not to fail the upgrade: an HTTP answer instead of a websocket
    // (a proxy refusing CONNECT, replayed by https-proxy-agent) would leave the socket
    // `connecting` forever. End it as a lost connection (408: Python retries) naming the
    // HTTP status, rather than as WhatsApp's 403 `forbidden`, which it is not.
    if (sock.ws && typeof sock.ws.on === 'function') {
      sock.ws.on('unexpected-response', (req, res) => ctx.scope(() => {
        const status = res && res.statusCode;
        if (this.sock !== sock || this.closed) return;
        const err = new Error(`the websocket upgrade was answered with HTTP ${status} (a proxy refusing the connection?)`);
        err.output = { statusCode: 408 };
        err.httpStatus = status;
        endQuietly(sock, err);
      }));
    }
    if (sock.ws && typeof sock.ws.on === 'function') {
      // Baileys' own listener decrypts first (asynchronously): the message comes later.
      sock.ws.on('CB:message', (node) => ctx.scope(() => {
        if (this.sock !== sock) return;
        const found = stanzaAddressing(node && node.attrs);
        if (!found) return;
        keepNewest(this.addressing, node.attrs.id, found, ADDRESSING_KEPT);
      }));
    }
    sock.ev.on('creds.update', () => ctx.scope(() => {
      // the socket merged the update into `creds` already (its own listener came first)
      if (this.sock === sock) ctx.auth({ creds: this.creds });
    }));
    for (const name of FORWARDED) {
      sock.ev.on(name, (event) => ctx.scope(() => {
        if (this.sock !== sock) return; // a replaced socket's late events
        // taken now, not when the event's turn comes behind a download
        const data = name === 'messages.upsert' ? this.withAddressing(event) : event;
        // At once, unless a download is under way or needed: then in line behind it.
        if (!this.waiting && !this.needsDownload(name, data)) {
          this.forward(name, data);
          return;
        }
        this.waiting += 1;
        this.queue = this.queue
          .then(() => (this.sock === sock ? this.forwardWithMedia(name, data) : undefined))
          .catch((err) => ctx.log(`forwarding ${name}: ${err && err.message}`))
          .finally(() => { this.waiting -= 1; });
      }));
    }
  }

  /**
   * New messages' media is downloaded into the transfer directory before the event goes
   * on; the frame then says, by message id, where each file is (`media: {id: {path,
   * size}}`) or why there is none (`{error}`). History is not downloaded.
   */
  needsDownload(name, data) {
    return name === 'messages.upsert' && data.type === 'notify' && Boolean(this.transferDir)
      && (data.messages || []).some((info) => info && info.message && mediaOf(info.message));
  }

  async forwardWithMedia(name, data) {
    if (!this.needsDownload(name, data)) {
      this.forward(name, data);
      return;
    }
    const media = {};
    for (const info of data.messages || []) {
      const found = info && info.message ? mediaOf(info.message) : null;
      if (!found || !info.key || !info.key.id) continue;
      try {
        media[info.key.id] = await this.download(found);
      } catch (err) {
        media[info.key.id] = { error: String((err && err.message) || err) };
      }
    }
    this.forward(name, Object.keys(media).length ? { ...data, media } : data);
  }

  async download({ type, media }) {
    const size = Number(media.fileLength || 0);
    if (size > this.maxMediaBytes) throw new Error(`over the media size limit (${size} bytes)`);
    if (!media.mediaKey || !media.directPath) throw new Error('the message names no media to fetch');
    // Never the message's own `url`: the sender writes it, and it could name any host.
    // WhatsApp's media host, from the direct path; tests point it at loopback.
    const base = process.env.OPENWA_BRIDGE_MEDIA_URL;
    const download = { mediaKey: media.mediaKey, directPath: media.directPath, url: base ? base + media.directPath : undefined };
    const timeoutMs = this.downloadTimeoutS * 1000;
    const options = { timeout: timeoutMs, maxRedirects: 0 };
    if (this.agent) Object.assign(options, { httpAgent: this.agent, httpsAgent: this.agent, proxy: false });
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), timeoutMs);
    const file = path.join(this.transferDir, `in-${crypto.randomBytes(12).toString('hex')}`);
    try {
      const stream = await this.lib.downloadContentFromMessage(download, type, { options: { ...options, signal: controller.signal } });
      let written = 0;
      const out = fs.createWriteStream(file, { flags: 'wx', mode: 0o600 });
      try {
        for await (const chunk of stream) {
          written += chunk.length;
          if (written > this.maxMediaBytes) throw new Error('over the media size limit');
          if (!out.write(chunk)) await new Promise((resolve) => out.once('drain', resolve));
        }
      } finally {
        await new Promise((resolve) => out.end(resolve));
      }
      return { path: file, size: written };
    } catch (err) {
      await fs.promises.rm(file, { force: true });
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  rememberPolls(messages) {
    const saved = {};
    for (const info of messages || []) {
      const m = info && info.message;
      if (!m || !info.key || typeof info.key.id !== 'string') continue;
      if (m.pollCreationMessage || m.pollCreationMessageV2 || m.pollCreationMessageV3) {
        keepNewest(this.polls, info.key.id, m, SENT_CACHE);
        const secret = (m.messageContextInfo && m.messageContextInfo.messageSecret) || info.messageSecret;
        if (!secret || !secret.length) continue; // a vote on it could not be read anyway
        const t = Number(info.messageTimestamp) || Math.floor(Date.now() / 1000);
        const kept = { messageContextInfo: { messageSecret: secret }, t };
        for (const field of POLL_FIELDS) if (m[field]) kept[field] = m[field];
        saved[info.key.id] = kept;
        this.pollOrder = this.pollOrder.filter(([id]) => id !== info.key.id);
        this.pollOrder.push([info.key.id, t]);
      }
    }
    if (!Object.keys(saved).length || !this.keyStore) return;
    this.pollOrder.sort((a, b) => a[1] - b[1]);
    while (this.pollOrder.length > POLLS_KEPT) {
      const [id] = this.pollOrder.shift();
      saved[id] = null; // dropped, whether kept before or just now
    }
    this.keyStore.set({ [POLL_KIND]: saved }).catch((err) => this.ctx.log(`saving polls: ${err && err.message}`));
  }

  /** A poll kept with the auth state (see POLL_KIND), as the message Baileys wants back. */
  async savedPoll(id) {
    if (!this.keyStore || typeof id !== 'string') return undefined;
    const value = (await this.keyStore.get(POLL_KIND, [id]))[id];
    if (!value) return undefined;
    try {
      const message = { ...value };
      delete message.t; // ours, not the message's
      return this.lib.proto.Message.fromObject(message);
    } catch (err) {
      this.ctx.log(`a saved poll could not be read: ${err && err.message}`);
      return undefined;
    }
  }

  forward(name, data) {
    const { ctx } = this;
    if (name === 'messages.upsert' || name === 'messaging-history.set') this.rememberPolls(data.messages);
    if (name === 'connection.update') {
      const out = { ...data };
      if (data.lastDisconnect) {
        const error = data.lastDisconnect.error;
        out.lastDisconnect = {
          statusCode: error && error.output ? error.output.statusCode : undefined,
          message: error ? error.message : undefined,
        };
        if (error && error.httpStatus) out.lastDisconnect.httpStatus = error.httpStatus;
      }
      if (data.connection === 'open') {
        this.open = true;
        this.applyHold();
      }
      if (data.connection === 'close') {
        this.open = false;
        this.closed = true;
      }
      ctx.event(name, out);
      // Baileys never reconnects by itself and neither do we: the Python side decides.
      if (data.connection === 'close') this.endSocket();
      return;
    }
    if (name === 'messaging-history.set') {
      // chats and contacts come again through their own events; only the messages here,
      // and which of them the phone still has unread (found before the set is cut)
      const messages = data.messages || [];
      const base = { isLatest: data.isLatest, progress: data.progress, syncType: data.syncType };
      if (!messages.length) {
        ctx.event(name, { ...base, messages: [] });
        return;
      }
      // only the sync a link starts with (later ones bring older messages under the same counts)
      const { counts, lastOf } = unreadCounts(data.syncType === INITIAL_BOOTSTRAP ? data.chats : [], (chat) => chat.id);
      const unread = stillUnread(messages, counts, (info) => countsAsUnread(info) && {
        chat: info.key.remoteJid, id: info.key.id, fromMe: info.key.fromMe, t: info.messageTimestamp,
      }, lastOf);
      for (let i = 0; i < messages.length; i += HISTORY_CHUNK) {
        const last = i + HISTORY_CHUNK >= messages.length;
        const slice = messages.slice(i, i + HISTORY_CHUNK);
        ctx.event(name, {
          ...base,
          // isLatest belongs to the whole set: only its last frame carries it
          isLatest: last ? data.isLatest : false,
          messages: slice,
          unreadIds: slice.map((info) => info && info.key && info.key.id).filter((id) => unread.has(id)),
        });
      }
      return;
    }
    ctx.event(name, data);
  }

  /** An upsert with the stanza addresses of its messages (`addressing`: by message id). */
  withAddressing(data) {
    const found = {};
    for (const info of (data && data.messages) || []) {
      const id = info && info.key && info.key.id;
      const addressing = typeof id === 'string' ? this.addressing.get(id) : undefined;
      if (addressing) {
        found[id] = addressing;
        this.addressing.delete(id);
      }
    }
    return Object.keys(found).length ? { ...data, addressing: found } : data;
  }

  endSocket() {
    const sock = this.sock;
    if (!sock) return;
    try {
      endQuietly(sock, undefined);
    } catch (err) {
      this.ctx.log(`ending socket: ${err.message}`);
    }
  }

  async stop() {
    const sock = this.sock;
    if (!sock) return;
    this.open = false;
    // Our own close is not news: Python asked for it (a stop, or a new start replacing
    // this socket), and a `close` from here would read as a lost connection.
    this.sock = null;
    if (!this.closed) {
      this.closed = true;
      try {
        endQuietly(sock, undefined);
      } catch (err) {
        this.ctx.log(`stop: ${err.message}`);
      }
    }
    try { sock.ev.removeAllListeners(); } catch { /* already gone */ }
  }

  async logout() {
    const sock = this.sock;
    if (!sock) return;
    try {
      if (this.open) await sock.logout();
    } catch (err) {
      throw mapError(err);
    } finally {
      await this.stop();
    }
  }

  kill() {
    // nothing outlives a Baileys socket but the process itself
  }

  connected() {
    if (!this.sock || !this.open) throw notReady();
    return this.sock;
  }

  async command(op, args) {
    const handler = OPS[op];
    if (!handler) throw badRequest(`unknown op ${op}`);
    try {
      return await handler.call(this, args);
    } catch (err) {
      throw mapError(err, { sending: op === 'send' });
    }
  }

  // ---------------------------------------------------------------------------------
  // Ops

  async pairingCode(args) {
    if (!this.sock || this.closed) throw notReady('no socket: start the session first');
    if (this.creds && this.creds.registered) throw new BridgeError('pairing', 'this device is already linked');
    const phone = String(args.phone || '').replace(/\D/g, '');
    if (!phone) throw badRequest('phone is required (digits)');
    try {
      return { code: await this.sock.requestPairingCode(phone) };
    } catch (err) {
      const mapped = mapError(err);
      if (mapped.kind === 'not_ready') throw mapped;
      throw new BridgeError('pairing', mapped.message);
    }
  }

  buildContent(type, content, chatId) {
    const c = content || {};
    switch (type) {
      case 'text': {
        if (typeof c.text !== 'string') throw badRequest('text is required');
        const out = { text: c.text };
        if (Array.isArray(c.mentions) && c.mentions.length) out.mentions = c.mentions;
        return out;
      }
      case 'image':
      case 'video':
      case 'sticker': {
        const m = mediaPath(c);
        const out = { [type]: { url: m.path } };
        if (m.mimetype) out.mimetype = m.mimetype;
        if (c.caption && type !== 'sticker') out.caption = c.caption;
        if (type !== 'sticker') Object.assign(out, shownDetails(c.media || c));
        return out;
      }
      case 'audio':
      case 'voice': {
        const m = mediaPath(c);
        // a voice note is WhatsApp's push-to-talk audio
        return {
          audio: { url: m.path },
          mimetype: m.mimetype || (type === 'voice' ? 'audio/ogg; codecs=opus' : 'audio/mpeg'),
          ptt: type === 'voice',
        };
      }
      case 'document': {
        const m = mediaPath(c);
        const out = {
          document: { url: m.path },
          mimetype: m.mimetype || 'application/octet-stream',
          fileName: m.filename || 'file',
        };
        if (c.caption) out.caption = c.caption;
        return out;
      }
      case 'location': {
        const where = c.location || c;
        if (typeof where.latitude !== 'number' || typeof where.longitude !== 'number') {
          throw badRequest('location needs latitude and longitude');
        }
        const location = { degreesLatitude: where.latitude, degreesLongitude: where.longitude };
        if (where.name) location.name = where.name;
        if (where.address) location.address = where.address;
        return { location };
      }
      case 'contacts': {
        const cards = c.contacts;
        if (!Array.isArray(cards) || !cards.length) throw badRequest('contacts needs at least one card');
        return {
          contacts: {
            displayName: cards.length === 1 ? cards[0].name : `${cards.length} contacts`,
            contacts: cards.map((card) => ({ displayName: card.name, vcard: card.vcard })),
          },
        };
      }
      case 'reaction':
        return { react: { text: c.emoji || '', key: this.reactionKey(c, chatId) } };
      default:
        throw badRequest(`message type ${type} cannot be sent`);
    }
  }

  reactionKey(c, chatId) {
    if (typeof c.messageId !== 'string' || !c.messageId) throw badRequest('reaction needs messageId');
    const key = { remoteJid: chatId, id: c.messageId, fromMe: Boolean(c.targetFromMe) };
    // in a group the key names who wrote the message reacted to
    if (!key.fromMe && c.targetSender && this.isGroup(chatId)) key.participant = c.targetSender;
    return key;
  }

  isGroup(jid) {
    return this.lib.isJidGroup ? Boolean(this.lib.isJidGroup(jid)) : String(jid).endsWith('@g.us');
  }

  isMe(jid) {
    const me = this.sock && this.sock.user;
    if (!me || !jid) return false;
    const same = this.lib.areJidsSameUser || ((a, b) => a.split(/[:@]/)[0] === b.split(/[:@]/)[0]);
    return Boolean(same(jid, me.id) || (me.lid && same(jid, me.lid)));
  }

  quotedOf(chatId, c) {
    if (!c.replyTo) return undefined;
    const fromMe = this.isMe(c.replyToSender);
    const key = { remoteJid: chatId, id: c.replyTo, fromMe };
    if (!fromMe) key.participant = c.replyToSender || (this.isGroup(chatId) ? undefined : chatId);
    // Baileys copies the quoted message into the reply: the words we have are enough
    return { key, message: { conversation: c.replyToText || '' } };
  }

  async send(args) {
    const chatId = requireString(args, 'chatId');
    const id = requireString(args, 'id');
    const type = requireString(args, 'type');
    const content = this.buildContent(type, args.content, chatId);
    const sock = this.connected();
    const options = { messageId: id }; // a resend keeps the id: recipients drop the duplicate
    const quoted = this.quotedOf(chatId, args.content || {});
    if (quoted) options.quoted = quoted;
    const msg = await sock.sendMessage(chatId, content, options);
    const sentId = msg && msg.key ? msg.key.id : id;
    if (msg && msg.message) {
      keepNewest(this.sent, sentId, msg.message, SENT_CACHE);
    }
    return { id: sentId };
  }

  async read(args) {
    const chatId = requireString(args, 'chatId');
    const ids = Array.isArray(args.ids) ? args.ids : [];
    if (!ids.length) throw badRequest('ids is required');
    const senders = args.senders || {};
    const group = this.isGroup(chatId);
    const keys = ids.map((id) => {
      const key = { remoteJid: chatId, id, fromMe: false };
      // group receipts name the participant who wrote each message
      if (group && senders[id]) key.participant = senders[id];
      return key;
    });
    await this.connected().readMessages(keys);
    return {};
  }

  async presence(args) {
    const state = PRESENCE[args.state];
    if (!state) throw badRequest(`presence state ${args.state} is not one of ${Object.keys(PRESENCE).join(', ')}`);
    const chatId = state === 'available' || state === 'unavailable' ? undefined : requireString(args, 'chatId');
    await this.connected().sendPresenceUpdate(state, chatId);
    return {};
  }

  async subscribePresence(args) {
    await this.connected().presenceSubscribe(requireString(args, 'chatId'));
    return {};
  }

  async check(args) {
    const phone = String(args.phone || '').replace(/\D/g, '');
    if (!phone) throw badRequest('phone is required (digits)');
    const found = await this.connected().onWhatsApp(`${phone}@s.whatsapp.net`);
    const hit = (found || []).find((r) => r && r.exists);
    return { id: hit ? hit.jid : null };
  }

  async picture(args) {
    const sock = this.connected();
    try {
      const url = await sock.profilePictureUrl(requireString(args, 'chatId'), 'image');
      return { url: url || null };
    } catch (err) {
      // none set (404) or hidden from us (401): the same to a client
      const code = err && (err.data ?? (err.output && err.output.statusCode));
      if (code === 404 || code === 401 || /item-not-found|not-authorized/i.test(err && err.message)) {
        return { url: null };
      }
      throw err;
    }
  }

  async revoke(args) {
    const chatId = requireString(args, 'chatId');
    const id = requireString(args, 'id');
    // only our own messages can be revoked for everyone (admins: the key's participant)
    const key = { remoteJid: chatId, id, fromMe: args.fromMe === undefined ? true : Boolean(args.fromMe) };
    if (args.participant) key.participant = args.participant;
    await this.connected().sendMessage(chatId, { delete: key });
    return {};
  }

  async groups() {
    const all = await this.connected().groupFetchAllParticipating();
    return Object.values(all || {});
  }

  async groupInfo(args) {
    return this.connected().groupMetadata(groupIdOf(args));
  }

  async createGroup(args) {
    const subject = requireString(args, 'subject');
    const participants = Array.isArray(args.participants) ? args.participants : [];
    return this.connected().groupCreate(subject, participants);
  }

  async updateGroup(args) {
    const sock = this.connected();
    const group = groupIdOf(args);
    if (typeof args.subject === 'string') await sock.groupUpdateSubject(group, args.subject);
    if (typeof args.description === 'string') await sock.groupUpdateDescription(group, args.description);
    for (const [name, value] of Object.entries(args.settings || {})) {
      const pair = GROUP_SETTINGS[name];
      if (!pair) throw badRequest(`group setting ${name} is not one of ${Object.keys(GROUP_SETTINGS).join(', ')}`);
      await sock.groupSettingUpdate(group, value ? pair[0] : pair[1]);
    }
    return sock.groupMetadata(group);
  }

  async participants(args) {
    const action = args.action;
    if (!['add', 'remove', 'promote', 'demote'].includes(action)) throw badRequest(`participants action ${action}`);
    const list = Array.isArray(args.participants) ? args.participants : [];
    if (!list.length) throw badRequest('participants is required');
    const results = await this.connected().groupParticipantsUpdate(groupIdOf(args), list, action);
    // `status` is WhatsApp's code as a string ("200", "403", "404", "409", ...)
    return (results || []).map((r) => ({ jid: r.jid, status: r.status }));
  }

  async inviteCode(args) {
    return { code: await this.connected().groupInviteCode(groupIdOf(args)) };
  }

  /**
   * Our API process is behind with this session's reports (`hold: true`): stop reading
   * the websocket, so WhatsApp keeps what it has not been acknowledged; read again when
   * told (`hold: false`). A socket made later (a reconnect) reads: Python tells it again,
   * and a hold told while it connects is applied when it opens.
   */
  hold(args) {
    this.held = Boolean(args && args.hold);
    this.applyHold();
    return {};
  }

  /**
   * A socket still connecting cannot be paused (`ws` ignores it, and the handshake must
   * go on): a hold told then is applied once the connection is open.
   */
  applyHold() {
    const socket = this.sock && this.sock.ws && this.sock.ws.socket;
    if (!socket || typeof socket.pause !== 'function') return;
    if (this.held) socket.pause();
    else socket.resume();
  }

  async leaveGroup(args) {
    await this.connected().groupLeave(groupIdOf(args));
    return {};
  }
}

const OPS = {
  pairing_code: BaileysSession.prototype.pairingCode,
  send: BaileysSession.prototype.send,
  read: BaileysSession.prototype.read,
  presence: BaileysSession.prototype.presence,
  subscribe_presence: BaileysSession.prototype.subscribePresence,
  check: BaileysSession.prototype.check,
  picture: BaileysSession.prototype.picture,
  revoke: BaileysSession.prototype.revoke,
  groups: BaileysSession.prototype.groups,
  group_info: BaileysSession.prototype.groupInfo,
  create_group: BaileysSession.prototype.createGroup,
  update_group: BaileysSession.prototype.updateGroup,
  participants: BaileysSession.prototype.participants,
  invite_code: BaileysSession.prototype.inviteCode,
  leave_group: BaileysSession.prototype.leaveGroup,
  hold: BaileysSession.prototype.hold,
};

module.exports = {
  BaileysSession, makeKeyStore, mapError, loadBaileys, stanzaAddressing, FORWARDED, OPS, ADDRESSING_KEPT,
  POLL_KIND, POLLS_KEPT,
};
