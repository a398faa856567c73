// @ts-check
// The API client of the dashboard: the key, the envelope, errors a person can read.

/**
 * @typedef {{code: string, message: string, details?: unknown}} ErrorBody
 * @typedef {{page: number, limit: number, total: number, totalPages: number}} Pagination
 * @typedef {{id: string, name: string, role: "admin" | "operator" | "viewer",
 *   prefix: string, sessions: string[] | null, source: string, createdAt: string,
 *   expiresAt: string | null, allowedCidrs: string[] | null}} OwnKey
 * @typedef {{status: string, previousStatus: string | null, reason: string | null,
 *   at: string}} StatusChange
 * @typedef {{id: string, name: string, engine: string, status: string,
 *   statusHistory: StatusChange[], phoneNumber: string | null, pushName: string | null,
 *   config: {metadata?: Record<string, string> | null, proxy?: string | null},
 *   createdAt: string, updatedAt: string, lastError: string | null}} Session
 * @typedef {Session & {webhooks: Webhook[]}} SessionCreated  each webhook with its secret
 * @typedef {{name: string, default: boolean, available: boolean, reason?: string | null,
 *   capabilities: string[]}} EngineInfo
 * @typedef {{url?: string, mimetype: string | null, size: number | null,
 *   filename?: string, deleted?: boolean}} MediaInfo  `deleted`: retention removed the bytes
 * @typedef {{id: string, sessionId: string, chatId: string, fromMe: boolean,
 *   from: string | null, type: string, text: string | null, caption: string | null,
 *   media?: MediaInfo | null, mediaError?: string | null,
 *   status: string, error: string | null, timestamp: string}} Message
 * @typedef {{id: string, name: string | null, isGroup: boolean, lastMessage: Message,
 *   unreadCount: number, lastActivityAt: string}} Chat
 * @typedef {{id: string, sessionId: string | null, url: string, events: string[],
 *   headers: Record<string, string>, active: boolean, source: string, createdAt: string,
 *   updatedAt: string, secret?: string}} Webhook  `secret` only in the answer to its creation
 * @typedef {{secret: string, previousSecretValidUntil: string}} RotatedSecret
 * @typedef {{id: string, epoch: number, expiresAt: string}} OwnedSession
 * @typedef {{id: string, url: string, startedAt: string, lastSeen: string, live: boolean,
 *   draining: boolean, this: boolean, maxSessions: number, running: number,
 *   sessions: OwnedSession[]}} InstanceInfo
 * @typedef {{clustered: boolean, leaseSeconds: number, instances: InstanceInfo[],
 *   unowned: string[]}} ClusterInfo
 * @typedef {{attempt: number, at: string, statusCode: number | null,
 *   error: string | null, durationMs: number, location: string | null}} DeliveryAttempt
 * @typedef {{id: number, webhookId: string, eventId: string, event: string,
 *   sessionId: string, status: string, attempts: number, lastStatusCode: number | null,
 *   lastError: string | null, createdAt: string, log: DeliveryAttempt[]}} Delivery
 * @typedef {OwnKey & {key?: string}} ApiKey  `key` only in the answer to its creation
 * @typedef {{id: number, at: string, keyId: string | null, address: string | null,
 *   action: string, method: string, route: string, sessionId: string | null,
 *   target: Record<string, string> | null, fields: string[] | null, outcome: string,
 *   status: number | null, requestId: string}} AuditEntry
 * @typedef {{cursor?: number, id: string, event: string, sessionId: string,
 *   timestamp: string, data: Record<string, unknown>, engine: string}} OpenWAEvent
 */

const KEY_SLOT = "openwa.dashboard.key";

/** The key lives for this tab only (sessionStorage): closing the tab signs out. */
export const credentials = {
  /** @returns {string | null} */
  get() {
    return sessionStorage.getItem(KEY_SLOT);
  },
  /** @param {string} key */
  set(key) {
    sessionStorage.setItem(KEY_SLOT, key);
  },
  clear() {
    sessionStorage.removeItem(KEY_SLOT);
  },
};

/** An error answer of the API (or no answer at all), ready to be shown. */
export class ApiError extends Error {
  /**
   * @param {number} status HTTP status; 0 when the server could not be reached
   * @param {ErrorBody} body the envelope's `error`
   * @param {number | null} retryAfter seconds, from `Retry-After` on a 429
   */
  constructor(status, body, retryAfter = null) {
    super(body.message);
    this.status = status;
    this.code = body.code;
    this.details = body.details;
    this.retryAfter = retryAfter;
  }

