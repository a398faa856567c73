#!/usr/bin/env node
'use strict';
// Writes the event frames the bridge emits, one JSON file each, for the Python side's
// translation tests: tests/fixtures/bridge_shapes/{baileys,webjs}/<what>.json.
//
// Both engines' events are built with the libraries' own types (Baileys' protobuf
// classes; whatsapp-web.js' Message, GroupNotification, Call, Reaction, PollVote) and go
// through the adapters and the same encoder as the live bridge. Only the raw inputs are
// made up here: for whatsapp-web.js, what WhatsApp Web's page hands the library (a
// message's `_data`) is representative, not recorded from a phone.
//
//   node scripts/record-shapes.js [--out DIR]

const fs = require('node:fs');
const path = require('node:path');
const { EventEmitter } = require('node:events');
const { encodeFrame } = require('../lib/protocol');
const { BaileysSession } = require('../lib/baileys');
const { WebjsSession } = require('../lib/webjs');

const outArg = process.argv.indexOf('--out');
const OUT = outArg > 0 ? process.argv[outArg + 1]
  : path.resolve(__dirname, '..', '..', '..', '..', '..', '..', 'tests', 'fixtures', 'bridge_shapes');

function recorder(engine) {
  const dir = path.join(OUT, engine);
  fs.mkdirSync(dir, { recursive: true });
  let next = null;
  const written = [];
  const ctx = {
    session: 's1',
    log: () => {},
    scope: (fn) => fn(),
    auth: () => {},
    event: (name, data) => {
      if (!next) throw new Error(`unexpected event ${name}`);
      const frame = JSON.parse(encodeFrame({ kind: 'event', session: 's1', name, data }));
      fs.writeFileSync(path.join(dir, `${next}.json`), JSON.stringify(frame, null, 2) + '\n');
      written.push(next);
      next = null;
    },
  };
  return { ctx, written, expect: (file) => { next = file; }, check: () => { if (next) throw new Error(`${next}: no event`); } };
}

// ---------------------------------------------------------------------------------------
// Baileys

