// @ts-check
// Health at a glance: `/health/ready` (open, no key) in the header, and a small page with
// each adapter up or down and the version from `/health`.

import { h } from "./ui.js";

/**
 * @typedef {{status: string, error?: string}} Check
 * @typedef {{status: "ready" | "not_ready", draining: boolean,
 *   [adapter: string]: Check | string | boolean}} Readiness
 */

const ADAPTERS = ["database", "cache", "queue", "storage", "engines"];

/** `/health/ready`'s body: 200 ready, 503 not (the same body); null when unreachable. */
export async function readiness() {
  try {
    const response = await fetch("/health/ready", { cache: "no-store" });
    const body = await response.json();
    return /** @type {Readiness} */ (body.data);
  } catch {
    return null;
  }
}

/** @param {Readiness | null} state */
function label(state) {
  if (!state) return "unreachable";
  if (state.draining) return "draining";
  return state.status === "ready" ? "ready" : "not ready";
}

/** @param {Readiness | null} state */
function down(state) {
  if (!state) return [];
  return ADAPTERS.filter((name) => /** @type {Check} */ (state[name])?.status !== "up");
}

/**
 * Keeps the header's indicator current (every 30 s); returns what stops it.
 * @param {HTMLElement} target
 */
export function watchHealth(target) {
  const show = async () => {
    const state = await readiness();
    const text = label(state);
    const off = down(state);
    target.replaceChildren(
      h(
        "a",
        { href: "#/health", class: `badge health-${text.replace(" ", "-")}`, id: "health-state", dataset: { health: text } },
        text === "ready" ? "● ready" : `● ${text}${off.length ? `: ${off.join(", ")} down` : ""}`,
      ),
    );
    target.hidden = false;
  };
  show();
  const timer = window.setInterval(show, 30_000);
  return () => {
    clearInterval(timer);
    target.hidden = true;
  };
}

/** @type {import("./app.js").Page} */
export function healthPage(main) {
  const body = h("tbody", { id: "health-rows" });
  const summary = h("p", { id: "health-summary", role: "status" }, "Checking…");
  main.append(
    h("h1", null, "Health"),
    summary,
    h(
      "div",
      { class: "scroll card" },
      h(
        "table",
        null,
        h("caption", null, "Adapters (GET /health/ready), read again every 10 s"),
        h("thead", null, h("tr", null, h("th", { scope: "col" }, "Adapter"), h("th", { scope: "col" }, "State"), h("th", { scope: "col" }, "Error"))),
        body,
      ),
    ),
  );
  const show = async () => {
    const [state, live] = await Promise.all([
      readiness(),
      fetch("/health", { cache: "no-store" })
        .then((r) => r.json())
        .catch(() => null),
    ]);
    const version = live?.data?.version ? ` Version ${live.data.version}.` : "";
    summary.textContent = `The server is ${label(state)}.${version}`;
    summary.dataset.health = label(state);
    body.replaceChildren(
      ...ADAPTERS.map((name) => {
        const check = state ? /** @type {Check | undefined} */ (state[name]) : undefined;
        const status = check?.status ?? "unknown";
        return h(
          "tr",
          { dataset: { adapter: name, status } },
          h("th", { scope: "row" }, name),
          h("td", null, h("span", { class: `badge health-${status}` }, status)),
          h("td", null, check?.error ?? ""),
        );
      }),
    );
  };
  show();
  const timer = window.setInterval(show, 10_000);
  return () => clearInterval(timer);
}
