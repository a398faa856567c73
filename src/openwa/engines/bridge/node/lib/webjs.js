'use strict';
// One whatsapp-web.js session: a Client driving its own Chromium. The library module is
// injected so tests can drive the adapter with a fake; `loadWebjs()` gives the real one.

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const crypto = require('node:crypto');
const { BridgeError, badRequest, notReady, requireString, groupIdOf } = require('./protocol');
const { parseProxy } = require('./proxy');
const { keepNewest } = require('./bounded');
const { seconds, stillUnread, unreadCounts } = require('./unread');

const DEFAULT_CHROMIUM = '/usr/bin/chromium';
// RemoteAuth refuses anything shorter (it zips the whole profile each time)
const BACKUP_INTERVAL_MS = 60000;
// Strings in a message's `_data` longer than this are left out: for media they are the
// inline thumbnail (base64), never what a client reads.
const MAX_DATA_STRING = 16 * 1024;
const DESTROY_TIMEOUT_MS = 3000;
// Zipping a profile on stop: within the stop request's own time (10 s, with destroy())
const SAVE_TIMEOUT_MS = 6000;
const DEFAULT_MAX_MEDIA_BYTES = 64 * 1024 * 1024;
const DEFAULT_DOWNLOAD_TIMEOUT_S = 300;
// A LID-addressed message names its sender (and a direct chat) by LID only; the page knows
// the phone number behind it (`getContactLidAndPhone`). Asked once per LID, within this
// long (it may ask WhatsApp); the answers are kept, the newest this many.
const LID_LOOKUP_TIMEOUT_MS = 5000;
const LIDS_KEPT = 5000;
// A LID the page could not map is asked about again only after this long.
const LID_RETRY_MS = 10 * 60 * 1000;

// Reads on the phone: whatsapp-web.js tells only that a chat's unread count changed
// (`unread_count`); at zero, the messages received in it since are the ones read. Kept
// per chat, the newest this many, for this many chats.
const UNREAD_PER_CHAT = 500;
const UNREAD_CHATS = 1000;

// History after linking: whatsapp-web.js has no history event, but the page holds the
// chats and loads their messages on request. Once a session is ready after a link, the
// bridge sends its most recent chats' settings and their latest messages (`history`
// frames): the API process stores them without events, and ids it has already are
// dropped there. Each page call has its own time limit.
const HISTORY_CHATS = 50;
const HISTORY_MESSAGES = 20;
const HISTORY_CALL_TIMEOUT_MS = 30000;

// Notices, which WhatsApp does not count as unread (nor do we store them as messages).
const NOT_COUNTED = new Set(['revoked', 'e2e_notification', 'notification_template', 'gp2', 'protocol']);

/** The parts of a Chat the API process keeps (its settings, its name). */
function chatJson(chat) {
  return {
    id: chat.id && chat.id._serialized,
    name: typeof chat.name === 'string' ? chat.name : null,
    isGroup: Boolean(chat.isGroup),
    archived: Boolean(chat.archived),
    pinned: Boolean(chat.pinned),
    isMuted: Boolean(chat.isMuted),
    timestamp: typeof chat.timestamp === 'number' ? chat.timestamp : null,
  };
}

/** A serialized id, whether given as one or as a {_serialized} object. */
const idOf = (v) => (v && typeof v === 'object' ? v._serialized : v);

/** The LIDs a message names (sender, chat, group author), each once. */
function lidsOf(message) {
  if (!message || typeof message !== 'object') return [];
  const found = [message.from, message.to, message.author]
    .map(idOf)
    .filter((v) => typeof v === 'string' && v.endsWith('@lid'));
  return [...new Set(found)];
}

function loadWebjs() {
  const lib = require('whatsapp-web.js');
  return {
    Client: lib.Client,
    RemoteAuth: lib.RemoteAuth,
    MessageMedia: lib.MessageMedia,
    Location: lib.Location,
    version: require('whatsapp-web.js/package.json').version,
  };
}

/** A Message (or anything holding one) without the bulky parts of its `_data`. */
function slimMessage(message) {
  if (!message || typeof message !== 'object') return message;
  const out = {};
  for (const key of Object.keys(message)) out[key] = message[key];
  if (out._data && typeof out._data === 'object') {
    const data = {};
    for (const [key, value] of Object.entries(out._data)) {
      // a media message's `body` is its thumbnail; its caption is in `caption`
      if (key === 'body' && message.hasMedia) continue;
      if (typeof value === 'string' && value.length > MAX_DATA_STRING) continue;
      if (key === 'mediaData' || key === 'streamingSidecar' || key === 'scanLengths') continue;
      data[key] = value;
    }
    out._data = data;
  }
  return out;
}

