// @ts-check
// Webhooks of a session (or the instance's, for admins): create, test, delete, and the
// delivery log with each attempt and the replay of a failed delivery.

import { call, del, get, post, seg } from "./api.js";
import { confirmAction, field, fill, guarded, h, notify, showError, statusBadge, when } from "./ui.js";

/** @typedef {import("./api.js").Webhook} Webhook */
/** @typedef {import("./api.js").Delivery} Delivery */

const INSTANCE = "";

/** @type {import("./app.js").Page} */
export function webhooksPage(main, access) {
  const owner = /** @type {HTMLSelectElement} */ (h("select", { id: "webhook-owner" }));
  const list = h("ul", { class: "cards", id: "webhook-list", "aria-label": "Webhooks" });
  const secretBox = h("div", { id: "secret", "aria-live": "polite" });
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
    owner.addEventListener("change", () => load().catch(showError));
    if (owner.options.length) await load();
    else list.replaceChildren(h("li", { class: "empty" }, "No sessions yet: create one first."));
  }

  async function load() {
    stopTimers();
    secretBox.replaceChildren();
    const { data } = await call("GET", base(), { query: { limit: 100 } });
    list.replaceChildren(
      ...(data.length ? [] : [h("li", { class: "empty" }, "No webhooks here yet.")]),
      ...data.map((/** @type {Webhook} */ hook) => h("li", null, card(hook))),
    );
  }

  /** @param {Webhook} hook */
  function card(hook) {
    const path = `${base()}/${seg(hook.id)}`;
    const log = h("div", { class: "deliveries" });
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
    return h(
      "article",
      { class: "card webhook", "aria-labelledby": titleId, dataset: { webhookId: hook.id } },
      h("h2", { id: titleId, class: "url" }, hook.url),
      h(
        "p",
        null,
        `Events: ${hook.events.join(", ") || "*"} · ${hook.active ? "active" : "inactive"} · ${hook.source}`,
      ),
      h(
        "div",
        { class: "actions" },
        toggle,
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
      log,
    );
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
    const url = h("input", { type: "url", name: "url", required: true, placeholder: "https://example.com/openwa" });
    const events = h("input", { name: "events", value: "*", autocomplete: "off" });
    const form = h(
      "form",
      {
        class: "card",
        id: "create-webhook",
        "aria-labelledby": "webhook-create-title",
        onsubmit: (/** @type {SubmitEvent} */ event) => {
          event.preventDefault();
          const button = /** @type {HTMLButtonElement} */ (form.querySelector("button"));
          guarded(button, async () => {
            const names = /** @type {HTMLInputElement} */ (events).value
              .split(",")
              .map((name) => name.trim())
              .filter(Boolean);
            /** @type {Webhook} */
            const created = await post(base(), {
              url: /** @type {HTMLInputElement} */ (url).value.trim(),
              events: names.length ? names : ["*"],
            });
            /** @type {HTMLFormElement} */ (form).reset();
            await load();
            // Shown once: the server keeps it and never shows it again.
            secretBox.replaceChildren(
              h(
                "p",
                { class: "notice info" },
                "Signing secret (shown only now): ",
                h("code", { id: "webhook-secret" }, created.secret ?? ""),
              ),
            );
          });
        },
      },
      h("h2", { id: "webhook-create-title" }, "New webhook"),
      h(
        "div",
        { class: "row" },
        field("URL", url),
        field("Events", events, "Comma-separated event names; * for all"),
      ),
      h("button", { type: "submit" }, "Add webhook"),
    );
    return form;
  }

  loadOwners().catch(showError);
  return stopTimers;
}
