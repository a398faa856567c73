// @ts-check
// The dashboard's entry: sign-in, the key's permissions, and a hash router over pages.

import { ApiError, call, credentials } from "./api.js";
import { clearNotices, field, h, showError } from "./ui.js";
import { sessionsPage } from "./sessions.js";
import { sessionPage } from "./session.js";
import { webhooksPage } from "./webhooks.js";
import { eventsPage } from "./events.js";
import { keysPage } from "./keys.js";
import { auditPage } from "./audit.js";
import { clusterPage } from "./cluster.js";
import { healthPage, watchHealth } from "./health.js";

/**
 * What the signed-in key may do, from `GET /api/keys/self`. Only what is offered
 * depends on it: the server still decides every call.
 * @typedef {{key: import("./api.js").OwnKey, canWrite: boolean, unscoped: boolean,
 *   isAdmin: boolean}} Access
 * @typedef {(main: HTMLElement, access: Access, params: string[]) => () => void} Page  returns what to do on leaving (close live connections)
 */

/** @type {Access | null} */
let access = null;
/** @type {(() => void) | undefined} */
let leave;
/** @type {(() => void) | undefined} stops the header's health indicator */
let unwatchHealth;

const main = () => /** @type {HTMLElement} */ (document.getElementById("main"));

/** @type {Array<[RegExp, Page]>} */
const routes = [
  [/^\/sessions\/([^/]+)$/, sessionPage],
  [/^\/sessions$/, sessionsPage],
  [/^\/webhooks$/, webhooksPage],
  [/^\/events$/, eventsPage],
  [/^\/keys$/, keysPage],
  [/^\/audit$/, auditPage],
  [/^\/cluster$/, clusterPage],
  [/^\/health$/, healthPage],
];

/** @param {import("./api.js").OwnKey} key @returns {Access} */
function accessOf(key) {
  return {
    key,
    canWrite: key.role !== "viewer",
    unscoped: key.sessions === null,
    isAdmin: key.role === "admin",
  };
}

/** Why a key was refused, in words (the API's own message and code follow). */
function refusal(/** @type {unknown} */ error) {
  if (error instanceof ApiError && error.status === 401) {
    return `That API key was not accepted: it is wrong, expired or deleted. (${error.message})`;
  }
  if (error instanceof ApiError && error.status === 403) {
    return `That API key may not be used from this network. (${error.message})`;
  }
  return error instanceof ApiError ? error.describe() : String(error);
}

function signInPage(/** @type {string} */ problem = "") {
  const input = /** @type {HTMLInputElement} */ (
    h("input", { type: "password", name: "key", required: true, autocomplete: "off", spellcheck: "false" })
  );
  const message = h("p", { class: "problem", role: "alert", id: "signin-problem" }, problem);
  const form = h(
    "form",
    {
      class: "signin card",
      "aria-labelledby": "signin-title",
      onsubmit: async (/** @type {SubmitEvent} */ event) => {
        event.preventDefault();
        message.textContent = "";
        const key = input.value.trim();
        try {
          const own = (await call("GET", "/api/keys/self", { key })).data;
          credentials.set(key);
          access = accessOf(own);
          showChrome();
          if (!location.hash || location.hash === "#/signin") location.hash = "#/sessions";
          else route();
        } catch (error) {
          message.textContent = refusal(error);
          input.focus();
        }
      },
    },
    h("h1", { id: "signin-title" }, "Sign in"),
    h(
      "p",
      null,
      "Use an API key of this server. It is kept in this browser tab only and sent with each request.",
    ),
    field("API key", input),
    message,
    h("button", { type: "submit" }, "Sign in"),
  );
  main().replaceChildren(form);
  input.focus();
}

function showChrome() {
  const nav = /** @type {HTMLElement} */ (document.getElementById("nav"));
  const who = /** @type {HTMLElement} */ (document.getElementById("whoami"));
  unwatchHealth?.();
  unwatchHealth = undefined;
  if (!access) {
    nav.hidden = true;
    who.hidden = true;
    return;
  }
  unwatchHealth = watchHealth(/** @type {HTMLElement} */ (document.getElementById("health")));
  const { key } = access;
  const scope = key.sessions === null ? "all sessions" : `${key.sessions.length} session(s)`;
  who.replaceChildren(
    h("span", { id: "role", dataset: { role: key.role } }, `${key.name} · ${key.role} · ${scope}`),
    " ",
    h("button", { type: "button", class: "link", onclick: signOut }, "Sign out"),
  );
  // Keys, audit and the cluster are for admins on every session: not offered to other keys.
  for (const item of nav.querySelectorAll("[data-admin]")) {
    /** @type {HTMLElement} */ (item).hidden = !(access.isAdmin && access.unscoped);
  }
  nav.hidden = false;
  who.hidden = false;
}

function signOut() {
  leave?.();
  leave = undefined;
  credentials.clear();
  access = null;
  showChrome();
  clearNotices();
  location.hash = "";
  signInPage();
}

function route() {
  leave?.();
  leave = undefined;
  if (!access) return;
  const path = location.hash.replace(/^#/, "") || "/sessions";
  for (const link of document.querySelectorAll("#nav a")) {
    const here = path.startsWith(/** @type {HTMLAnchorElement} */ (link).hash.slice(1));
    if (here) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  for (const [pattern, page] of routes) {
    const match = pattern.exec(path);
    if (match) {
      const target = main();
      target.replaceChildren();
      leave = page(target, access, match.slice(1).map(decodeURIComponent));
      // Keyboard and screen-reader users land on the new page's content.
      target.focus({ preventScroll: true });
      return;
    }
  }
  location.hash = "#/sessions";
}

/** A key that stops working mid-session (deleted, expired) sends the user back here. */
addEventListener("unhandledrejection", (event) => {
  if (event.reason instanceof ApiError && event.reason.status === 401) {
    signOut();
    signInPage(refusal(event.reason));
  } else {
    showError(event.reason);
  }
});

addEventListener("hashchange", route);

async function start() {
  const key = credentials.get();
  if (!key) return signInPage();
  try {
    access = accessOf((await call("GET", "/api/keys/self")).data);
  } catch (error) {
    credentials.clear();
    return signInPage(refusal(error));
  }
  showChrome();
  route();
}

start();