// The library's listener arguments, named: each event's `data` is an object of them.
const EVENTS = {
  qr: (qr) => ({ qr }),
  code: (code) => ({ code }),
  authenticated: () => ({}),
  auth_failure: (message) => ({ message: message === undefined ? null : String(message) }),
  ready: null, // built by the adapter: it adds the client's own id
  message: (message) => ({ message: slimMessage(message) }),
  message_create: null, // fromMe only, see below
  message_ack: (message, ack) => ({ message: slimMessage(message), ack }),
  message_revoke_everyone: (message, revoked) => ({
    message: slimMessage(message), revokedMessage: revoked ? slimMessage(revoked) : null,
  }),
  message_reaction: (reaction) => ({ reaction }),
  message_edit: (message, newBody, prevBody) => ({ message: slimMessage(message), newBody, prevBody }),
  group_join: (notification) => ({ notification }),
  group_leave: (notification) => ({ notification }),
  group_update: (notification) => ({ notification }),
  group_admin_changed: (notification) => ({ notification }),
  group_membership_request: (notification) => ({ notification }),
  chat_archived: (chat, currState) => ({
    chatId: chat && chat.id ? chat.id._serialized || null : null, archived: Boolean(currState),
  }),
  message_ciphertext: (message) => ({ message: slimMessage(message) }),
  unread_count: null, // built by the adapter: the messages read, when it falls to zero
  disconnected: (reason) => ({ reason: reason === undefined ? null : String(reason) }),
  change_state: (state) => ({ state }),
  call: (call) => ({ call }),
  vote_update: (vote) => ({
    vote: vote && vote.parentMessage ? { ...vote, parentMessage: slimMessage(vote.parentMessage) } : vote,
  }),
};

function clientIdOf(session) {
  // RemoteAuth allows [-_\w] only; another character gets a hash so ids stay distinct
  if (/^[-_\w]+$/.test(session)) return session;
  const hash = crypto.createHash('sha256').update(session).digest('hex').slice(0, 12);
  return `${session.replace(/[^-_\w]/g, '_')}-${hash}`;
}

const delay = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`${what} took over ${ms} ms`)), ms); }),
  ]).finally(() => clearTimeout(timer));
}

/**
 * RemoteAuth's store, kept by the Python side: `save` hands the zipped profile over as a
 * file in the transfer directory (an `auth` frame names it), `extract` copies the saved
 * profile `start` was given to where RemoteAuth wants it, `delete` reports `cleared`.
 */
class ProfileStore {
  constructor({ ctx, profileZip, dataPath, transferDir }) {
    this.ctx = ctx;
    this.profileZip = profileZip || null;
    this.dataPath = dataPath;
    this.transferDir = transferDir;
  }

  async sessionExists() {
    return Boolean(this.profileZip);
  }

  async extract({ path: dest }) {
    await fs.promises.copyFile(this.profileZip, dest);
  }

  async save({ session }) {
    // RemoteAuth wrote `<dataPath>/<session>.zip` and deletes it once we return
    const source = path.join(this.dataPath, `${session}.zip`);
    await fs.promises.mkdir(this.transferDir, { recursive: true });
    const target = path.join(this.transferDir, `${this.ctx.session.replace(/[^-_\w]/g, '_')}-${Date.now()}-${crypto.randomBytes(4).toString('hex')}.zip`);
    try {
      await fs.promises.rename(source, target);
    } catch (err) {
      if (err.code !== 'EXDEV') throw err;
      await fs.promises.copyFile(source, target);
    }
    this.profileZip = target;
    this.ctx.auth({ profileZip: target });
  }

  async delete() {
    this.profileZip = null;
    this.ctx.auth({ cleared: true });
  }
}

class WebjsSession {
  constructor(ctx, lib, options = {}) {
    this.ctx = ctx;
    this.lib = lib || loadWebjs();
    this.options = options;
    this.client = null;
    this.ready = false;
    this.stopping = false;
    this.initPending = false;
    this.browserPid = null;
    this.historySent = false; // sent, or not wanted: a start from a saved profile (sendHistory)
  }

