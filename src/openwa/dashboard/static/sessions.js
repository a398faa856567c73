// @ts-check
// Sessions: the list with live status and QR codes, creating one, and its lifecycle.

import { call, del, get, post, seg } from "./api.js";
import { openSocket } from "./live.js";
import { confirmAction, field, fill, guarded, h, notify, showError, showOnce, statusBadge, when } from "./ui.js";
import { webhookFields } from "./webhooks.js";

/** @typedef {import("./api.js").Session} Session */
/**
 * A shown session: its card, its QR, and its pairing form (kept across redraws, so
 * what is typed there stays) with the last code asked for.
 * @typedef {{session: Session, card: HTMLElement, qr: string | null,
 *   pairing?: HTMLElement, code?: string | null}} Entry
 */

/** The API takes up to ten webhooks with a session (`config.webhooks`). */
const MAX_WEBHOOKS = 10;

/** Every session this key may see, all pages of them. */
export async function allSessions() {
  /** @type {Session[]} */
  const sessions = [];
  for (let page = 1; ; page++) {
    const { data, pagination } = await call("GET", "/api/sessions", { query: { page, limit: 100 } });
    sessions.push(...data);
    if (!pagination || page >= pagination.totalPages) return sessions;
  }
}

/**
 * `name=value` lines as the metadata object the API takes.
 * @param {string} text
 * @returns {Record<string, string> | undefined}
 */
function parseMetadata(text) {
  /** @type {Record<string, string>} */
  const metadata = {};
  for (const line of text.split("\n")) {
    if (!line.trim()) continue;
    const at = line.indexOf("=");
    if (at <= 0) throw new Error(`Metadata line "${line}" is not name=value`);
    metadata[line.slice(0, at).trim()] = line.slice(at + 1).trim();
  }
  return Object.keys(metadata).length ? metadata : undefined;
}

/**
 * Whether `a` is an older reading of the session than `b` (times have milliseconds
 * only: two moves within one are told apart by the history's length).
 * @param {Session} a @param {Session} b
 */
function isOlder(a, b) {
  const at = Date.parse(a.updatedAt);
  const bt = Date.parse(b.updatedAt);
  return at < bt || (at === bt && a.statusHistory.length < b.statusHistory.length);
}

