// @ts-check
// The event log: the latest events under filters (session, type), then following live
// through SSE read with fetch, resuming after the last cursor seen.

import { call } from "./api.js";
import { followStream } from "./live.js";
import { field, h, showError, when } from "./ui.js";

/** @typedef {import("./api.js").OpenWAEvent} OpenWAEvent */

const SHOWN = 200;

/** @type {import("./app.js").Page} */
export function eventsPage(main) {
  const session = /** @type {HTMLSelectElement} */ (
    h("select", { name: "session" }, h("option", { value: "" }, "All sessions"))
  );
  const types = /** @type {HTMLInputElement} */ (
    h("input", { name: "events", autocomplete: "off", placeholder: "message.received, session.status" })
  );
  const follow = /** @type {HTMLInputElement} */ (h("input", { type: "checkbox", name: "follow", checked: true }));
  const state = h("p", { id: "live-state", role: "status" }, "");
  const list = h("ol", { class: "events", id: "event-list", reversed: true, "aria-label": "Events, newest first" });
  /** @type {Map<string, string>} session id -> name */
  const names = new Map();
  /** @type {{close: () => void} | null} */
  let stream = null;
  let generation = 0;

  main.append(
    h("h1", null, "Events"),
    h(
      "form",
      {
        class: "card row",
        "aria-label": "Filters",
        onsubmit: (/** @type {SubmitEvent} */ event) => {
          event.preventDefault();
          reload().catch(showError);
        },
      },
      field("Session", session),
      field("Types", types, "Comma-separated; empty: every event"),
      h("div", { class: "field inline" }, follow, h("label", { for: (follow.id = "follow") }, "Follow live")),
      h("button", { type: "submit" }, "Apply"),
    ),
    state,
    list,
  );
  follow.addEventListener("change", () => reload().catch(showError));

  /** @param {OpenWAEvent} event */
  function item(event) {
    return h(
      "li",
      { dataset: { event: event.event, cursor: String(event.cursor ?? "") } },
      h(
        "details",
        null,
        h(
          "summary",
          null,
          h("time", { datetime: event.timestamp }, when(event.timestamp)),
          " ",
          h("strong", null, event.event),
          " ",
          names.get(event.sessionId) ?? event.sessionId,
        ),
        h("pre", null, JSON.stringify(event.data, null, 2)),
      ),
    );
  }

  /** @param {OpenWAEvent} event */
  function add(event) {
    list.prepend(item(event));
    while (list.children.length > SHOWN) list.lastElementChild?.remove();
  }

  async function reload() {
    const mine = ++generation;
    stream?.close();
    stream = null;
    list.replaceChildren();
    const query = { sessions: session.value || undefined, events: types.value.replaceAll(" ", "") || undefined };
    // The log is read oldest first: walk to its end keeping the latest, so the live
    // stream starts where the page stops and nothing is shown twice or missed.
    let after = 0;
    /** @type {OpenWAEvent[]} */
    let latest = [];
    for (;;) {
      const { data } = await call("GET", "/api/events", { query: { ...query, after, limit: 1000 } });
      if (mine !== generation) return;
      latest = latest.concat(data.events).slice(-SHOWN);
      if (data.nextCursor > after) after = data.nextCursor;
      if (data.events.length < 1000) break;
    }
    for (const event of latest) add(event);
    if (!follow.checked) {
      state.textContent = "Not following.";
      return;
    }
    state.textContent = "Connecting…";
    stream = followStream({
      after,
      ...query,
      onEvent: add,
      onError: showError,
      onState: (now) => {
        state.textContent = now === "open" ? "Following live." : "Disconnected; reconnecting…";
      },
    });
  }

  call("GET", "/api/sessions", { query: { limit: 100 } })
    .then(({ data }) => {
      for (const s of data) {
        names.set(s.id, s.name);
        session.append(h("option", { value: s.id }, s.name));
      }
    })
    .catch(showError)
    .finally(() => reload().catch(showError));
  return () => {
    generation++;
    stream?.close();
  };
}