async function baileys() {
  const lib = require('@whiskeysockets/baileys');
  const { proto } = lib;
  const rec = recorder('baileys');
  const sock = { ev: new EventEmitter(), ws: new EventEmitter(), end() {}, user: { id: '4915100000001:7@s.whatsapp.net' } };
  const fakeLib = {
    makeWASocket: () => sock,
    initAuthCreds: lib.initAuthCreds,
    makeCacheableSignalKeyStore: (s) => s,
    proto,
    Browsers: lib.Browsers,
    isJidGroup: lib.isJidGroup,
    areJidsSameUser: lib.areJidsSameUser,
    pino: Object.assign(() => ({}), { destination: () => ({}) }),
  };
  const session = new BaileysSession(rec.ctx, fakeLib);
  await session.start({ auth: { creds: { registered: true }, keys: {} } });
  const emit = (file, name, data) => { rec.expect(file); sock.ev.emit(name, data); rec.check(); };

  const ALICE = '4915111111111@s.whatsapp.net';
  const BOB = '4915122222222@s.whatsapp.net';
  const GROUP = '120363025246125486@g.us';
  const T = 1764770000;
  const bytes = (n, seed = 1) => Buffer.from(Array.from({ length: n }, (_, i) => (i * 7 + seed) % 256));
  const msg = (fields) => proto.WebMessageInfo.fromObject({ messageTimestamp: T, pushName: 'Alice', broadcast: false, ...fields });
  const upsert = (file, fields, type = 'notify') => emit(`messages.upsert.${file}`, 'messages.upsert', { messages: [msg(fields)], type });
  const media = (extra) => ({
    url: 'https://mmg.whatsapp.net/v/t62.7118-24/12345_67890.enc?ccb=11-4',
    fileSha256: bytes(32, 2), fileEncSha256: bytes(32, 3), mediaKey: bytes(32, 4),
    directPath: '/v/t62.7118-24/12345_67890.enc?ccb=11-4', mediaKeyTimestamp: T - 5, ...extra,
  });

  upsert('text', { key: { remoteJid: ALICE, fromMe: false, id: '3EB0C767D26A1D4E5F7A' }, message: { conversation: 'Hello there' } });
  upsert('text-quote-mentions', {
    key: { remoteJid: GROUP, fromMe: false, id: '3EB0A1B2C3D4E5F60718', participant: ALICE },
    message: {
      extendedTextMessage: {
        text: '@4915122222222 see above',
        contextInfo: {
          stanzaId: '3EB0FFEEDDCCBBAA9988', participant: BOB,
          quotedMessage: { conversation: 'the original words' },
          mentionedJid: [BOB],
        },
      },
    },
  });
  upsert('image', {
    key: { remoteJid: ALICE, fromMe: false, id: '3EB0IMAGE00000000001' },
    message: { imageMessage: media({ mimetype: 'image/jpeg', caption: 'Look at this', fileLength: 52344, height: 1280, width: 960, jpegThumbnail: bytes(64, 5) }) },
  });
  upsert('document', {
    key: { remoteJid: ALICE, fromMe: false, id: '3EB0DOCUMENT00000001' },
    message: { documentMessage: media({ mimetype: 'application/pdf', title: 'invoice', fileLength: 183201, pageCount: 2, fileName: 'invoice.pdf' }) },
  });
  upsert('audio-ptt', {
    key: { remoteJid: ALICE, fromMe: false, id: '3EB0VOICE00000000001' },
    message: { audioMessage: media({ mimetype: 'audio/ogg; codecs=opus', fileLength: 10455, seconds: 7, ptt: true, waveform: bytes(64, 6) }) },
  });
  upsert('sticker', {
    key: { remoteJid: ALICE, fromMe: false, id: '3EB0STICKER000000001' },
    message: { stickerMessage: media({ mimetype: 'image/webp', fileLength: 18342, height: 512, width: 512, isAnimated: false }) },
  });
  upsert('location', {
    key: { remoteJid: ALICE, fromMe: false, id: '3EB0LOCATION00000001' },
    message: { locationMessage: { degreesLatitude: 52.520008, degreesLongitude: 13.404954, name: 'Alexanderplatz', address: 'Berlin' } },
  });
  upsert('contact', {
    key: { remoteJid: ALICE, fromMe: false, id: '3EB0CONTACT000000001' },
    message: { contactMessage: { displayName: 'Bob', vcard: 'BEGIN:VCARD\nVERSION:3.0\nFN:Bob\nTEL;type=CELL;waid=4915122222222:+49 151 22222222\nEND:VCARD' } },
  });
  upsert('reaction', {
    key: { remoteJid: ALICE, fromMe: false, id: '3EB0REACTION00000001' },
    message: { reactionMessage: { key: { remoteJid: ALICE, fromMe: true, id: 'OUR-MESSAGE-ID-0001' }, text: '👍', senderTimestampMs: T * 1000 + 123 } },
  });
  upsert('poll', {
    key: { remoteJid: GROUP, fromMe: false, id: '3EB0POLL000000000001', participant: ALICE },
    message: {
      messageContextInfo: { messageSecret: bytes(32, 8) },
      pollCreationMessageV3: { name: 'Lunch?', options: [{ optionName: 'Pizza' }, { optionName: 'Sushi' }], selectableOptionsCount: 1 },
    },
  });
  upsert('revoke', {
    key: { remoteJid: ALICE, fromMe: false, id: '3EB0REVOKE0000000001' },
    message: { protocolMessage: { key: { remoteJid: ALICE, fromMe: false, id: '3EB0C767D26A1D4E5F7A' }, type: proto.Message.ProtocolMessage.Type.REVOKE } },
  });
  upsert('edit', {
    key: { remoteJid: ALICE, fromMe: false, id: '3EB0EDIT000000000001' },
    message: {
      protocolMessage: {
        key: { remoteJid: ALICE, fromMe: false, id: '3EB0C767D26A1D4E5F7A' },
        type: proto.Message.ProtocolMessage.Type.MESSAGE_EDIT,
        editedMessage: { conversation: 'Hello there (edited)' },
        timestampMs: T * 1000 + 456,
      },
    },
  });
  // 6.17.16's message key has no phone-number twin of a LID (no participantPn/senderPn/
  // participantAlt): a LID sender is only `key.participant` ending in @lid
  upsert('group-lid', {
    key: { remoteJid: GROUP, fromMe: false, id: '3EB0LIDGROUP00000001', participant: '123456789012345@lid' },
    message: { conversation: 'sent by a LID-addressed member' },
  });
  upsert('from-me', {
    key: { remoteJid: ALICE, fromMe: true, id: '3EB0FROMME0000000001' },
    message: { conversation: 'typed on the phone' },
    status: proto.WebMessageInfo.Status.SERVER_ACK,
    pushName: undefined,
  });
  emit('chats.phoneNumberShare', 'chats.phoneNumberShare', { lid: '123456789012345@lid', jid: ALICE });
  emit('messages.reaction', 'messages.reaction', [{
    key: { remoteJid: ALICE, fromMe: true, id: 'OUR-MESSAGE-ID-0001' },
    reaction: { key: { remoteJid: ALICE, fromMe: false, id: '3EB0REACTION00000001' }, text: '👍', senderTimestampMs: T * 1000 + 123 },
  }]);

  for (const [name, status] of [['delivered', 3], ['read', 4], ['played', 5], ['server', 2]]) {
    emit(`messages.update.${name}`, 'messages.update', [{ key: { remoteJid: ALICE, id: 'OUR-MESSAGE-ID-0001', fromMe: true }, update: { status } }]);
  }
  emit('messages.update.edit', 'messages.update', [{
    key: { remoteJid: ALICE, id: '3EB0C767D26A1D4E5F7A', fromMe: false },
    update: { message: proto.Message.fromObject({ editedMessage: { message: { protocolMessage: { key: { remoteJid: ALICE, fromMe: false, id: '3EB0C767D26A1D4E5F7A' }, type: 14, editedMessage: { conversation: 'Hello there (edited)' } } } } }) },
  }]);
  emit('message-receipt.update.group-read', 'message-receipt.update', [{
    key: { remoteJid: GROUP, id: 'OUR-MESSAGE-ID-0002', fromMe: true, participant: BOB },
    receipt: { userJid: BOB, readTimestamp: T + 60 },
  }]);
  emit('message-receipt.update.group-delivered', 'message-receipt.update', [{
    key: { remoteJid: GROUP, id: 'OUR-MESSAGE-ID-0002', fromMe: true, participant: BOB },
    receipt: { userJid: BOB, receiptTimestamp: T + 30 },
  }]);

  emit('connection.update.qr', 'connection.update', { qr: '2@y8Z3kC1hQm0QxV2b,Qm9ndXNrZXk=,aWRlbnRpdHk=,YWR2U2VjcmV0' });
  emit('connection.update.connecting', 'connection.update', { connection: 'connecting', receivedPendingNotifications: false });
  emit('connection.update.open', 'connection.update', { connection: 'open' });
  emit('connection.update.new-login', 'connection.update', { isNewLogin: true, qr: undefined });
  const boom = (message, statusCode) => Object.assign(new Error(message), { isBoom: true, output: { statusCode } });
  for (const [code, message] of [[401, 'Connection Failure'], [408, 'Connection was lost'], [515, 'Stream Errored (restart required)'], [440, 'Stream Errored (conflict)']]) {
    emit(`connection.update.close-${code}`, 'connection.update', { connection: 'close', lastDisconnect: { error: boom(message, code), date: new Date(T * 1000) } });
    session.closed = false; // the adapter ended its socket: let the next close through too
  }
  emit('group-participants.update.add', 'group-participants.update', { id: GROUP, author: ALICE, participants: [BOB], action: 'add' });
  emit('group-participants.update.promote', 'group-participants.update', { id: GROUP, author: ALICE, participants: [BOB], action: 'promote' });
  emit('groups.update.subject', 'groups.update', [{ id: GROUP, subject: 'New name', author: ALICE }]);
  emit('presence.update', 'presence.update', { id: ALICE, presences: { [ALICE]: { lastKnownPresence: 'composing' } } });
  emit('presence.update.group', 'presence.update', { id: GROUP, presences: { [BOB]: { lastKnownPresence: 'available' } } });
  emit('call.offer', 'call', [{ chatId: ALICE, from: ALICE, id: 'B6D1E2F3A4C5D6E7F8A9B0C1D2E3F4A5', date: new Date(T * 1000), offline: false, status: 'offer', isVideo: false, isGroup: false }]);
  emit('contacts.update', 'contacts.update', [{ id: ALICE, notify: 'Alice B.' }]);
  emit('contacts.update.picture', 'contacts.update', [{ id: ALICE, imgUrl: 'changed' }]);
  emit('messaging-history.set', 'messaging-history.set', {
    chats: [], contacts: [], isLatest: true, progress: 100, syncType: proto.HistorySync.HistorySyncType.RECENT,
    messages: [msg({ key: { remoteJid: ALICE, fromMe: false, id: '3EB0HISTORY000000001' }, message: { conversation: 'older' } })],
  });
  return rec.written;
}

