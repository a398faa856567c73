'use strict';
// Which messages of a history sync are still unread on the phone. WhatsApp gives each
// chat's unread count, not the messages: they are the chat's newest messages from
// others, as many as the count (the same rule as openwa/engines/unread.py, applied here
// because a sync is cut into frames that may split a chat).

/** A timestamp in seconds from a number, a numeric string or a protobuf Long. */
function seconds(value) {
  if (value && typeof value === 'object' && typeof value.toNumber === 'function') return value.toNumber();
  const n = Number(value);
  return Number.isFinite(n) ? n : 0;
}

/**
 * The ids of the messages still unread: `counts` maps a chat id to its unread count;
 * `read(message)` says `{chat, id, fromMe, t}` of a message that counts (or nothing:
 * notices, edits, reactions). `lastOf` (optional) maps a chat id to its last message's
 * time: a chat whose newest message here is older is left alone (its newest are not here).
 */
function stillUnread(messages, counts, read, lastOf = new Map()) {
  const byChat = new Map();
  for (const message of messages) {
    const m = read(message);
    if (!m || typeof m.id !== 'string' || typeof m.chat !== 'string') continue;
    if (!(counts.get(m.chat) > 0)) continue;
    if (!byChat.has(m.chat)) byChat.set(m.chat, []);
    byChat.get(m.chat).push({ id: m.id, t: seconds(m.t), fromMe: Boolean(m.fromMe) });
  }
  const ids = new Set();
  for (const [chat, found] of byChat) {
    found.sort((a, b) => b.t - a.t);
    if (seconds(lastOf.get(chat)) > found[0].t) continue;
    for (const m of found.filter((f) => !f.fromMe).slice(0, counts.get(chat))) ids.add(m.id);
  }
  return ids;
}

/**
 * Chat id -> unread count, of the chats that have any (a chat marked unread by hand, -1,
 * has none: clearing that mark reaches us as no read receipt, so nothing is kept unread
 * for it), and chat id -> its last message's time.
 */
function unreadCounts(chats, idOf) {
  const counts = new Map();
  const lastOf = new Map();
  for (const chat of Array.isArray(chats) ? chats : []) {
    const id = chat ? idOf(chat) : undefined;
    const count = chat ? Number(chat.unreadCount) : 0;
    if (typeof id !== 'string' || !Number.isFinite(count) || count <= 0) continue;
    counts.set(id, count);
    if (chat.lastMsgTimestamp !== undefined) lastOf.set(id, chat.lastMsgTimestamp);
  }
  return { counts, lastOf };
}

module.exports = { stillUnread, unreadCounts, seconds };