  async start({ proxy, chromiumPath, profileZip, transferDir, dataPath, maxMediaBytes, downloadTimeoutS, qrMaxRetries } = {}) {
    const { lib, ctx } = this;
    this.maxMediaBytes = maxMediaBytes || DEFAULT_MAX_MEDIA_BYTES;
    this.downloadTimeoutMs = (downloadTimeoutS || DEFAULT_DOWNLOAD_TIMEOUT_S) * 1000;
    // Events go on in order, including those that wait for a download.
    this.queue = Promise.resolve();
    this.waiting = 0;
    this.lidNumbers = new Map(); // LID -> its phone number (`...@c.us`), as the page said
    this.lidMisses = new Map(); // LID -> when the page last could not say
    this.lidAsking = new Set(); // LIDs whose lookup is under way (messages behind it wait)
    this.lidPending = new Map(); // LID -> the lookup beside the events that asks about it
    this.unread = new Map(); // chat id -> ids of the messages received in it since its last read
    const executablePath = chromiumPath || DEFAULT_CHROMIUM;
    if (!fs.existsSync(executablePath)) throw badRequest(`chromium not found at ${executablePath}`);
    if (profileZip && !fs.existsSync(profileZip)) throw badRequest(`profileZip ${profileZip} does not exist`);
    const transfer = transferDir || ctx.transferDir || path.join(os.tmpdir(), 'openwa-bridge');
    const profiles = dataPath || path.join(transfer, 'webjs-profiles');
    this.transferDir = transferDir;
    await fs.promises.mkdir(profiles, { recursive: true });

    const args = ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu'];
    let proxyAuthentication;
    if (proxy) {
      const p = parseProxy(proxy);
      // Chromium speaks socks5 (remote DNS always) and http proxies; only http ones
      // can ask for credentials (Puppeteer answers the 407 with page.authenticate)
      args.push(`--proxy-server=${p.socks ? 'socks5' : p.scheme}://${p.host}:${p.port}`);
      if (p.username || p.password) {
        if (p.socks) throw badRequest('Chromium cannot log in to a SOCKS proxy: use an HTTP proxy for credentials');
        proxyAuthentication = { username: p.username || '', password: p.password || '' };
      }
    }
    this.store = new ProfileStore({ ctx, profileZip, dataPath: profiles, transferDir: transfer });
    // History goes once, after a link: a start from a saved profile has sent it before.
    this.historySent = Boolean(profileZip);
    const authStrategy = new lib.RemoteAuth({
      clientId: clientIdOf(ctx.session),
      dataPath: profiles,
      store: this.store,
      backupSyncIntervalMs: BACKUP_INTERVAL_MS,
    });
    this.serializeSaves(authStrategy);
    const client = new lib.Client({
      authStrategy,
      puppeteer: {
        executablePath,
        headless: true,
        args,
        // the DevTools pipe instead of a websocket: Chromium exits by itself when the
        // pipe closes, so a bridge killed with SIGKILL leaves no browser behind
        pipe: true,
        // the bridge handles signals and exit itself (and kills Chromium then)
        handleSIGINT: false,
        handleSIGTERM: false,
        handleSIGHUP: false,
      },
      proxyAuthentication,
      // after this many codes nobody scanned, `disconnected` 'Max qrcode retries reached'
      qrMaxRetries: Number(qrMaxRetries) || 0,
      // 'local' would write WhatsApp Web's page into the working directory
      webVersionCache: { type: 'none' },
    });
    this.client = client;
    this.subscribe(client);
    this.initPending = true;
    // initialize() runs until WhatsApp Web is loaded (or fails): progress comes as events
    Promise.resolve()
      .then(() => client.initialize())
      .then(
        () => { this.initPending = false; this.noteBrowser(); },
        (err) => ctx.scope(() => {
          this.initPending = false;
          this.noteBrowser();
          if (this.client !== client || this.stopping) return;
          ctx.event('init_failed', { message: err && err.message ? err.message : String(err) });
          // Chromium keeps running after a failed initialize(): close it now, the Python
          // side decides whether to start again
          this.closeClient(client);
        }),
      )
      .finally(() => {
        // a stop that came while the browser was still launching could not close it
        if (this.stopping && this.client === client) this.closeClient(client);
      });
    this.watchBrowser(client);
    return {};
  }

  // Learns Chromium's pid as soon as it runs, for kill() at exit.
  async watchBrowser(client) {
    for (let i = 0; i < 300 && this.client === client && !this.browserPid; i += 1) {
      this.noteBrowser();
      if (this.browserPid || !this.initPending) return;
      await delay(100);
    }
  }

  noteBrowser() {
    const browser = this.client && this.client.pupBrowser;
    const proc = browser && typeof browser.process === 'function' ? browser.process() : null;
    if (proc && proc.pid) this.browserPid = proc.pid;
  }

