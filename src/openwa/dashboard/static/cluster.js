// @ts-check
// The cluster (admins on every session): each instance sharing the database, whether it
// lives, and the sessions whose lease it holds; on a single instance, just that one.

import { get, seg } from "./api.js";
import { openSocket } from "./live.js";
import { allSessions } from "./sessions.js";
import { h, showError, when } from "./ui.js";

/** @typedef {import("./api.js").ClusterInfo} ClusterInfo */
/** @typedef {import("./api.js").InstanceInfo} InstanceInfo */

/**
 * Heartbeats and lease renewals are not events: the view is read again this often, and
 * at once (shortly after, to take a burst as one read) when a session changes status,
 * is created or is deleted, which is when ownership moves.
 */
const EVERY_MS = 10_000;
const SETTLE_MS = 300;

/** @param {string} iso @param {number} now */
function ago(iso, now) {
  const seconds = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  return seconds < 120 ? `${seconds} s ago` : `${Math.round(seconds / 60)} min ago`;
}

/** @type {import("./app.js").Page} */
export function clusterPage(main, access) {
  main.append(h("h1", null, "Cluster"));
  if (!access.isAdmin || !access.unscoped) {
    main.append(h("p", { class: "empty" }, "The cluster is shown to admin keys on every session."));
    return () => {};
  }
  const summary = h("p", { id: "cluster-summary", role: "status" }, "Reading…");
  const list = h("ul", { class: "cards", id: "instance-list", "aria-label": "Instances" });
  const unowned = h("div", { id: "unowned" });
  /** @type {Map<string, string>} session id -> name */
  const names = new Map();
  main.append(summary, list, unowned);

  /** @param {string} id */
  const sessionLink = (id) => h("a", { href: `#/sessions/${seg(id)}` }, names.get(id) ?? id);

  async function learnNames() {
    for (const session of await allSessions()) names.set(session.id, session.name);
  }

  /** @param {InstanceInfo} instance @param {number} now */
  function card(instance, now) {
    const titleId = `i-${instance.id}`;
    const state = !instance.live ? "gone" : instance.draining ? "draining" : "live";
    return h(
      "article",
      {
        class: "card instance",
        "aria-labelledby": titleId,
        dataset: { instanceId: instance.id, state, this: String(instance.this) },
      },
      h(
        "header",
        null,
        h("h2", { id: titleId }, instance.id),
        h("span", { class: `badge instance-${state}` }, state),
        instance.this ? h("span", { class: "badge" }, "this one") : null,
      ),
      h(
        "dl",
        { class: "facts" },
        h("dt", null, "Address"),
        h("dd", null, instance.url),
        h("dt", null, "Started"),
        h("dd", null, when(instance.startedAt)),
        h("dt", null, "Heartbeat"),
        h("dd", null, h("time", { datetime: instance.lastSeen, title: when(instance.lastSeen) }, ago(instance.lastSeen, now))),
        h("dt", null, "Running"),
        h("dd", null, `${instance.running} of at most ${instance.maxSessions}`),
      ),
      instance.sessions.length
        ? h(
            "ul",
            { class: "owned", "aria-label": `Sessions of ${instance.id}` },
            ...instance.sessions.map((owned) =>
              h(
                "li",
                { dataset: { sessionId: owned.id } },
                sessionLink(owned.id),
                h(
                  "span",
                  null,
                  ` epoch ${owned.epoch} · lease until `,
                  h("time", { datetime: owned.expiresAt }, when(owned.expiresAt)),
                ),
              ),
            ),
          )
        : h("p", { class: "empty" }, "No sessions."),
    );
  }

  /** @param {ClusterInfo} cluster */
  function show(cluster) {
    const now = Date.now();
    const live = cluster.instances.filter((instance) => instance.live).length;
    const count = cluster.instances.length;
    summary.textContent = cluster.clustered
      ? `${count} instance${count === 1 ? "" : "s"}, ${live} live; leases of ${cluster.leaseSeconds} s. Read at ${new Date(now).toLocaleTimeString()}.`
      : `A single instance (CLUSTER_SECRET is not set). Read at ${new Date(now).toLocaleTimeString()}.`;
    summary.dataset.clustered = String(cluster.clustered);
    list.replaceChildren(...cluster.instances.map((instance) => h("li", null, card(instance, now))));
    unowned.replaceChildren(
      ...(cluster.unowned.length
        ? [
            h("h2", null, "Waiting for an instance"),
            h(
              "p",
              null,
              "Sessions that should run but whose lease is free: an instance takes them over within a lease.",
            ),
            h("ul", { class: "owned" }, ...cluster.unowned.map((id) => h("li", { dataset: { sessionId: id } }, sessionLink(id)))),
          ]
        : []),
    );
  }

  /** One read at a time; a change seen during one is read again after it. */
  let reading = false;
  let again = false;
  async function read() {
    if (reading) {
      again = true;
      return;
    }
    reading = true;
    try {
      do {
        again = false;
        const cluster = /** @type {ClusterInfo} */ (await get("/api/cluster"));
        const ids = [...cluster.instances.flatMap((i) => i.sessions.map((s) => s.id)), ...cluster.unowned];
        if (ids.some((id) => !names.has(id))) await learnNames();
        show(cluster);
      } while (again);
    } finally {
      reading = false;
    }
  }

  let settle = 0;
  const socket = openSocket({
    events: ["session.status", "session.created", "session.deleted"],
    onEvent: () => {
      clearTimeout(settle);
      settle = window.setTimeout(() => read().catch(showError), SETTLE_MS);
    },
  });
  const timer = window.setInterval(() => read().catch(showError), EVERY_MS);
  read().catch(showError);
  return () => {
    socket.close();
    clearTimeout(settle);
    clearInterval(timer);
  };
}
