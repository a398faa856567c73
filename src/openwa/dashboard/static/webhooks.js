// @ts-check
// Webhooks of a session (or the instance's, for admins): create, change, test, rotate
// the secret, delete, and the delivery log with each attempt and the replay of a failed
// delivery. The fields of a webhook are shared with the session create form.

import { call, del, patch, post, seg } from "./api.js";
import { confirmAction, field, fill, guarded, h, notify, showError, showOnce, statusBadge, when } from "./ui.js";

/** @typedef {import("./api.js").Webhook} Webhook */
/** @typedef {import("./api.js").Delivery} Delivery */
/** @typedef {import("./api.js").RotatedSecret} RotatedSecret */

const INSTANCE = "";

/** How long a rotated-out secret stays valid (the API's `graceSeconds`, 0 to 7 days). */
const GRACE = [
  [0, "No longer: only the new one is valid"],
  [3600, "1 hour"],
  [86400, "1 day"],
  [7 * 86400, "7 days"],
];

/** @param {string} text comma-separated event names; empty: every event */
function eventNames(text) {
  const names = text.split(",").map((name) => name.trim()).filter(Boolean);
  return names.length ? names : ["*"];
}

/**
 * `Name: value` lines as a headers object (receivers' credentials, such as
 * `Authorization: Bearer ...`).
 * @param {string} text
 * @returns {Record<string, string>}
 */
function parseHeaders(text) {
  /** @type {Record<string, string>} */
  const headers = {};
  for (const line of text.split("\n")) {
    if (!line.trim()) continue;
    const at = line.indexOf(":");
    if (at <= 0) throw new Error(`Header line "${line}" is not Name: value`);
    headers[line.slice(0, at).trim()] = line.slice(at + 1).trim();
  }
  return headers;
}

/** @param {Record<string, string>} headers */
const headerLines = (headers) =>
  Object.entries(headers)
    .map(([name, value]) => `${name}: ${value}`)
    .join("\n");

/**
 * The fields a webhook is made or changed with, here and in the session create form;
 * `value()` reads them as the API's body (headers and events parsed).
 * @param {Webhook | null} hook
 */
export function webhookFields(hook) {
  const url = /** @type {HTMLInputElement} */ (
    h("input", { type: "url", name: "url", required: true, value: hook?.url ?? "", placeholder: "https://example.com/openwa", autocomplete: "off" })
  );
  const events = /** @type {HTMLInputElement} */ (
    h("input", { name: "events", value: hook?.events.join(", ") ?? "*", autocomplete: "off" })
  );
  const headers = /** @type {HTMLTextAreaElement} */ (
    h("textarea", { name: "headers", rows: 2, autocomplete: "off", spellcheck: "false", placeholder: "Authorization: Bearer ..." })
  );
  headers.value = headerLines(hook?.headers ?? {});
  const active = /** @type {HTMLInputElement} */ (
    h("input", { type: "checkbox", name: "active", checked: hook?.active ?? true })
  );
  active.id = `a-${Math.random().toString(36).slice(2, 9)}`;
  const controls = h(
    "div",
    { class: "row" },
    field("URL", url),
    field("Events", events, "Comma-separated event names; * for all"),
    field("Headers", headers, "One Name: value a line, sent with each delivery (optional)"),
    h("div", { class: "field inline" }, active, h("label", { for: active.id }, "Active")),
  );
  const value = () => ({
    url: url.value.trim(),
    events: eventNames(events.value),
    headers: parseHeaders(headers.value),
    active: active.checked,
  });
  return { controls, value };
}

