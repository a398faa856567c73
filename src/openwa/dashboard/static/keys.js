// @ts-check
// API keys (admins on every session): list, create (the key shown once), change role,
// sessions, expiry and networks, delete. The server decides every call all the same.

import { call, del, patch, post, seg } from "./api.js";
import { confirmAction, field, fill, guarded, h, notify, pager, showError, showOnce, when } from "./ui.js";

/** @typedef {import("./api.js").ApiKey} ApiKey */

const ROLES = ["admin", "operator", "viewer"];

/** Comma- or line-separated values; empty: null (all sessions, anywhere). @param {string} text */
export function listOrNull(text) {
  const items = text.split(/[\s,]+/).map((item) => item.trim()).filter(Boolean);
  return items.length ? items : null;
}

/** An ISO time as the value of a `datetime-local` input (local time). @param {string | null} iso */
export function localInput(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  const pad = (/** @type {number} */ n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

/** A `datetime-local` value as ISO 8601 with an offset; empty: null. @param {string} value */
export function isoOrNull(value) {
  return value ? new Date(value).toISOString() : null;
}

/** @param {string} selected */
function roleSelect(selected) {
  return /** @type {HTMLSelectElement} */ (
    h("select", { name: "role" }, ...ROLES.map((role) => h("option", { value: role, selected: role === selected }, role)))
  );
}

/** Session ids as names where known (a key's scope is stored as ids). */
const names = new Map();
/** @param {string[] | null} ids */
const sessionNames = (ids) => ids?.map((id) => names.get(id) ?? id) ?? null;

/** The fields a key is made or changed with. @param {ApiKey | null} key */
function keyFields(key) {
  const role = roleSelect(key?.role ?? "operator");
  const sessions = /** @type {HTMLInputElement} */ (
    h("input", { name: "sessions", autocomplete: "off", value: sessionNames(key?.sessions ?? null)?.join(", ") ?? "" })
  );
  const expires = /** @type {HTMLInputElement} */ (
    h("input", { type: "datetime-local", name: "expiresAt", value: localInput(key?.expiresAt ?? null) })
  );
  const cidrs = /** @type {HTMLInputElement} */ (
    h("input", { name: "allowedCidrs", autocomplete: "off", value: key?.allowedCidrs?.join(", ") ?? "", placeholder: "10.0.0.0/8, 2001:db8::/32" })
  );
  const controls = h(
    "div",
    { class: "row" },
    field("Role", role),
    field("Sessions", sessions, "Session names or ids, comma-separated; empty: every session"),
    field("Expires", expires, "Your local time; empty: never"),
    field("Allowed networks", cidrs, "CIDRs, comma-separated; empty: anywhere"),
  );
  return { role, sessions, expires, cidrs, controls };
}

/** @type {import("./app.js").Page} */
export function keysPage(main, access) {
  main.append(h("h1", null, "API keys"));
  if (!access.isAdmin || !access.unscoped) {
    main.append(h("p", { class: "empty" }, "Keys are managed with an admin key on every session."));
    return () => {};
  }
  const list = h("ul", { class: "cards", id: "key-list", "aria-label": "API keys" });
  const created = h("div", { id: "new-key-box" });
  const pages = h("div");
  let page = 1;
  fill(main, h("h1", null, "API keys"), createForm(), created, h("h2", null, "Keys"), list, pages);

  async function load() {
    const { data, pagination } = await call("GET", "/api/keys", { query: { page, limit: 50 } });
    list.replaceChildren(...data.map((/** @type {ApiKey} */ key) => h("li", null, card(key))));
    pages.replaceChildren(
      pager(pagination, (to) => {
        page = to;
        load().catch(showError);
      }, "Keys"),
    );
  }

  function createForm() {
    const name = /** @type {HTMLInputElement} */ (h("input", { name: "name", required: true, maxlength: 100, autocomplete: "off" }));
    const fields = keyFields(null);
    const form = h(
      "form",
      {
        class: "card",
        id: "create-key",
        "aria-labelledby": "key-create-title",
        onsubmit: (/** @type {SubmitEvent} */ event) => {
          event.preventDefault();
          const button = /** @type {HTMLButtonElement} */ (form.querySelector("button[type=submit]"));
          guarded(button, async () => {
            /** @type {ApiKey} */
            const made = await post("/api/keys", {
              name: name.value.trim(),
              role: fields.role.value,
              sessions: listOrNull(fields.sessions.value),
              expiresAt: isoOrNull(fields.expires.value),
              allowedCidrs: listOrNull(fields.cidrs.value),
            });
            /** @type {HTMLFormElement} */ (form).reset();
            showOnce(
              created,
              `The key "${made.name}" (${made.role}), shown only now; the server keeps a hash of it only.`,
              [{ secret: made.key ?? "", id: "new-key", copy: "Copy key" }],
            );
            await load();
          });
        },
      },
      h("h2", { id: "key-create-title" }, "New key"),
      field("Name", name),
      fields.controls,
      h("button", { type: "submit" }, "Create key"),
    );
    return form;
  }

  /** @param {ApiKey} key */
  function card(key) {
    const titleId = `k-${key.id}`;
    const path = `/api/keys/${seg(key.id)}`;
    const editor = h("div");
    const edit = h(
      "button",
      {
        type: "button",
        "aria-expanded": "false",
        "aria-label": `Change ${key.name}`,
        onclick: () => {
          const open = edit.getAttribute("aria-expanded") !== "true";
          edit.setAttribute("aria-expanded", String(open));
          editor.replaceChildren(...(open ? [editForm(key)] : []));
        },
      },
      "Change",
    );
    const remove = h(
      "button",
      {
        type: "button",
        class: "danger",
        "aria-label": `Delete ${key.name}`,
        onclick: () =>
          guarded(/** @type {HTMLButtonElement} */ (remove), async () => {
            if (!(await confirmAction(`Delete the key "${key.name}"? It stops working at once.`, "Delete"))) return;
            await del(path);
            notify(`Key "${key.name}" deleted.`);
            await load();
          }),
      },
      "Delete",
    );
    const expired = key.expiresAt !== null && Date.parse(key.expiresAt) <= Date.now();
    return h(
      "article",
      { class: "card key", "aria-labelledby": titleId, dataset: { keyId: key.id, role: key.role } },
      h("header", null, h("h3", { id: titleId }, key.name), " ", h("span", { class: "badge" }, key.role)),
      h(
        "dl",
        { class: "facts" },
        h("dt", null, "Prefix"),
        h("dd", null, h("code", null, key.prefix)),
        h("dt", null, "Sessions"),
        h("dd", null, key.sessions === null ? "every session" : (sessionNames(key.sessions) ?? []).join(", ")),
        h("dt", null, "Expires"),
        h("dd", null, key.expiresAt ? `${when(key.expiresAt)}${expired ? " (expired)" : ""}` : "never"),
        h("dt", null, "Networks"),
        h("dd", null, key.allowedCidrs === null ? "anywhere" : key.allowedCidrs.join(", ")),
        h("dt", null, "Made"),
        h("dd", null, `${when(key.createdAt)} (${key.source})`),
      ),
      h("div", { class: "actions" }, edit, remove),
      editor,
    );
  }

  /** Only what changed is sent (an expiry already past cannot be sent again). @param {ApiKey} key */
  function editForm(key) {
    const fields = keyFields(key);
    const form = h(
      "form",
      {
        class: "edit-key",
        "aria-label": `Change ${key.name}`,
        onsubmit: (/** @type {SubmitEvent} */ event) => {
          event.preventDefault();
          const button = /** @type {HTMLButtonElement} */ (form.querySelector("button[type=submit]"));
          guarded(button, async () => {
            /** @type {Record<string, unknown>} */
            const change = {};
            if (fields.role.value !== key.role) change.role = fields.role.value;
            const sessions = listOrNull(fields.sessions.value);
            if (JSON.stringify(sessions) !== JSON.stringify(sessionNames(key.sessions))) change.sessions = sessions;
            if (fields.expires.value !== localInput(key.expiresAt)) change.expiresAt = isoOrNull(fields.expires.value);
            const cidrs = listOrNull(fields.cidrs.value);
            if (JSON.stringify(cidrs) !== JSON.stringify(key.allowedCidrs)) change.allowedCidrs = cidrs;
            if (!Object.keys(change).length) return notify("Nothing changed.");
            await patch(`/api/keys/${seg(key.id)}`, change);
            notify(`Key "${key.name}" changed.`);
            await load();
          });
        },
      },
      fields.controls,
      h("button", { type: "submit" }, "Save"),
    );
    return form;
  }

  // Anew on each visit, even if the list fails: a session deleted since keeps its id,
  // not its old name (a new session of that name would seem to be in the key's scope).
  names.clear();
  call("GET", "/api/sessions", { query: { limit: 100 } })
    .then(({ data }) => {
      for (const session of data) names.set(session.id, session.name);
    })
    .catch(showError)
    .finally(() => load().catch(showError));
  return () => {};
}