  subscribe(client) {
    const { ctx } = this;
    for (const [name, build] of Object.entries(EVENTS)) {
      client.on(name, (...args) => ctx.scope(() => {
        if (this.client !== client) return;
        // a QR means a link is under way (a saved profile may be one the phone unlinked)
        if (name === 'qr') this.historySent = false;
        if (name === 'ready') {
          this.ready = true;
          ctx.event('ready', { info: client.info ? { ...client.info } : null });
          if (!this.historySent) {
            this.historySent = true;
            this.sendHistory(client).catch((err) => ctx.log(`history: ${err && err.message}`));
          }
          return;
        }
        if (name === 'message_create') {
          // the other side's messages come as `message`; only ours are new here
          const message = args[0];
          if (!message || !message.fromMe) return;
          this.lookUpBeside(client, lidsOf(message));
          this.inOrder(client, name, () => ctx.event(name, this.withLids({ message: slimMessage(message) }, message)));
          return;
        }
        if (name === 'unread_count') {
          // the read messages are decided now: those received before it, in line or not
          const read = this.readOnPhone(args[0]);
          if (read) this.inOrder(client, name, () => ctx.event(name, read));
          return;
        }
        if (name === 'disconnected') this.ready = false;
        const message = name === 'message' ? args[0] : null;
        if (message) this.noteUnread(message);
        const download = Boolean(message && message.hasMedia && this.transferDir);
        // A direct chat's LID sender names the chat: its number is waited for. A group
        // member's is asked beside (a group of LID members would otherwise hold every
        // event behind one lookup each); its number follows as `lid_mapping`.
        const asked = message ? lidsOf(message).filter((lid) => this.shouldLookUp(lid)) : [];
        const sender = message ? idOf(message.from) : null;
        const wait = asked.filter((lid) => lid === sender);
        // a sender already being asked about beside the events: wait for that answer
        const besideNow = !wait.length && typeof sender === 'string' && !this.lidNumbers.has(sender)
          ? this.lidPending.get(sender) : undefined;
        this.lookUpBeside(client, asked.filter((lid) => !wait.includes(lid)));
        for (const lid of wait) this.lidAsking.add(lid);
        const asking = () => { for (const lid of wait) this.lidAsking.delete(lid); };
        if (!this.waiting && !download && !wait.length && !besideNow) {
          ctx.event(name, this.withLids(build(...args), message));
          return;
        }
        // In line behind a download or a lookup (or its own): the order of events holds.
        this.inLine(client, name, async () => {
          try {
            const data = build(...args);
            if (download) data.media = await this.fetched(message);
            if (wait.length) await this.lookUpLids(client, wait);
            if (besideNow) await besideNow; // that LID's own lookup, not the whole chain
            ctx.event(name, this.withLids(data, message));
          } finally {
            asking();
          }
        }, asking);
      }));
    }
  }

  /** `emit` at once when nothing waits, else in line behind what does (`inLine`). */
  inOrder(client, name, emit) {
    if (this.waiting) this.inLine(client, name, emit);
    else emit();
  }

  /**
   * `work` behind what waits already (downloads, lookups), so the order of events holds;
   * `dropped` runs instead when the client was replaced meanwhile.
   */
  inLine(client, name, work, dropped = () => {}) {
    this.waiting += 1;
    this.queue = this.queue
      .then(() => (this.client === client ? work() : dropped()))
      .catch((err) => this.ctx.log(`forwarding ${name}: ${err && err.message}`))
      .finally(() => { this.waiting -= 1; });
  }

  /** The most recent chats and their latest messages, as `history` frames (see HISTORY_CHATS). */
  async sendHistory(client) {
    const page = (call, what) => withTimeout(Promise.resolve().then(call), HISTORY_CALL_TIMEOUT_MS, what);
    // In line with the live events: a live message still waiting (for its media, say)
    // goes before the history page that holds it, so it is not taken for history.
    const send = (data) => new Promise((resolve) => {
      this.inLine(client, 'history', () => { this.ctx.event('history', data); resolve(); }, resolve);
    });
    const chats = await page(() => client.getChats(), 'getChats()');
    const recent = (Array.isArray(chats) ? chats : [])
      .filter((chat) => chat && chat.id && typeof chat.id._serialized === 'string')
      .sort((a, b) => (b.timestamp || 0) - (a.timestamp || 0))
      .slice(0, HISTORY_CHATS);
    if (this.client !== client) return;
    // LID chats are named by number once the page says it (lid_mapping)
    this.lookUpBeside(client, recent.map((chat) => chat.id._serialized).filter((id) => id.endsWith('@lid')));
    await send({ chats: recent.map(chatJson), messages: [] });
    for (const chat of recent) {
      if (this.client !== client || typeof chat.fetchMessages !== 'function') return;
      try {
        const answer = await page(() => chat.fetchMessages({ limit: HISTORY_MESSAGES }), 'fetchMessages()');
        const found = Array.isArray(answer) ? answer : [];
        // New ones come live too (as `message`), and a message not decrypted yet comes
        // again when it is: neither is history.
        const messages = found.filter((m) => m && !(m._data && m._data.isNewMsg) && m.type !== 'ciphertext');
        if (this.client !== client || !messages.length) continue;
        this.lookUpBeside(client, [...new Set(messages.flatMap(lidsOf))]);
        // Those the phone still has unread stay so, and are read when the chat is: counted
        // over every message fetched (a live or undecrypted one takes its place in the count).
        const chatId = chat.id._serialized;
        const { counts } = unreadCounts([chat], () => chatId);
        const unread = stillUnread(found, counts, (m) => m && !NOT_COUNTED.has(m.type) && {
          chat: chatId, id: m.id && m.id.id, fromMe: m.fromMe, t: m.timestamp,
        });
        const unreadOnes = messages.filter((m) => unread.has(m.id && m.id.id))
          .sort((a, b) => seconds(a.timestamp) - seconds(b.timestamp));
        for (const message of unreadOnes) this.noteUnread(message);
        await send({ chats: [], messages: messages.map(slimMessage), unreadIds: unreadOnes.map((m) => m.id.id) });
      } catch (err) {
        this.ctx.log(`history of ${chat.id._serialized}: ${err && err.message}`);
      }
    }
  }