  /** One sentence for the person at the screen. */
  describe() {
    if (this.status === 429) {
      const when = this.retryAfter ? ` Try again in ${this.retryAfter} s.` : "";
      return `Too many requests (${this.code}).${when}`;
    }
    let text = `${this.message} (${this.code})`;
    if (Array.isArray(this.details)) {
      const fields = this.details
        .map((d) => (d && typeof d === "object" ? `${d.field ?? ""}: ${d.message ?? ""}` : ""))
        .filter(Boolean);
      if (fields.length) text += ` – ${fields.join("; ")}`;
    }
    return text;
  }
}

/**
 * @param {string} path
 * @param {Record<string, string | number | undefined | null>} [query]
 */
function url(path, query) {
  const target = new URL(path, location.origin);
  for (const [name, value] of Object.entries(query ?? {})) {
    if (value !== undefined && value !== null && value !== "") {
      target.searchParams.set(name, String(value));
    }
  }
  return target.pathname + target.search;
}

/** Headers every call carries; the key never goes into a URL (except for /ws). */
export function authHeaders() {
  /** @type {Record<string, string>} */
  const headers = {};
  const key = credentials.get();
  if (key) headers["X-API-Key"] = key;
  return headers;
}

/**
 * The ApiError a refused answer stands for: the envelope's `error` when there is one
 * (a proxy's HTML error page, or an empty body, is described by its status), and the
 * `Retry-After` of a 429.
 * @param {Response} response
 */
export async function errorOf(response) {
  let envelope = null;
  try {
    envelope = await response.json();
  } catch {
    // not an envelope
  }
  const retry = Number(response.headers.get("Retry-After"));
  const body =
    envelope && envelope.error
      ? envelope.error
      : { code: `HTTP_${response.status}`, message: response.statusText || "Request failed" };
  return new ApiError(response.status, body, Number.isFinite(retry) && retry > 0 ? retry : null);
}

/**
 * @typedef {{body?: unknown, form?: FormData,
 *   query?: Record<string, string | number | undefined | null>, key?: string}} CallOptions
 *   `form` goes as multipart/form-data (a file upload): the browser sets its boundary.
 */

/**
 * Sends one request with the key; a network failure becomes an ApiError (status 0).
 * @param {string} method @param {string} path @param {CallOptions} options
 */
async function send(method, path, options) {
  const headers = authHeaders();
  if (options.key) headers["X-API-Key"] = options.key;
  /** @type {RequestInit} */
  const init = { method, headers };
  if (options.form !== undefined) {
    init.body = options.form;
  } else if (options.body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(options.body);
  }
  try {
    return await fetch(url(path, options.query), init);
  } catch {
    throw new ApiError(0, { code: "NETWORK_ERROR", message: "The server could not be reached" });
  }
}

/**
 * Calls the API and unwraps the envelope; an error envelope becomes an ApiError.
 * @param {string} method
 * @param {string} path
 * @param {CallOptions} [options]
 * @returns {Promise<{data: any, pagination?: Pagination}>}
 */
export async function call(method, path, options = {}) {
  const response = await send(method, path, options);
  if (!response.ok) throw await errorOf(response);
  let envelope = null;
  try {
    envelope = await response.json();
  } catch {
    // described below
  }
  if (envelope && envelope.success) {
    return { data: envelope.data, pagination: envelope.pagination };
  }
  throw new ApiError(response.status, { code: "BAD_ANSWER", message: "The answer was not the API's envelope" });
}

/**
 * The bytes of a download route (a message's media), with the key as a header: they
 * become a `blob:` URL, so the key never goes into an `<img>` or `<a>` URL.
 * @param {string} path
 * @returns {Promise<Blob>}
 */
export async function download(path) {
  const response = await send("GET", path, {});
  if (!response.ok) throw await errorOf(response);
  return response.blob();
}

/** @param {string} path @param {Record<string, string | number | undefined | null>} [query] */
export const get = async (path, query) => (await call("GET", path, { query })).data;
/** @param {string} path @param {unknown} [body] */
export const post = async (path, body) => (await call("POST", path, { body })).data;
/** @param {string} path */
export const del = async (path) => (await call("DELETE", path)).data;

/** Path segments are escaped: session names and chat ids are user data. */
export const seg = encodeURIComponent;
/** @param {string} path @param {unknown} body */
export const patch = async (path, body) => (await call("PATCH", path, { body })).data;
