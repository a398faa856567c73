// @ts-check
// One session: its chats, a chat's messages (paged) with media previews, sending a text
// or a file, statuses live.

import { call, download, get, post, seg } from "./api.js";
import { openSocket } from "./live.js";
import { describe, field, guarded, h, pager, showError, size, statusBadge, when } from "./ui.js";

/** @typedef {import("./api.js").Message} Message */
/** @typedef {import("./api.js").Chat} Chat */
/** @typedef {import("./api.js").MediaInfo} MediaInfo */

/** @param {Message} message */
function summary(message) {
  return message.text ?? message.caption ?? `[${message.type}]`;
}

/**
 * The types a preview shows as what they are: those the server itself lets a browser
 * show inline (INLINE_SAFE in src/openwa/media/types.py), none of which can run code.
 * Any other media is offered as a download of opaque bytes.
 */
const IMAGES = new Set(["image/jpeg", "image/png", "image/webp", "image/gif"]);
const PLAYABLE = new Set([
  "audio/mpeg", "audio/ogg", "audio/mp4", "audio/aac", "audio/wav", "audio/x-wav", "audio/webm",
  "audio/x-flac", "video/mp4", "video/webm", "video/3gpp", "video/quicktime",
]);
/** Images up to this size load with the page of messages; larger ones on a click. */
const PREVIEW_MAX_BYTES = 2 * 1024 * 1024;

/** What the API's `type` a file is sent as, from its own type (the user may change it). @param {string} mimetype */
function sendType(mimetype) {
  const [kind] = mimetype.split("/");
  return kind === "image" || kind === "video" || kind === "audio" ? kind : "document";
}
const SEND_TYPES = ["image", "video", "audio", "voice", "document", "sticker"];

/** A stored type's essence: lower case, no parameters. @param {string | null} mimetype */
const essence = (mimetype) => (mimetype ?? "").split(";")[0].trim().toLowerCase();