  /** An inbound message, kept as unread in its chat until the chat's count falls to zero. */
  noteUnread(message) {
    const chatId = idOf(message.id && message.id.remote) || idOf(message.from);
    const id = message.id && message.id.id;
    if (message.fromMe || typeof chatId !== 'string' || typeof id !== 'string') return;
    const ids = this.unread.get(chatId) || [];
    ids.push({ id, t: typeof message.timestamp === 'number' ? message.timestamp : null });
    if (ids.length > UNREAD_PER_CHAT) ids.shift();
    keepNewest(this.unread, chatId, ids, UNREAD_CHATS);
  }

  /**
   * `unread_count` at zero (read on the phone, or by us): the messages read, or null. The
   * library reads the chat before it awaits more of it (a group's metadata), so a message
   * that came meanwhile is kept unread: only those no newer than the chat's own time go.
   */
  readOnPhone(chat) {
    const chatId = chat && chat.id ? chat.id._serialized : null;
    if (typeof chatId !== 'string' || chat.unreadCount !== 0) return null;
    const noted = this.unread.get(chatId) || [];
    const upTo = typeof chat.timestamp === 'number' ? chat.timestamp : Infinity;
    const read = noted.filter((m) => m.t === null || m.t <= upTo);
    const left = noted.filter((m) => !read.includes(m));
    if (left.length) this.unread.set(chatId, left);
    else this.unread.delete(chatId);
    return read.length ? { chat: { id: chatId, unreadCount: 0 }, readIds: read.map((m) => m.id) } : null;
  }

  /** Event data with the phone numbers known for the message's LIDs (`lids`: LID -> number). */
  withLids(data, message) {
    const lids = {};
    for (const lid of lidsOf(message)) {
      if (this.lidNumbers.has(lid)) lids[lid] = this.lidNumbers.get(lid);
    }
    return Object.keys(lids).length ? { ...data, lids } : data;
  }

  /**
   * Ask about these LIDs without holding any event; what the page says goes as its own
   * `lid_mapping` frame (`{lids: {LID: number}}`), and with later messages. One at a time.
   */
  lookUpBeside(client, lids) {
    const fresh = lids.filter((lid) => this.shouldLookUp(lid));
    if (!fresh.length) return;
    for (const lid of fresh) this.lidAsking.add(lid);
    const done = (this.besides || Promise.resolve())
      .then(async () => {
        if (this.client !== client) return;
        await this.lookUpLids(client, fresh);
        const found = {};
        for (const lid of fresh) if (this.lidNumbers.has(lid)) found[lid] = this.lidNumbers.get(lid);
        if (this.client === client && Object.keys(found).length) this.ctx.event('lid_mapping', { lids: found });
      })
      .catch((err) => this.ctx.log(`LID lookup: ${err && err.message}`))
      .finally(() => {
        for (const lid of fresh) {
          this.lidAsking.delete(lid);
          if (this.lidPending.get(lid) === done) this.lidPending.delete(lid);
        }
      });
    this.besides = done;
    for (const lid of fresh) this.lidPending.set(lid, done);
  }

  shouldLookUp(lid) {
    if (this.lidNumbers.has(lid) || this.lidAsking.has(lid)) return false;
    const missed = this.lidMisses.get(lid);
    return missed === undefined || Date.now() - missed > LID_RETRY_MS;
  }

  /** Ask the page for the numbers behind these LIDs; what it cannot say stays unknown
   * (and is not asked about again for a while). */
  async lookUpLids(client, lids) {
    let found = null;
    if (typeof client.getContactLidAndPhone === 'function') {
      try {
        const call = Promise.resolve().then(() => client.getContactLidAndPhone(lids));
        found = await withTimeout(call, LID_LOOKUP_TIMEOUT_MS, 'getContactLidAndPhone()');
      } catch (err) {
        this.ctx.log(`LID lookup: ${err && err.message}`);
      }
    }
    lids.forEach((lid, i) => {
      const pn = Array.isArray(found) && found[i] ? found[i].pn : null;
      const ok = typeof pn === 'string' && pn.endsWith('@c.us');
      keepNewest(ok ? this.lidNumbers : this.lidMisses, lid, ok ? pn : Date.now(), LIDS_KEPT);
      this.lidAsking.delete(lid);
    });
  }

