'use strict';
// The maps a session adapter keeps for its life (recent sends, polls, stanza addresses,
// LID answers, unread ids): each holds the newest entries only, so none grows with time.

/** `map[key] = value` as the newest entry; past `most` entries the oldest is dropped. */
function keepNewest(map, key, value, most) {
  map.delete(key);
  map.set(key, value);
  if (map.size > most) map.delete(map.keys().next().value);
}

module.exports = { keepNewest };