/** @type {import("./app.js").Page} */
export function sessionsPage(main, access) {
  /** @type {Map<string, Entry>} */
  const shown = new Map();
  const list = h("ul", { class: "cards", id: "session-list", "aria-label": "Sessions" });
  const empty = h("p", { class: "empty" }, "No sessions yet.");

  main.append(h("h1", null, "Sessions"));
  const secrets = h("div", { id: "session-secrets" });
  if (access.canWrite && access.unscoped) main.append(createForm(), secrets);
  main.append(h("h2", { class: "visually-hidden" }, "Your sessions"), empty, list);

  /** @param {Session} session */
  function put(session) {
    const known = shown.get(session.id);
    // Reads started by successive events may answer out of order: keep the newest.
    if (known && isOlder(session, known.session)) return;
    const entry = known ?? { session, card: h("article", { class: "card session" }), qr: null };
    entry.session = session;
    if (session.status !== "qr_ready") entry.qr = null;
    if (!known) {
      shown.set(session.id, entry);
      list.append(h("li", { dataset: { sessionId: session.id } }, entry.card));
    }
    // A `session.qr` event may have come before the status did: read the QR then.
    if (session.status === "qr_ready" && !entry.qr) loadQr(session.id);
    draw(entry);
    empty.hidden = shown.size > 0;
  }

  /** @param {string} id */
  function remove(id) {
    shown.get(id)?.card.parentElement?.remove();
    shown.delete(id);
    empty.hidden = shown.size > 0;
  }

  /** @param {string} id */
  async function refresh(id) {
    try {
      put(await get(`/api/sessions/${seg(id)}`));
    } catch (error) {
      if (/** @type {any} */ (error).status === 404) remove(id);
      else showError(error);
    }
  }

  /** @param {string} id */
  async function loadQr(id) {
    try {
      const qr = await get(`/api/sessions/${seg(id)}/qr`);
      const entry = shown.get(id);
      if (entry && entry.session.status === "qr_ready") {
        entry.qr = qr.image;
        draw(entry);
      }
    } catch {
      // The QR is gone already (linked meanwhile): the status event says so.
    }
  }

  /**
   * Linking by phone number instead of the QR: `POST .../pairing-code`; the code is
   * typed on the phone (Linked devices › Link with phone number instead).
   * @param {Entry} entry
   */
  function pairingForm(entry) {
    const { name, id } = entry.session;
    const phone = /** @type {HTMLInputElement} */ (
      h("input", { type: "tel", name: "phoneNumber", required: true, minlength: 5, maxlength: 32, autocomplete: "off", "aria-label": `Phone number to link ${name}` })
    );
    const form = h(
      "form",
      {
        class: "pairing",
        "aria-label": `Link ${name} by phone number`,
        onsubmit: (/** @type {SubmitEvent} */ event) => {
          event.preventDefault();
          const button = /** @type {HTMLButtonElement} */ (form.querySelector("button"));
          guarded(button, async () => {
            const { code } = await post(`/api/sessions/${seg(id)}/pairing-code`, { phoneNumber: phone.value.trim() });
            entry.code = code;
            draw(entry);
          });
        },
      },
      h("label", { for: (phone.id = `pair-${id}`) }, "Or link by phone number"),
      h("div", { class: "row" }, phone, h("button", { type: "submit", "aria-label": `Get a pairing code for ${name}` }, "Get code")),
    );
    return form;
  }

  /** @param {Entry} entry */
  function draw(entry) {
    const { session } = entry;
    const base = `/api/sessions/${seg(session.id)}`;
    const titleId = `s-${session.id}`;
    const metadata = Object.entries(session.config?.metadata ?? {});
    // A redraw must not close the history someone opened, nor drop the focus of a
    // keyboard user from the button they just used.
    const historyOpen = entry.card.querySelector("details")?.open ?? false;
    const focused = entry.card.contains(document.activeElement)
      ? document.activeElement?.getAttribute("aria-label")
      : null;
    if (session.status !== "qr_ready") {
      entry.pairing = undefined;
      entry.code = null;
    }
    entry.card.setAttribute("aria-labelledby", titleId);
    entry.card.dataset.status = session.status;
    /**
     * A lifecycle button; `question` asks first (null: nothing to undo).
     * @param {string} label @param {string} path @param {string | null} question
     */
    const action = (label, path, question, removes = false) =>
      h(
        "button",
        {
          type: "button",
          class: removes ? "danger" : "",
          "aria-label": `${label} ${session.name}`,
          onclick: (/** @type {Event} */ event) =>
            guarded(/** @type {HTMLButtonElement} */ (event.currentTarget), async () => {
              if (question && !(await confirmAction(question, label))) return;
              if (removes) {
                await del(base);
                notify(`Session ${session.name} deleted`);
              } else {
                await post(`${base}/${path}`);
              }
              await refresh(session.id);
            }),
        },
        label,
      );
    fill(
      entry.card,
      h(
        "header",
        null,
        h("h3", { id: titleId }, h("a", { href: `#/sessions/${seg(session.id)}` }, session.name)),
        statusBadge(session.status),
      ),
      h(
        "dl",
        { class: "facts" },
        h("dt", null, "Engine"),
        h("dd", null, session.engine),
        h("dt", null, "Phone"),
        h("dd", null, session.phoneNumber ?? "not linked"),
        metadata.length ? h("dt", null, "Metadata") : null,
        metadata.length ? h("dd", null, metadata.map(([k, v]) => `${k}=${v}`).join(", ")) : null,
        // As the API shows it: credentials masked.
        session.config?.proxy ? h("dt", null, "Proxy") : null,
        session.config?.proxy ? h("dd", null, session.config.proxy) : null,
      ),
      session.status === "qr_ready"
        ? h(
            "figure",
            { class: "qr" },
            entry.qr
              ? h("img", { src: entry.qr, alt: `QR code to link ${session.name}`, width: 240, height: 240 })
              : h("p", null, "Waiting for the QR code…"),
            h("figcaption", null, "Scan with WhatsApp: Settings › Linked devices › Link a device."),
          )
        : null,
      session.status === "qr_ready" && access.canWrite ? (entry.pairing ??= pairingForm(entry)) : null,
      session.status === "qr_ready" && entry.code
        ? h(
            "p",
            { class: "pairing-code", role: "status" },
            "Pairing code: ",
            h("strong", { dataset: { code: entry.code } }, entry.code),
            " – on the phone: Linked devices › Link with phone number instead.",
          )
        : null,
      session.lastError ? h("p", { class: "problem" }, `Last error: ${session.lastError}`) : null,
      h(
        "details",
        { open: historyOpen },
        h("summary", null, "Status history"),
        h(
          "ol",
          { class: "history" },
          ...session.statusHistory.map((change) =>
            h(
              "li",
              null,
              h("time", { datetime: change.at }, when(change.at)),
              ` ${change.previousStatus ?? "–"} → ${change.status}`,
              change.reason ? ` (${change.reason})` : "",
            ),
          ),
        ),
      ),
      access.canWrite
        ? h(
            "div",
            { class: "actions" },
            action("Start", "start", null),
            action("Stop", "stop", `Stop ${session.name}? It stays linked.`),
            action("Restart", "restart", `Restart ${session.name}?`),
            action("Log out", "logout", `Log ${session.name} out? Linking it again needs a new QR scan.`),
            action("Delete", "", `Delete ${session.name} and everything stored for it?`, true),
          )
        : null,
    );
    if (focused) {
      /** @type {HTMLElement | null} */ (entry.card.querySelector(`[aria-label="${CSS.escape(focused)}"]`))?.focus();
    }
  }

  /**
   * The webhooks of a new session (`config.webhooks`): none at first, up to the API's
   * ten, each made of the Webhooks page's own fields.
   */
  function webhookList() {
    /** @type {Array<{value: () => Record<string, unknown>, item: HTMLElement}>} */
    const added = [];
    const items = h("ol", { class: "new-webhooks" });
    const add = h(
      "button",
      {
        type: "button",
        onclick: () => {
          const fields = webhookFields(null);
          const entry = { value: fields.value, item: h("li") };
          entry.item.append(
            fields.controls,
            h(
              "button",
              {
                type: "button",
                class: "link",
                onclick: () => {
                  added.splice(added.indexOf(entry), 1);
                  entry.item.remove();
                  add.hidden = false;
                  add.focus();
                },
                "aria-label": "Remove this webhook",
              },
              "Remove",
            ),
          );
          added.push(entry);
          items.append(entry.item);
          add.hidden = added.length >= MAX_WEBHOOKS;
          /** @type {HTMLElement} */ (entry.item.querySelector("input"))?.focus();
        },
      },
      "Add a webhook",
    );
    const fieldset = h(
      "fieldset",
      { class: "webhooks" },
      h("legend", null, "Webhooks (optional; each secret is shown once, after creating)"),
      items,
      add,
    );
    return {
      fieldset,
      /** @returns {Record<string, unknown>[] | undefined} */
      value: () => (added.length ? added.map((entry) => entry.value()) : undefined),
      clear: () => {
        added.length = 0;
        items.replaceChildren();
        add.hidden = false;
      },
    };
  }

  function createForm() {
    const name = h("input", { name: "name", required: true, maxlength: 64, autocomplete: "off" });
    const engine = /** @type {HTMLSelectElement} */ (h("select", { name: "engine" }));
    const metadata = h("textarea", { name: "metadata", rows: 2 });
    const proxy = /** @type {HTMLInputElement} */ (
      h("input", { type: "url", name: "proxy", autocomplete: "off", spellcheck: "false", placeholder: "socks5://user:password@host:1080" })
    );
    const webhooks = webhookList();
    get("/api/engines")
      .then((/** @type {import("./api.js").EngineInfo[]} */ engines) => {
        for (const info of engines) {
          const label = info.available ? info.name : `${info.name} (unavailable: ${info.reason ?? ""})`;
          engine.append(
            h("option", { value: info.name, selected: info.default, disabled: !info.available }, label),
          );
        }
      })
      .catch(showError);
    const form = h(
      "form",
      {
        class: "card",
        id: "create-session",
        "aria-labelledby": "create-title",
        onsubmit: (/** @type {SubmitEvent} */ event) => {
          event.preventDefault();
          const button = /** @type {HTMLButtonElement} */ (form.querySelector("button[type=submit]"));
          guarded(button, async () => {
            const body = {
              name: /** @type {HTMLInputElement} */ (name).value.trim(),
              engine: engine.value || undefined,
              config: {
                metadata: parseMetadata(/** @type {HTMLTextAreaElement} */ (metadata).value),
                proxy: proxy.value.trim() || undefined,
                webhooks: webhooks.value(),
              },
            };
            /** @type {import("./api.js").SessionCreated} */
            const created = await post("/api/sessions", body);
            put(created);
            /** @type {HTMLFormElement} */ (form).reset();
            webhooks.clear();
            notify(`Session ${body.name} created`);
            showSecrets(created);
          });
        },
      },
      h("h2", { id: "create-title" }, "New session"),
      h(
        "div",
        { class: "row" },
        field("Name", name),
        field("Engine", engine),
        field("Metadata", metadata, "One name=value a line (optional)"),
        field("Proxy", proxy, "http://, https:// or socks5:// URL (optional); its credentials are never shown again"),
      ),
      webhooks.fieldset,
      h("button", { type: "submit" }, "Create session"),
    );
    return form;
  }

  /**
   * The signing secrets of the webhooks made with a session: in this answer only.
   * @param {import("./api.js").SessionCreated} created
   */
  function showSecrets(created) {
    const hooks = created.webhooks ?? [];
    if (!hooks.length) return;
    const many = hooks.length > 1;
    showOnce(
      secrets,
      `Signing secrets of the webhooks of ${created.name}, shown only now:`,
      hooks.map((hook, index) => ({
        secret: hook.secret ?? "",
        id: `webhook-secret-${index + 1}`,
        copy: many ? `Copy secret ${index + 1}` : "Copy secret",
        label: many ? `${index + 1}. ${hook.url}` : hook.url,
      })),
    );
  }

  // Live first, then the list: nothing that happens in between is missed (a change seen
  // twice only draws the same card again).
  const socket = openSocket({
    events: ["session.created", "session.deleted", "session.status", "session.qr"],
    onEvent: (event) => {
      if (event.event === "session.deleted") return remove(event.sessionId);
      if (event.event === "session.qr") {
        const entry = shown.get(event.sessionId);
        if (entry) {
          entry.qr = /** @type {string} */ (event.data.image);
          draw(entry);
        }
        return;
      }
      refresh(event.sessionId);
    },
  });
  allSessions()
    .then((sessions) => {
      for (const session of sessions) put(session);
      empty.hidden = shown.size > 0;
    })
    .catch(showError);
  return () => socket.close();
}