  /** A message's media as a file in the transfer directory (`{path, size}`), or why not. */
  async fetched(message) {
    const file = path.join(this.transferDir, `in-${crypto.randomBytes(12).toString('hex')}`);
    // The size the message states, before anything is downloaded: the page hands a file
    // over whole (as base64), so one over the limit would be held in memory first.
    const stated = Number(message._data && message._data.size);
    if (Number.isFinite(stated) && stated > this.maxMediaBytes) return { error: 'over the media size limit' };
    try {
      const media = await withTimeout(Promise.resolve().then(() => message.downloadMedia()), this.downloadTimeoutMs, 'downloadMedia()');
      if (!media || typeof media.data !== 'string') return { error: 'the media is no longer available' };
      // base64 is a third larger than what it holds: refused before it is decoded
      if (Math.floor((media.data.length * 3) / 4) > this.maxMediaBytes) return { error: 'over the media size limit' };
      const bytes = Buffer.from(media.data, 'base64');
      if (bytes.length > this.maxMediaBytes) return { error: 'over the media size limit' };
      await fs.promises.writeFile(file, bytes, { flag: 'wx', mode: 0o600 });
      return { path: file, size: bytes.length, mimetype: media.mimetype || null, filename: media.filename || null };
    } catch (err) {
      await fs.promises.rm(file, { force: true });
      return { error: String((err && err.message) || err) };
    }
  }

  async closeClient(client) {
    try {
      // wait a little for a browser still being launched, so destroy() can close it
      for (let i = 0; i < 50 && this.initPending && !client.pupBrowser; i += 1) await delay(100);
      this.noteBrowser();
      await withTimeout(Promise.resolve().then(() => client.destroy()), DESTROY_TIMEOUT_MS, 'destroy()');
    } catch (err) {
      this.ctx.log(`destroy: ${err && err.message}`);
    }
    this.kill();
  }

  /**
   * RemoteAuth's saves, one at a time (each zips the profile into the same temporary
   * place), and none once the session has stopped: RemoteAuth's first save comes a
   * minute after a link without being waited for, and a session stopped before it went
   * on saving its leftover profile every minute, for nobody.
   */
  serializeSaves(strategy) {
    if (!strategy || typeof strategy.storeRemoteSession !== 'function') return;
    const save = strategy.storeRemoteSession.bind(strategy);
    let last = Promise.resolve();
    this.authStrategy = strategy;
    this.profileClosed = false;
    strategy.storeRemoteSession = (options) => {
      if (this.profileClosed) {
        clearInterval(strategy.backupSync);
        return Promise.resolve();
      }
      const run = last.then(() => save(options));
      last = run.catch(() => {});
      return run;
    };
  }

  /**
   * `save: false` when the API process cannot take the profile (a fence: another
   * instance may own the session by now; the bridge shutting down).
   */
  async stop({ save = true } = {}) {
    const client = this.client;
    if (!client || this.stopping) return;
    const wasReady = this.ready;
    this.stopping = true;
    this.ready = false;
    // RemoteAuth saves the profile a minute after a link, then once a minute: a session
    // stopped (or restarted) before that had no saved profile, and showed a QR again.
    // It is saved now, before the browser closes; the `auth` frame naming it goes out
    // before this stop's answer.
    if (wasReady && save) await this.saveProfile();
    this.profileClosed = true;
    await this.closeClient(client);
  }

  async saveProfile() {
    const strategy = this.authStrategy;
    if (!strategy) return;
    try {
      await withTimeout(Promise.resolve().then(() => strategy.storeRemoteSession({ emit: false })), SAVE_TIMEOUT_MS, 'storeRemoteSession()');
    } catch (err) {
      this.ctx.log(`profile save on stop: ${err && err.message}`);
    }
  }

  async logout() {
    const client = this.client;
    if (!client) return;
    const wasReady = this.ready;
    this.ready = false; // the stop below saves no profile of a device being unlinked
    try {
      if (wasReady) await client.logout();
    } catch (err) {
      throw new BridgeError('internal', err && err.message ? err.message : String(err));
    } finally {
      await this.stop();
    }
  }

  /** Kills Chromium (its whole process group) if it is still running. */
  kill() {
    const pid = this.browserPid;
    if (!pid) return;
    try {
      process.kill(-pid, 'SIGKILL'); // Puppeteer starts Chromium as a group leader
    } catch {
      try { process.kill(pid, 'SIGKILL'); } catch { /* already gone */ }
    }
  }

