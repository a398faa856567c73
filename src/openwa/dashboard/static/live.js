// @ts-check
// Live events: the WebSocket for the pages' own updates, SSE (read through fetch) for
// the event log. Both come back by themselves after a dropped connection.

import { ApiError, authHeaders, credentials, errorOf } from "./api.js";

/** @typedef {import("./api.js").OpenWAEvent} OpenWAEvent */

/**
 * Follows `/ws`. A browser cannot put headers on a WebSocket, so the key goes in the URL:
 * the one place it does (the server takes `apiKey` only there).
 * @param {{sessions?: string[], events?: string[], onEvent: (e: OpenWAEvent) => void,
 *   onState?: (state: "open" | "closed", reason?: string) => void}} options
 * @returns {{close: () => void}}
 */
export function openSocket(options) {
  let socket = /** @type {WebSocket | null} */ (null);
  let closed = false;
  let delay = 500;
  let timer = 0;

  const connect = () => {
    const target = new URL("/ws", location.href);
    target.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    const key = credentials.get() ?? "";
    // The key as a subprotocol, so that it is in no URL (a balancer's access log keeps
    // URLs); one with characters a subprotocol cannot hold goes as `apiKey`, as before.
    const asProtocol = /^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/.test(key);
    if (!asProtocol) target.searchParams.set("apiKey", key);
    if (options.sessions?.length) target.searchParams.set("sessions", options.sessions.join(","));
    if (options.events?.length) target.searchParams.set("events", options.events.join(","));
    socket = asProtocol ? new WebSocket(target, ["openwa", `openwa.key.${key}`]) : new WebSocket(target);
    socket.addEventListener("open", () => {
      delay = 500;
      options.onState?.("open");
    });
    socket.addEventListener("message", (message) => {
      try {
        options.onEvent(JSON.parse(String(message.data)));
      } catch (error) {
        console.warn("unreadable event", error);
      }
    });
    socket.addEventListener("close", (event) => {
      if (closed) return;
      options.onState?.("closed", event.reason || `code ${event.code}`);
      // 1008: the key is no longer good for this (deleted, changed, expired): stay closed.
      if (event.code === 1008 && event.reason !== "too far behind; catch up from /api/events") {
        return;
      }
      timer = window.setTimeout(connect, delay);
      delay = Math.min(delay * 2, 15_000);
    });
  };
  connect();
  return {
    close() {
      closed = true;
      window.clearTimeout(timer);
      socket?.close(1000);
    },
  };
}

/**
 * Follows `/api/events/stream` through `fetch` (EventSource cannot send the key as a
 * header). Resumes after the last cursor seen when the connection drops.
 * @param {{after: number, sessions?: string, events?: string,
 *   onEvent: (e: OpenWAEvent) => void, onError: (e: ApiError) => void,
 *   onState?: (state: "open" | "closed") => void}} options
 * @returns {{close: () => void}}
 */
export function followStream(options) {
  const abort = new AbortController();
  let cursor = options.after;
  let delay = 1000;

  const run = async () => {
    while (!abort.signal.aborted) {
      try {
        await readOnce();
        delay = 1000;
      } catch (error) {
        if (abort.signal.aborted) return;
        options.onState?.("closed");
        if (error instanceof ApiError) {
          options.onError(error);
          // A 429 says when to come back; 401 and 403 will not get better by retrying.
          if (error.status === 401 || error.status === 403) return;
          if (error.retryAfter) delay = error.retryAfter * 1000;
        }
      }
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, 30_000);
    }
  };

  const readOnce = async () => {
    const query = new URLSearchParams({ after: String(cursor) });
    if (options.sessions) query.set("sessions", options.sessions);
    if (options.events) query.set("events", options.events);
    const response = await fetch(`/api/events/stream?${query}`, {
      headers: { ...authHeaders(), Accept: "text/event-stream" },
      signal: abort.signal,
    });
    if (!response.ok || !response.body) throw await errorOf(response);
    options.onState?.("open");
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) throw new Error("stream ended");
      buffer += value.replaceAll("\r\n", "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const frame = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const event = parseFrame(frame);
        if (event) {
          cursor = event.cursor ?? cursor;
          options.onEvent(event);
        }
      }
    }
  };

  run();
  return { close: () => abort.abort() };
}

/**
 * One SSE frame: `id:`, `event:` and `data:` lines; comments (heartbeats) and `retry:`
 * carry no event.
 * @param {string} frame
 * @returns {OpenWAEvent | null}
 */
function parseFrame(frame) {
  const data = [];
  for (const line of frame.split("\n")) {
    if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
  }
  if (!data.length) return null;
  return JSON.parse(data.join("\n"));
}
