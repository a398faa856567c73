// @ts-check
// Small DOM helpers. Text always goes in as text nodes (never as HTML): names, messages
// and event data are other people's input.

import { ApiError } from "./api.js";

/**
 * An element with attributes, `on…` listeners and children.
 * @param {string} tag
 * @param {Record<string, any> | null} [attrs]
 * @param {...(Node | string | number | null | undefined | false)} children
 * @returns {HTMLElement}
 */
export function h(tag, attrs, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2), value);
    } else if (name === "class") {
      element.className = String(value);
    } else if (name === "dataset") {
      Object.assign(element.dataset, value);
    } else if (value === true) {
      element.setAttribute(name, "");
    } else {
      element.setAttribute(name, String(value));
    }
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    element.append(typeof child === "object" ? child : String(child));
  }
  return element;
}

/**
 * Replaces an element's children, leaving out those not there (`null`, `false`):
 * `replaceChildren` itself would show them as text.
 * @param {HTMLElement} element
 * @param {...(Node | string | null | undefined | false)} children
 */
export function fill(element, ...children) {
  element.replaceChildren(...children.filter((child) => child !== null && child !== undefined && child !== false).map((c) => /** @type {Node | string} */ (c)));
}

/** The page's message area: errors and notices, announced by screen readers. */
const notices = () => /** @type {HTMLElement} */ (document.getElementById("notices"));

/** What went wrong, in one sentence: the API's message and code when it answered. @param {unknown} error */
export function describe(error) {
  return error instanceof ApiError ? error.describe() : error instanceof Error ? error.message : String(error);
}

/** @param {unknown} error */
export function showError(error) {
  notify(describe(error), "error");
}

/**
 * @param {string} text
 * @param {"error" | "info"} [kind]
 */
export function notify(text, kind = "info") {
  const item = h(
    "div",
    { class: `notice ${kind}`, role: kind === "error" ? "alert" : "status" },
    h("span", null, text),
    h("button", { type: "button", class: "link", "aria-label": "Dismiss", onclick: () => item.remove() }, "×"),
  );
  notices().append(item);
  if (kind === "info") setTimeout(() => item.remove(), 6000);
}

export function clearNotices() {
  notices().replaceChildren();
}

/**
 * Runs an action, showing its error; the button is disabled meanwhile.
 * @param {HTMLButtonElement | null} button
 * @param {() => Promise<unknown>} action
 */
export async function guarded(button, action) {
  if (button) button.disabled = true;
  try {
    await action();
  } catch (error) {
    showError(error);
  } finally {
    if (button) button.disabled = false;
  }
}

/**
 * Asks before something that cannot be undone; a modal `<dialog>` keeps the focus, Esc
 * cancels.
 * @param {string} question
 * @param {string} confirmLabel
 * @returns {Promise<boolean>}
 */
export function confirmAction(question, confirmLabel) {
  const dialog = /** @type {HTMLDialogElement} */ (document.getElementById("confirm"));
  const text = /** @type {HTMLElement} */ (dialog.querySelector("p"));
  const yes = /** @type {HTMLButtonElement} */ (dialog.querySelector("button[value=yes]"));
  text.textContent = question;
  yes.textContent = confirmLabel;
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "yes"), { once: true });
  });
}

/** @param {string} status */
export function statusBadge(status) {
  return h("span", { class: `badge status-${status}`, dataset: { status } }, status);
}

/** @param {string | null | undefined} iso */
export function when(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleString();
}

/**
 * Previous / next buttons for a paged list.
 * @param {import("./api.js").Pagination | undefined} pagination
 * @param {(page: number) => void} go
 * @param {string} label what is paged, for screen readers
 */
export function pager(pagination, go, label) {
  if (!pagination || pagination.totalPages <= 1) return h("span");
  const { page, totalPages } = pagination;
  return h(
    "nav",
    { class: "pager", "aria-label": `${label} pages` },
    h("button", { type: "button", disabled: page <= 1, onclick: () => go(page - 1) }, "Previous"),
    h("span", null, `Page ${page} of ${totalPages}`),
    h("button", { type: "button", disabled: page >= totalPages, onclick: () => go(page + 1) }, "Next"),
  );
}

/**
 * A labelled form field.
 * @param {string} label
 * @param {HTMLElement} control
 * @param {string} [hint]
 */
export function field(label, control, hint) {
  const id = control.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  control.id = id;
  const hintId = hint ? `${id}-hint` : null;
  if (hintId) control.setAttribute("aria-describedby", hintId);
  return h(
    "div",
    { class: "field" },
    h("label", { for: id }, label),
    control,
    hintId ? h("small", { id: hintId }, hint) : null,
  );
}

/**
 * A secret the server shows in one answer only (a new key, a webhook's signing secret):
 * shown in `box`, each with its Copy button, until "Done" takes them away. The page
 * keeps them in no variable or storage, so they are gone for good after that.
 * @param {HTMLElement} box
 * @param {string} intro what they are, and that they are shown only now
 * @param {Array<{secret: string, id: string, copy: string, label?: string}>} secrets
 *   `id` of the `<code>`, `copy` the button's name, `label` what the secret is for
 */
export function showOnce(box, intro, secrets) {
  const items = secrets.map(({ secret, id, copy, label }) => {
    const code = h("code", { id }, secret);
    const button = h(
      "button",
      {
        type: "button",
        onclick: async () => {
          try {
            await navigator.clipboard.writeText(code.textContent ?? "");
            notify("Copied.");
          } catch {
            getSelection()?.selectAllChildren(code);
            notify("Copying was refused by the browser: it is selected, copy it by hand.");
          }
        },
      },
      copy,
    );
    return h("li", null, label ? `${label}: ` : null, code, " ", button);
  });
  box.replaceChildren(
    h(
      "div",
      { class: "notice info once", role: "status" },
      h("div", null, h("p", null, intro), h("ul", { class: "secrets" }, ...items)),
      h("button", { type: "button", onclick: () => box.replaceChildren() }, "Done"),
    ),
  );
}

/** A byte count for people (sizes of media). @param {number | null | undefined} bytes */
export function size(bytes) {
  if (bytes === null || bytes === undefined) return "size unknown";
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${Math.round(bytes / 1024)} kB`;
  return `${(bytes / (1024 * 1024)).toFixed(1)} MB`;
}