  connected() {
    if (!this.client || !this.ready || this.stopping) throw notReady();
    return this.client;
  }

  async command(op, args) {
    const handler = OPS[op];
    if (handler === undefined) throw badRequest(`unknown op ${op}`);
    if (handler === null) throw badRequest(`${op} is not supported by whatsapp-web.js`);
    try {
      return await handler.call(this, args);
    } catch (err) {
      if (err instanceof BridgeError) throw err;
      const message = err && err.message ? err.message : String(err);
      if (/Session closed|Target closed|detached Frame|Protocol error/i.test(message)) {
        throw notReady(message);
      }
      // whatsapp-web.js sends under WhatsApp's id: a send in doubt must not be repeated
      if (op === 'send') throw new BridgeError('send_failed', message, { retryable: false });
      throw new BridgeError('internal', message);
    }
  }

  // ---------------------------------------------------------------------------------
  // Ops

  async pairingCode(args) {
    const client = this.client;
    if (!client || this.stopping || !client.pupPage) throw notReady('the browser is not up yet');
    if (this.ready) throw new BridgeError('pairing', 'this device is already linked');
    const phone = String(args.phone || '').replace(/\D/g, '');
    if (!phone) throw badRequest('phone is required (digits)');
    try {
      return { code: await client.requestPairingCode(phone) };
    } catch (err) {
      throw new BridgeError('pairing', err && err.message ? err.message : String(err));
    }
  }

  media(content, type) {
    const m = content.media || content;
    if (typeof m.path !== 'string' || !m.path) throw badRequest('media needs a path');
    if (!fs.existsSync(m.path)) throw badRequest(`media file ${m.path} does not exist`);
    const media = this.lib.MessageMedia.fromFilePath(m.path);
    if (m.mimetype) media.mimetype = m.mimetype;
    if (m.filename) media.filename = m.filename;
    else if (type !== 'document') media.filename = null;
    return media;
  }

  async send(args) {
    const chatId = requireString(args, 'chatId');
    const type = requireString(args, 'type');
    const c = args.content || {};
    const options = { sendSeen: false };
    if (c.replyTo) options.quotedMessageId = c.replyTo;
    let body;
    switch (type) {
      case 'text':
        if (typeof c.text !== 'string') throw badRequest('text is required');
        body = c.text;
        if (Array.isArray(c.mentions) && c.mentions.length) options.mentions = c.mentions;
        // a text that happens to start with BEGIN:VCARD stays a text
        options.parseVCards = false;
        break;
      case 'image':
      case 'video':
      case 'audio':
      case 'voice':
      case 'document':
      case 'sticker':
        body = this.media(c, type);
        if (c.caption && type !== 'sticker' && type !== 'audio' && type !== 'voice') options.caption = c.caption;
        if (type === 'voice') options.sendAudioAsVoice = true;
        if (type === 'document') options.sendMediaAsDocument = true;
        if (type === 'sticker') options.sendMediaAsSticker = true;
        break;
      case 'location': {
        const where = c.location || c;
        if (typeof where.latitude !== 'number' || typeof where.longitude !== 'number') {
          throw badRequest('location needs latitude and longitude');
        }
        body = new this.lib.Location(where.latitude, where.longitude, { name: where.name, address: where.address });
        break;
      }
      case 'contacts': {
        const cards = c.contacts;
        if (!Array.isArray(cards) || cards.length !== 1) {
          throw badRequest('whatsapp-web.js sends exactly one contact card per message');
        }
        body = cards[0].vcard;
        options.parseVCards = true;
        break;
      }
      case 'reaction': {
        if (typeof c.messageId !== 'string' || !c.messageId) throw badRequest('reaction needs messageId');
        const client = this.connected();
        const target = await client.getMessageById(c.messageId);
        if (!target) throw new BridgeError('refused', `message ${c.messageId} is not known to this client`);
        await target.react(c.emoji || '');
        // a reaction has no id of its own in whatsapp-web.js
        return { id: null };
      }
      default:
        throw badRequest(`message type ${type} cannot be sent`);
    }
    const msg = await this.connected().sendMessage(chatId, body, options);
    if (!msg || !msg.id) throw new BridgeError('send_failed', 'whatsapp-web.js returned no message', { retryable: false });
    return { id: msg.id._serialized };
  }

  async read(args) {
    await this.connected().sendSeen(requireString(args, 'chatId'));
    return {};
  }