// ---------------------------------------------------------------------------------------
// whatsapp-web.js

async function webjs() {
  const Message = require('whatsapp-web.js/src/structures/Message');
  const GroupNotification = require('whatsapp-web.js/src/structures/GroupNotification');
  const Call = require('whatsapp-web.js/src/structures/Call');
  const Reaction = require('whatsapp-web.js/src/structures/Reaction');
  const PollVote = require('whatsapp-web.js/src/structures/PollVote');
  const rec = recorder('webjs');
  const client = new EventEmitter();
  client.info = { pushname: 'OpenWA', wid: { server: 'c.us', user: '4915100000001', _serialized: '4915100000001@c.us' }, me: { server: 'c.us', user: '4915100000001', _serialized: '4915100000001@c.us' }, platform: 'smba' };
  const fakeLib = { Client: function Client() { return client; }, RemoteAuth: function RemoteAuth() {} };
  const session = new WebjsSession(rec.ctx, fakeLib);
  // build the client without launching anything: start() wires the events
  client.initialize = async () => {};
  client.pupBrowser = null;
  const scratch = fs.mkdtempSync(path.join(require('node:os').tmpdir(), 'openwa-record-shapes-'));
  await session.start({ chromiumPath: process.execPath, transferDir: scratch });
  fs.rmSync(scratch, { recursive: true, force: true });
  const emit = (file, name, ...args) => { rec.expect(file); client.emit(name, ...args); rec.check(); };

  const ALICE = '4915111111111@c.us';
  const ME = '4915100000001@c.us';
  const GROUP = '120363025246125486@g.us';
  const T = 1764770000;
  const id = (fromMe, remote, idv, participant) => ({
    fromMe, remote, id: idv, ...(participant ? { participant } : {}),
    _serialized: `${fromMe}_${remote}_${idv}${participant ? `_${participant}` : ''}`,
  });
  const base = (over) => ({
    id: id(false, ALICE, '3EB0C767D26A1D4E5F7A'), viewed: false, body: 'Hello there', type: 'chat', t: T,
    notifyName: 'Alice', from: ALICE, to: ME, ack: 1, invis: false, isNewMsg: true, star: false,
    kicNotified: false, recvFresh: true, isFromTemplate: false, pollInvalidated: false,
    isSentCagPollCreation: false, latestEditMsgKey: null, latestEditSenderTimestampMs: null,
    mentionedJidList: [], groupMentions: [], isEventCanceled: false, eventInvalidated: false,
    isVcardOverMmsDocument: false, isForwarded: false, hasReaction: false, productHeaderImageRejected: false,
    lastPlaybackProgress: 0, isDynamicReplyButtonsMsg: false, isCarouselCard: false,
    isMdHistoryMsg: false, stickerSentTs: 0, isAvatar: false, lastUpdateFromServerTs: 0,
    requiresDirectConnection: null, bizContentPlaceholderType: null, hostedBizEncStateMismatch: false,
    senderOrRecipientAccountTypeHosted: false, placeholderCreatedWhenAccountIsHosted: false,
    links: [], isEphemeral: false, isStatusV3: false,
    ...over,
  });
  const mk = (over) => new Message(client, base(over));

  emit('message.chat', 'message', mk({}));
  emit('message.chat-quote-mentions', 'message', mk({
    id: id(false, GROUP, '3EB0A1B2C3D4E5F60718', ALICE), from: GROUP, author: ALICE, to: ME,
    body: '@4915122222222 see above', mentionedJidList: ['4915122222222@c.us'],
    quotedMsg: { type: 'chat', body: 'the original words' }, quotedStanzaID: '3EB0FFEEDDCCBBAA9988',
    quotedParticipant: '4915122222222@c.us',
  }));
  emit('message.image', 'message', mk({
    id: id(false, ALICE, '3EB0IMAGE00000000001'), type: 'image', body: '/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAMCAgMCAgMDAwMEAwMEBQgFBQQEBQoHBwYIDAoMDAsKCwsNDhIQDQ4RDgsLEBYQERMUFRUVDA8XGBYUGBIUFRT/',
    caption: 'Look at this', mimetype: 'image/jpeg', filehash: 'wH2HzGkO8v1qYQ0S7C3R3s8aZQ4n3I3oHf2mYk6vO1E=',
    encFilehash: 'k1Zl6x6sQmC0sJxS2mJm3d5mQ8mF2tGm3pO1yR8t2wE=', size: 52344, height: 1280, width: 960,
    mediaKey: 'p4Xl1k1c7o6e4lR2Zx1m8g1q0b9v8u7y6t5r4e3w2q1=', mediaKeyTimestamp: T - 5,
    directPath: '/v/t62.7118-24/12345_67890.enc?ccb=11-4&oh=01&oe=68', deprecatedMms3Url: 'https://mmg.whatsapp.net/v/t62.7118-24/12345_67890.enc?ccb=11-4',
    isViewOnce: false, staticUrl: '', interactiveAnnotations: [], scanLengths: [10, 20, 30], scansSidecar: {},
  }));
  emit('message.location', 'message', mk({
    id: id(false, ALICE, '3EB0LOCATION00000001'), type: 'location', body: '/9j/4AAQSkZJRg', lat: 52.520008, lng: 13.404954,
    loc: 'Alexanderplatz\nBerlin', clientUrl: 'https://maps.example/alex', isLive: false,
  }));
  emit('message.vcard', 'message', mk({
    id: id(false, ALICE, '3EB0CONTACT000000001'), type: 'vcard', vcardFormattedName: 'Bob',
    body: 'BEGIN:VCARD\nVERSION:3.0\nFN:Bob\nTEL;type=CELL;waid=4915122222222:+49 151 22222222\nEND:VCARD',
  }));
  emit('message.revoked', 'message', mk({ id: id(false, ALICE, '3EB0REVOKED000000001'), type: 'revoked', body: '', subtype: 'sender_revoke' }));
  emit('message_create.from-me', 'message_create', mk({
    id: id(true, ALICE, '3EB0FROMME0000000001'), from: ME, to: ALICE, body: 'typed on the phone', ack: 0, notifyName: '',
  }));
  for (const [ack, what] of [[1, 'server'], [2, 'device'], [3, 'read'], [4, 'played']]) {
    emit(`message_ack.${ack}-${what}`, 'message_ack', mk({ id: id(true, ALICE, '3EB0SENT000000000001'), from: ME, to: ALICE, body: 'hi', ack }), ack);
  }
  emit('message_revoke_everyone', 'message_revoke_everyone',
    mk({ id: id(false, ALICE, '3EB0C767D26A1D4E5F7A'), type: 'revoked', body: '', subtype: 'sender_revoke', protocolMessageKey: id(false, ALICE, '3EB0C767D26A1D4E5F7A') }),
    mk({ id: id(false, ALICE, '3EB0C767D26A1D4E5F7A') }));
  emit('message_reaction', 'message_reaction', new Reaction(client, {
    msgKey: id(false, ALICE, '3EB0REACTION00000001'), orphan: 0, orphanReason: null, timestamp: T, reactionText: '👍',
    read: false, parentMsgKey: id(true, ALICE, '3EB0SENT000000000001'), senderUserJid: ALICE, ack: undefined,
  }));
  emit('message_edit', 'message_edit', mk({
    id: id(false, ALICE, '3EB0C767D26A1D4E5F7A'), body: 'Hello there (edited)',
    latestEditMsgKey: id(false, ALICE, '3EB0EDIT000000000001'), latestEditSenderTimestampMs: T * 1000 + 456,
  }), 'Hello there (edited)', 'Hello there');
  const gp2 = (subtype, over) => new GroupNotification(client, {
    id: id(false, GROUP, `3EB0GP2${subtype.toUpperCase().padEnd(13, '0')}`, ALICE), type: 'gp2', subtype, t: T,
    author: ALICE, recipients: ['4915122222222@c.us'], body: '', ...over,
  });
  emit('group_join', 'group_join', gp2('add'));
  emit('group_leave', 'group_leave', gp2('remove'));
  emit('group_update.subject', 'group_update', gp2('subject', { body: 'New name', recipients: undefined }));
  emit('group_update.description', 'group_update', gp2('description', { body: 'New description', recipients: undefined }));
  emit('qr', 'qr', '2@y8Z3kC1hQm0QxV2b,Qm9ndXNrZXk=,aWRlbnRpdHk=,YWR2U2VjcmV0,0');
  emit('code', 'code', 'ABCD1234');
  emit('authenticated', 'authenticated', undefined);
  emit('ready', 'ready');
  emit('disconnected.LOGOUT', 'disconnected', 'LOGOUT');
  emit('disconnected.CONFLICT', 'disconnected', 'CONFLICT');
  emit('change_state', 'change_state', 'CONNECTED');
  emit('auth_failure', 'auth_failure', 'Unable to log in. Are the session details valid?');
  emit('call', 'call', new Call(client, {
    id: 'B6D1E2F3A4C5D6E7F8A9B0C1D2E3F4A5', peerJid: ALICE, offerTime: T, isVideo: false, isGroup: false,
    outgoing: false, canHandleLocally: false, webClientShouldHandle: false, participants: [],
  }));
  emit('vote_update', 'vote_update', new PollVote(client, {
    sender: ALICE, selectedOptionLocalIds: [0], senderTimestampMs: T * 1000 + 789,
    parentMsgKey: id(true, GROUP, '3EB0POLL000000000001'),
    parentMessage: base({
      id: id(true, GROUP, '3EB0POLL000000000001'), type: 'poll_creation', body: '', from: ME, to: GROUP, pollName: 'Lunch?',
      pollOptions: [{ name: 'Pizza', localId: 0 }, { name: 'Sushi', localId: 1 }], pollSelectableOptionsCount: 1,
      messageSecret: { 0: 12, 1: 34, 2: 56 },
    }),
  }));
  rec.expect('init_failed');
  rec.ctx.event('init_failed', { message: 'net::ERR_TUNNEL_CONNECTION_FAILED at https://web.whatsapp.com/' });
  session.client = null; // nothing to close
  return rec.written;
}

(async () => {
  const b = await baileys();
  const w = await webjs();
  process.stdout.write(`wrote ${b.length} Baileys and ${w.length} whatsapp-web.js shapes under ${OUT}\n`);
})().catch((err) => { process.stderr.write(`${err.stack}\n`); process.exit(1); });