/** @type {import("./app.js").Page} */
export function sessionPage(main, access, [id]) {
  const base = `/api/sessions/${seg(id)}`;
  const title = h("h1", null, id);
  const facts = h("p", { class: "facts-line" });
  const chatList = h("ul", { class: "chats", id: "chat-list" });
  const chatPager = h("div");
  const messagesTitle = h("h2", { id: "messages-title" }, "Messages");
  const messageList = h("ol", { class: "messages", id: "message-list", "aria-labelledby": "messages-title" });
  const messagePager = h("div");
  /** @type {string | null} */
  let openChat = null;
  let chatPage = 1;
  let messagePage = 1;
  /** @type {Map<string, HTMLElement>} message id -> its status badge's holder */
  const statusCells = new Map();
  /** @type {Set<string>} blob: URLs of the media shown, freed with the messages */
  const blobs = new Set();

  function freeMedia() {
    for (const url of blobs) URL.revokeObjectURL(url);
    blobs.clear();
  }

  main.append(
    h("p", null, h("a", { href: "#/sessions" }, "← Sessions")),
    title,
    facts,
    h(
      "div",
      { class: "split" },
      h(
        "section",
        { "aria-labelledby": "chats-title", class: "card" },
        h("h2", { id: "chats-title" }, "Chats"),
        chatList,
        chatPager,
      ),
      h(
        "section",
        { "aria-labelledby": "messages-title", class: "card" },
        messagesTitle,
        access.canWrite ? sendForm() : null,
        messageList,
        messagePager,
      ),
    ),
  );

  async function loadSession() {
    const session = await get(base);
    title.replaceChildren(session.name, " ", statusBadge(session.status));
    facts.textContent = `${session.engine} · ${session.phoneNumber ?? "not linked"}`;
  }

  async function loadChats(page = chatPage) {
    chatPage = page;
    const { data, pagination } = await call("GET", `${base}/chats`, { query: { page, limit: 20 } });
    chatList.replaceChildren(
      ...(data.length ? [] : [h("li", { class: "empty" }, "No chats yet.")]),
      ...data.map((/** @type {Chat} */ chat) =>
        h(
          "li",
          null,
          h(
            "button",
            {
              type: "button",
              class: "chat",
              "aria-pressed": String(chat.id === openChat),
              dataset: { chatId: chat.id },
              onclick: () => openMessages(chat.id).catch(showError),
            },
            h("strong", null, chat.name ?? chat.id),
            h("span", null, summary(chat.lastMessage)),
            chat.unreadCount ? h("span", { class: "badge" }, `${chat.unreadCount} unread`) : null,
          ),
        ),
      ),
    );
    chatPager.replaceChildren(pager(pagination, (p) => loadChats(p).catch(showError), "Chats"));
  }

  /** @param {string} chatId */
  async function openMessages(chatId, page = 1) {
    if (openChat !== chatId) page = 1;
    openChat = chatId;
    messagePage = page;
    messagesTitle.textContent = `Messages with ${chatId}`;
    const target = /** @type {HTMLInputElement | null} */ (main.querySelector("#send-chat"));
    if (target) target.value = chatId;
    for (const button of chatList.querySelectorAll("button.chat")) {
      const chat = /** @type {HTMLElement} */ (button).dataset.chatId;
      button.setAttribute("aria-pressed", String(chat === chatId));
    }
    const { data, pagination } = await call("GET", `${base}/chats/${seg(chatId)}/messages`, {
      query: { page, limit: 20 },
    });
    statusCells.clear();
    freeMedia();
    messageList.replaceChildren(...data.map(messageItem));
    messagePager.replaceChildren(
      pager(pagination, (p) => openMessages(chatId, p).catch(showError), "Messages"),
    );
  }

  /**
   * A message's media through `fetch` with the key (an `<img src>` could not send it),
   * as a `blob:` URL. Previews get the blob typed as the message says, from the lists
   * above only; a download gets opaque bytes, so that opening it can never run it as a
   * page of this origin.
   * @param {Message} message @param {string} type
   */
  async function mediaUrl(message, type) {
    const bytes = await download(`${base}/messages/${seg(message.id)}/media`);
    const url = URL.createObjectURL(new Blob([bytes], { type }));
    blobs.add(url);
    return url;
  }

  /**
   * The preview of a message's media: images (small ones at once), audio and video
   * players and other files on a click, since they may be large.
   * @param {Message} message
   */
  function mediaBlock(message) {
    const media = message.media;
    if (!media) {
      return message.mediaError ? h("p", { class: "problem" }, `Media missing: ${message.mediaError}`) : null;
    }
    const mimetype = essence(media.mimetype);
    const about = `${media.filename || mimetype || message.type}, ${size(media.size)}`;
    if (media.deleted) return h("p", { class: "empty" }, `[${about}: no longer stored]`);
    const holder = h("div", { class: "media", dataset: { media: mimetype } });
    /** @param {() => Promise<void>} show */
    const load = async (show) => {
      holder.replaceChildren(h("span", { class: "empty" }, "Loading…"));
      try {
        await show();
      } catch (error) {
        holder.replaceChildren(h("span", { class: "problem" }, `${about}: ${describe(error)}`));
      }
    };
    /** @param {string} label @param {() => Promise<void>} show */
    const offer = (label, show) => {
      const button = h("button", { type: "button", class: "media-load", onclick: () => load(show) }, label);
      holder.replaceChildren(button);
      return button;
    };
    if (IMAGES.has(mimetype)) {
      const show = async () => {
        const src = await mediaUrl(message, mimetype);
        holder.replaceChildren(h("img", { src, alt: media.filename ?? `Image (${about})`, dataset: { loaded: "" } }));
      };
      if ((media.size ?? Infinity) <= PREVIEW_MAX_BYTES) load(show);
      else offer(`Show the image (${about})`, show);
    } else if (PLAYABLE.has(mimetype)) {
      const tag = mimetype.startsWith("video/") ? "video" : "audio";
      offer(`Play ${tag === "video" ? "the video" : "the audio"} (${about})`, async () => {
        const src = await mediaUrl(message, mimetype);
        holder.replaceChildren(h(tag, { src, controls: true, preload: "metadata", "aria-label": about }));
      });
    } else {
      const save = async () => {
        const link = h("a", {
          href: await mediaUrl(message, "application/octet-stream"),
          download: media.filename ?? `${message.id}.bin`,
        });
        link.click();
        // Offered again (each click reads the bytes afresh), with what was done.
        holder.replaceChildren(again, h("span", { role: "status" }, ` Downloaded ${about}.`));
      };
      const again = offer(`Download ${about}`, save);
    }
    return holder;
  }

  /** @param {Message} message */
  function messageItem(message) {
    const status = h("span", { class: "status" }, statusBadge(message.status));
    statusCells.set(message.id, status);
    const media = mediaBlock(message);
    const text = message.text ?? message.caption;
    return h(
      "li",
      { class: message.fromMe ? "out" : "in", dataset: { messageId: message.id, type: message.type } },
      media,
      text || !media ? h("p", null, text ?? summary(message)) : null,
      h(
        "p",
        { class: "meta" },
        h("span", null, message.fromMe ? "you" : message.from ?? ""),
        " · ",
        h("time", { datetime: message.timestamp }, when(message.timestamp)),
        " · ",
        status,
        message.error ? h("span", { class: "problem" }, ` ${message.error}`) : null,
      ),
    );
  }

  /** @param {string} messageId @param {string} status */
  function setStatus(messageId, status) {
    statusCells.get(messageId)?.replaceChildren(statusBadge(status));
  }

  /**
   * A text, or a file with the text as its caption: the file goes up as
   * multipart/form-data (`POST .../messages/media`), never read into a base64 string.
   */
  function sendForm() {
    const chat = /** @type {HTMLInputElement} */ (h("input", { id: "send-chat", name: "chatId", required: true, autocomplete: "off" }));
    const text = /** @type {HTMLTextAreaElement} */ (h("textarea", { id: "send-text", name: "text", required: true, rows: 2 }));
    const file = /** @type {HTMLInputElement} */ (h("input", { type: "file", id: "send-file", name: "file" }));
    const type = /** @type {HTMLSelectElement} */ (
      h("select", { id: "send-type", name: "type" }, ...SEND_TYPES.map((name) => h("option", { value: name }, name)))
    );
    const typeField = field("Send as", type);
    typeField.hidden = true;
    const chosen = () => file.files?.[0] ?? null;
    file.addEventListener("change", () => {
      const picked = chosen();
      // With a file the text is its caption, and may stay empty.
      text.required = !picked;
      typeField.hidden = !picked;
      if (picked) type.value = sendType(picked.type);
    });
    const form = h(
      "form",
      {
        id: "send-form",
        "aria-label": "Send a text or a file",
        onsubmit: (/** @type {SubmitEvent} */ event) => {
          event.preventDefault();
          const button = /** @type {HTMLButtonElement} */ (form.querySelector("button[type=submit]"));
          guarded(button, async () => {
            const chatId = chat.value.trim();
            const picked = chosen();
            /** @type {Message} */
            let sent;
            if (picked) {
              const upload = new FormData();
              upload.set("chatId", chatId);
              upload.set("type", type.value);
              if (text.value.trim()) upload.set("caption", text.value);
              upload.set("file", picked, picked.name);
              sent = (await call("POST", `${base}/messages/media`, { form: upload })).data;
              file.value = "";
              file.dispatchEvent(new Event("change"));
            } else {
              sent = await post(`${base}/messages/text`, { chatId, text: text.value });
            }
            text.value = "";
            if (openChat === sent.chatId) {
              if (!statusCells.has(sent.id)) messageList.prepend(messageItem(sent));
            } else {
              await openMessages(sent.chatId);
            }
            await loadChats();
          });
        },
      },
      h(
        "div",
        { class: "row" },
        field("To (phone number or chat id)", chat),
        field("Text", text, "With a file: its caption (optional)"),
      ),
      h("div", { class: "row" }, field("Attach a file", file), typeField),
      h("button", { type: "submit" }, "Send"),
    );
    return form;
  }

  const socket = openSocket({
    sessions: [id],
    events: ["session.status", "message.received", "message.sent", "message.ack"],
    onEvent: (event) => {
      const data = /** @type {any} */ (event.data);
      if (event.event === "session.status") {
        loadSession().catch(showError);
      } else if (event.event === "message.ack") {
        setStatus(data.id, data.status);
      } else if (data.chatId === openChat && messagePage === 1 && !statusCells.has(data.id)) {
        messageList.prepend(messageItem(data));
      } else if (statusCells.has(data.id)) {
        setStatus(data.id, data.status);
      }
      if (event.event === "message.received" || event.event === "message.sent") {
        loadChats().catch(showError);
      }
    },
  });
  loadSession()
    .then(() => loadChats())
    .catch(showError);
  return () => {
    socket.close();
    freeMedia();
  };
}