/** @type {import("./app.js").Page} */
export function webhooksPage(main, access) {
  const owner = /** @type {HTMLSelectElement} */ (h("select", { id: "webhook-owner" }));
  const list = h("ul", { class: "cards", id: "webhook-list", "aria-label": "Webhooks" });
  const secretBox = h("div", { id: "secret" });
  /** @type {Set<number>} refresh timers of open delivery logs */
  const timers = new Set();

  const base = () =>
    owner.value === INSTANCE ? "/api/webhooks" : `/api/sessions/${seg(owner.value)}/webhooks`;

  fill(
    main,
    h("h1", null, "Webhooks"),
    h("div", { class: "card" }, field("Webhooks of", owner, "A session's own, or the whole instance's")),
    access.canWrite ? createForm() : null,
    secretBox,
    list,
  );

  function stopTimers() {
    for (const timer of timers) clearInterval(timer);
    timers.clear();
  }

  async function loadOwners() {
    const { data } = await call("GET", "/api/sessions", { query: { limit: 100 } });
    for (const session of data) owner.append(h("option", { value: session.id }, session.name));
    if (access.isAdmin && access.unscoped) {
      owner.append(h("option", { value: INSTANCE }, "Instance-wide (every session)"));
    }
    owner.addEventListener("change", () => {
      // A secret shown once stays until "Done" or until another owner's list is shown.
      secretBox.replaceChildren();
      load().catch(showError);
    });
    if (owner.options.length) await load();
    else list.replaceChildren(h("li", { class: "empty" }, "No sessions yet: create one first."));
  }

  /** Counts reads of the list: one that answers after a later one is dropped. */
  let reads = 0;

  async function load() {
    stopTimers();
    const read = ++reads;
    const { data } = await call("GET", base(), { query: { limit: 100 } });
    if (read !== reads) return;
    list.replaceChildren(
      ...(data.length ? [] : [h("li", { class: "empty" }, "No webhooks here yet.")]),
      ...data.map((/** @type {Webhook} */ hook) => h("li", null, card(hook))),
    );
  }

  /** @param {Webhook} hook */
  function card(hook) {
    const path = `${base()}/${seg(hook.id)}`;
    const log = h("div", { class: "deliveries" });
    const panel = h("div");
    const titleId = `w-${hook.id}`;
    /** @type {number} */
    let timer = 0;
    const showDeliveries = async () => {
      const { data } = await call("GET", `${path}/deliveries`, { query: { limit: 20 } });
      log.replaceChildren(deliveryTable(path, data, showDeliveries));
    };
    const toggle = h(
      "button",
      {
        type: "button",
        "aria-expanded": "false",
        onclick: () => {
          const open = toggle.getAttribute("aria-expanded") !== "true";
          toggle.setAttribute("aria-expanded", String(open));
          clearInterval(timer);
          timers.delete(timer);
          if (open) {
            showDeliveries().catch(showError);
            // Deliveries are not events: the log is read again while it is open.
            timer = window.setInterval(() => showDeliveries().catch(showError), 2000);
            timers.add(timer);
          } else {
            log.replaceChildren();
          }
        },
      },
      "Deliveries",
    );
    /** @type {HTMLElement[]} the buttons that open a form in `panel` (one at a time) */
    const openers = [];
    const close = () => {
      for (const button of openers) button.setAttribute("aria-expanded", "false");
      panel.replaceChildren();
    };
    /**
     * A button that shows `form(close)` in the card's panel, or hides it again.
     * @param {string} label @param {(close: () => void) => HTMLElement} form
     */
    const opener = (label, form) => {
      const button = h(
        "button",
        {
          type: "button",
          "aria-expanded": "false",
          onclick: () => {
            const open = button.getAttribute("aria-expanded") !== "true";
            close();
            if (open) {
              button.setAttribute("aria-expanded", "true");
              panel.replaceChildren(form(close));
            }
          },
        },
        label,
      );
      openers.push(button);
      return button;
    };
    const headerNames = Object.keys(hook.headers ?? {});
    return h(
      "article",
      { class: "card webhook", "aria-labelledby": titleId, dataset: { webhookId: hook.id, active: String(hook.active) } },
      h("h2", { id: titleId, class: "url" }, hook.url),
      h(
        "p",
        null,
        `Events: ${hook.events.join(", ") || "*"} · ${hook.active ? "active" : "inactive"} · ${hook.source}`,
        headerNames.length ? ` · headers: ${headerNames.join(", ")}` : "",
      ),
      // Switched off by OpenWA after days of failures: say so, and how to resume.
      hook.disabledReason ? h("p", { class: "problem" }, hook.disabledReason) : null,
      h(
        "div",
        { class: "actions" },
        toggle,
        access.canWrite ? opener("Change", () => editForm(hook, path)) : null,
        access.canWrite ? opener("Rotate secret", (done) => rotateForm(hook, path, done)) : null,
        access.canWrite
          ? h(
              "button",
              {
                type: "button",
                onclick: (/** @type {Event} */ event) =>
                  guarded(/** @type {HTMLButtonElement} */ (event.currentTarget), async () => {
                    const sent = await post(`${path}/test`);
                    notify(`Test event sent (delivery ${sent.deliveryId})`);
                    if (toggle.getAttribute("aria-expanded") !== "true") toggle.click();
                    else await showDeliveries();
                  }),
              },
              "Send test",
            )
          : null,
        access.canWrite
          ? h(
              "button",
              {
                type: "button",
                class: "danger",
                onclick: (/** @type {Event} */ event) =>
                  guarded(/** @type {HTMLButtonElement} */ (event.currentTarget), async () => {
                    if (!(await confirmAction(`Delete the webhook to ${hook.url}?`, "Delete"))) return;
                    await del(path);
                    await load();
                  }),
              },
              "Delete",
            )
          : null,
      ),
      panel,
      log,
    );
  }

  /**
   * Only what changed is sent: a PATCH replaces each field given.
   * @param {Webhook} hook @param {string} path
   */
  function editForm(hook, path) {
    const fields = webhookFields(hook);
    const form = h(
      "form",
      {
        class: "edit-webhook",
        "aria-label": `Change the webhook to ${hook.url}`,
        onsubmit: (/** @type {SubmitEvent} */ event) => {
          event.preventDefault();
          const button = /** @type {HTMLButtonElement} */ (form.querySelector("button[type=submit]"));
          guarded(button, async () => {
            const wanted = fields.value();
            /** @type {Record<string, unknown>} */
            const change = {};
            if (wanted.url !== hook.url) change.url = wanted.url;
            if (JSON.stringify(wanted.events) !== JSON.stringify(hook.events)) change.events = wanted.events;
            if (JSON.stringify(wanted.headers) !== JSON.stringify(hook.headers ?? {})) change.headers = wanted.headers;
            if (wanted.active !== hook.active) change.active = wanted.active;
            if (!Object.keys(change).length) return notify("Nothing changed.");
            await patch(path, change);
            notify("Webhook changed.");
            await load();
          });
        },
      },
      fields.controls,
      h("button", { type: "submit" }, "Save"),
    );
    return form;
  }

  /**
   * A new signing secret, shown once; the old one stays valid for the grace chosen
   * (deliveries are signed with both meanwhile), so the receiver can be switched first.
   * @param {Webhook} hook @param {string} path @param {() => void} done closes the form
   */
  function rotateForm(hook, path, done) {
    const grace = /** @type {HTMLSelectElement} */ (
      h("select", { name: "graceSeconds" }, ...GRACE.map(([seconds, label]) => h("option", { value: seconds, selected: seconds === 86400 }, label)))
    );
    const form = h(
      "form",
      {
        class: "rotate-secret",
        "aria-label": `Rotate the secret of the webhook to ${hook.url}`,
        onsubmit: (/** @type {SubmitEvent} */ event) => {
          event.preventDefault();
          const button = /** @type {HTMLButtonElement} */ (form.querySelector("button[type=submit]"));
          guarded(button, async () => {
            /** @type {RotatedSecret} */
            const rotated = await post(`${path}/rotate-secret`, { graceSeconds: Number(grace.value) });
            done();
            showOnce(
              secretBox,
              `New signing secret of the webhook to ${hook.url}, shown only now; the old one is valid until ${when(rotated.previousSecretValidUntil)}.`,
              [{ secret: rotated.secret, id: "webhook-secret", copy: "Copy secret" }],
            );
            secretBox.scrollIntoView({ block: "nearest" });
          });
        },
      },
      h("div", { class: "row" }, field("The old secret stays valid for", grace), h("button", { type: "submit" }, "Rotate")),
    );
    return form;
  }

  /**
   * @param {string} path the webhook's
   * @param {Delivery[]} deliveries
   * @param {() => Promise<void>} reload
   */
  function deliveryTable(path, deliveries, reload) {
    if (!deliveries.length) return h("p", { class: "empty" }, "No deliveries yet.");
    return h(
      "div",
      { class: "scroll" },
      h(
        "table",
        { class: "delivery-log" },
        h("caption", null, "Deliveries, newest first"),
        h(
          "thead",
          null,
          h("tr", null, ...["Event", "Status", "Attempts", "Last answer", "Created", ""].map((t) => h("th", { scope: "col" }, t))),
        ),
        h(
          "tbody",
          null,
          ...deliveries.map((delivery) =>
            h(
              "tr",
              { dataset: { deliveryId: String(delivery.id), status: delivery.status } },
              h("td", null, delivery.event),
              h("td", null, statusBadge(delivery.status)),
              h(
                "td",
                null,
                h(
                  "details",
                  null,
                  h("summary", null, String(delivery.attempts)),
                  h(
                    "ol",
                    null,
                    ...delivery.log.map((attempt) =>
                      h(
                        "li",
                        null,
                        `${when(attempt.at)}: ${attempt.statusCode ?? "no answer"}`,
                        ` in ${attempt.durationMs} ms`,
                        attempt.error ? ` – ${attempt.error}` : "",
                      ),
                    ),
                  ),
                ),
              ),
              h("td", null, `${delivery.lastStatusCode ?? ""} ${delivery.lastError ?? ""}`.trim()),
              h("td", null, when(delivery.createdAt)),
              h(
                "td",
                null,
                access.canWrite && delivery.status === "failed"
                  ? h(
                      "button",
                      {
                        type: "button",
                        onclick: (/** @type {Event} */ event) =>
                          guarded(/** @type {HTMLButtonElement} */ (event.currentTarget), async () => {
                            await post(`${path}/deliveries/${delivery.id}/retry`);
                            notify(`Delivery ${delivery.id} queued again`);
                            await reload();
                          }),
                      },
                      "Replay",
                    )
                  : null,
              ),
            ),
          ),
        ),
      ),
    );
  }

  function createForm() {
    const fields = webhookFields(null);
    const form = h(
      "form",
      {
        class: "card",
        id: "create-webhook",
        "aria-labelledby": "webhook-create-title",
        onsubmit: (/** @type {SubmitEvent} */ event) => {
          event.preventDefault();
          const button = /** @type {HTMLButtonElement} */ (form.querySelector("button[type=submit]"));
          guarded(button, async () => {
            /** @type {Webhook} */
            const created = await post(base(), fields.value());
            /** @type {HTMLFormElement} */ (form).reset();
            await load();
            // Shown once: the server keeps it and never shows it again.
            showOnce(secretBox, `Signing secret of the webhook to ${created.url}, shown only now:`, [
              { secret: created.secret ?? "", id: "webhook-secret", copy: "Copy secret" },
            ]);
          });
        },
      },
      h("h2", { id: "webhook-create-title" }, "New webhook"),
      fields.controls,
      h("button", { type: "submit" }, "Add webhook"),
    );
    return form;
  }

  loadOwners().catch(showError);
  return stopTimers;
}
