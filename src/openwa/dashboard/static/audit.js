// @ts-check
// The audit log (admins on every session): mutating calls and first uses of keys, newest
// first, filtered by key, session, action and time, paged.

import { call } from "./api.js";
import { isoOrNull } from "./keys.js";
import { field, h, pager, showError, when } from "./ui.js";

/** @typedef {import("./api.js").AuditEntry} AuditEntry */

/** @type {import("./app.js").Page} */
export function auditPage(main, access) {
  main.append(h("h1", null, "Audit log"));
  if (!access.isAdmin || !access.unscoped) {
    main.append(h("p", { class: "empty" }, "The audit log is read with an admin key on every session."));
    return () => {};
  }
  const key = /** @type {HTMLSelectElement} */ (h("select", { name: "keyId" }, h("option", { value: "" }, "Every key")));
  const session = /** @type {HTMLSelectElement} */ (
    h("select", { name: "sessionId" }, h("option", { value: "" }, "Every session"))
  );
  const action = /** @type {HTMLInputElement} */ (
    h("input", { name: "action", autocomplete: "off", placeholder: "create_session" })
  );
  const since = /** @type {HTMLInputElement} */ (h("input", { type: "datetime-local", name: "since" }));
  const body = h("tbody", { id: "audit-rows" });
  const pages = h("div");
  /** @type {Map<string, string>} */
  const keyNames = new Map();
  /** @type {Map<string, string>} */
  const sessionNames = new Map();
  let page = 1;
  let generation = 0;

  main.append(
    h(
      "form",
      {
        class: "card row",
        id: "audit-filters",
        "aria-label": "Filters",
        onsubmit: (/** @type {SubmitEvent} */ event) => {
          event.preventDefault();
          page = 1;
          load().catch(showError);
        },
      },
      field("Key", key),
      field("Session", session),
      field("Action", action, "e.g. create_session, update_key, key_first_use"),
      field("Since", since, "Your local time"),
      h("button", { type: "submit" }, "Apply"),
    ),
    h(
      "div",
      // Focusable: a keyboard user scrolls a table wider than the screen with arrows.
      { class: "scroll", tabindex: "0", role: "region", "aria-label": "Audit entries" },
      h(
        "table",
        { class: "audit-log" },
        h("caption", null, "Audit entries, newest first"),
        h(
          "thead",
          null,
          h(
            "tr",
            null,
            ...["Time", "Key", "Action", "Call", "Session", "Outcome", "From"].map((t) => h("th", { scope: "col" }, t)),
          ),
        ),
        body,
      ),
    ),
    pages,
  );

  /** @param {AuditEntry} entry */
  function row(entry) {
    const target = entry.target ? Object.values(entry.target).join(", ") : "";
    return h(
      "tr",
      { dataset: { action: entry.action, outcome: entry.outcome } },
      h("td", null, h("time", { datetime: entry.at }, when(entry.at))),
      h("td", null, entry.keyId ? (keyNames.get(entry.keyId) ?? entry.keyId) : "none"),
      h("td", null, entry.action),
      h(
        "td",
        null,
        h("code", null, `${entry.method} ${entry.route}`),
        target ? ` (${target})` : "",
        entry.fields?.length ? ` fields: ${entry.fields.join(", ")}` : "",
      ),
      h("td", null, entry.sessionId ? (sessionNames.get(entry.sessionId) ?? entry.sessionId) : ""),
      h("td", null, `${entry.outcome}${entry.status ? ` (${entry.status})` : ""}`),
      h("td", null, entry.address ?? ""),
    );
  }

  async function load() {
    const mine = ++generation;
    const { data, pagination } = await call("GET", "/api/audit", {
      query: {
        page,
        limit: 50,
        keyId: key.value,
        sessionId: session.value,
        action: action.value.trim(),
        since: isoOrNull(since.value),
      },
    });
    if (mine !== generation) return;
    body.replaceChildren(
      ...(data.length ? data.map(row) : [h("tr", null, h("td", { colspan: "7", class: "empty" }, "No entries."))]),
    );
    pages.replaceChildren(
      pager(pagination, (to) => {
        page = to;
        load().catch(showError);
      }, "Audit log"),
    );
  }

  Promise.all([
    call("GET", "/api/keys", { query: { limit: 100 } }).then(({ data }) => {
      for (const k of data) {
        keyNames.set(k.id, k.name);
        key.append(h("option", { value: k.id }, k.name));
      }
    }),
    call("GET", "/api/sessions", { query: { limit: 100 } }).then(({ data }) => {
      for (const s of data) {
        sessionNames.set(s.id, s.name);
        session.append(h("option", { value: s.id }, s.name));
      }
    }),
  ])
    .catch(showError)
    .finally(() => load().catch(showError));
  return () => {
    generation++;
  };
}