  async presence(args) {
    const client = this.connected();
    switch (args.state) {
      case 'available':
        await client.sendPresenceAvailable();
        return {};
      case 'unavailable':
        await client.sendPresenceUnavailable();
        return {};
      case 'typing':
      case 'recording':
      case 'paused': {
        const chat = await client.getChatById(requireString(args, 'chatId'));
        if (args.state === 'typing') await chat.sendStateTyping();
        else if (args.state === 'recording') await chat.sendStateRecording();
        else await chat.clearState();
        return {};
      }
      default:
        throw badRequest(`presence state ${args.state} is not one of typing, recording, paused, available, unavailable`);
    }
  }

  async check(args) {
    const phone = String(args.phone || '').replace(/\D/g, '');
    if (!phone) throw badRequest('phone is required (digits)');
    const found = await this.connected().getNumberId(phone);
    return { id: found ? found._serialized : null };
  }

  async picture(args) {
    const url = await this.connected().getProfilePicUrl(requireString(args, 'chatId'));
    return { url: url || null };
  }

  async revoke(args) {
    const client = this.connected();
    const msg = await client.getMessageById(requireString(args, 'id'));
    if (!msg) throw new BridgeError('refused', `message ${args.id} is not known to this client`);
    await msg.delete(true);
    return {};
  }

  async groupChat(groupId) {
    const chat = await this.connected().getChatById(groupId);
    if (!chat || !chat.isGroup) throw new BridgeError('refused', `${groupId} is not a group this account knows`);
    return chat;
  }

  async groups() {
    const chats = await this.connected().getChats();
    return chats.filter((chat) => chat.isGroup).map(groupJson);
  }

  async groupInfo(args) {
    return groupJson(await this.groupChat(groupIdOf(args)));
  }

  async createGroup(args) {
    const subject = requireString(args, 'subject');
    const participants = Array.isArray(args.participants) ? args.participants : [];
    const created = await this.connected().createGroup(subject, participants);
    if (typeof created === 'string') throw new BridgeError('refused', created);
    return created;
  }

  async updateGroup(args) {
    const chat = await this.groupChat(groupIdOf(args));
    const check = (ok, what) => {
      if (ok === false) throw new BridgeError('refused', `${what} refused (not an admin?)`);
    };
    if (typeof args.subject === 'string') check(await chat.setSubject(args.subject), 'subject');
    if (typeof args.description === 'string') check(await chat.setDescription(args.description), 'description');
    const settings = args.settings || {};
    for (const name of Object.keys(settings)) {
      if (name === 'announce') check(await chat.setMessagesAdminsOnly(Boolean(settings[name])), 'announce');
      else if (name === 'locked') check(await chat.setInfoAdminsOnly(Boolean(settings[name])), 'locked');
      else throw badRequest(`group setting ${name} is not one of announce, locked`);
    }
    return groupJson(await this.groupChat(groupIdOf(args)));
  }

  async participants(args) {
    const chat = await this.groupChat(groupIdOf(args));
    const list = Array.isArray(args.participants) ? args.participants : [];
    if (!list.length) throw badRequest('participants is required');
    const method = {
      add: 'addParticipants', remove: 'removeParticipants', promote: 'promoteParticipants', demote: 'demoteParticipants',
    }[args.action];
    if (!method) throw badRequest(`participants action ${args.action}`);
    // add: {id: {code, message, isInviteV4Sent}}; the others: {status}
    return { action: args.action, result: await chat[method](list) };
  }

  async inviteCode(args) {
    const chat = await this.groupChat(groupIdOf(args));
    return { code: await chat.getInviteCode() };
  }

  async leaveGroup(args) {
    const chat = await this.groupChat(groupIdOf(args));
    await chat.leave();
    return {};
  }
}

function groupJson(chat) {
  // the chat's own fields (id, name, groupMetadata with participants); not its last message
  const out = {};
  for (const key of Object.keys(chat)) if (key !== 'lastMessage') out[key] = chat[key];
  return out;
}

// null: an op of the protocol whatsapp-web.js has no way to do
const OPS = {
  pairing_code: WebjsSession.prototype.pairingCode,
  send: WebjsSession.prototype.send,
  read: WebjsSession.prototype.read,
  presence: WebjsSession.prototype.presence,
  subscribe_presence: null,
  check: WebjsSession.prototype.check,
  picture: WebjsSession.prototype.picture,
  revoke: WebjsSession.prototype.revoke,
  groups: WebjsSession.prototype.groups,
  group_info: WebjsSession.prototype.groupInfo,
  create_group: WebjsSession.prototype.createGroup,
  update_group: WebjsSession.prototype.updateGroup,
  participants: WebjsSession.prototype.participants,
  invite_code: WebjsSession.prototype.inviteCode,
  leave_group: WebjsSession.prototype.leaveGroup,
};

module.exports = {
  WebjsSession, ProfileStore, slimMessage, clientIdOf, loadWebjs, lidsOf, EVENTS, OPS, LIDS_KEPT,
};
