// @ts-check
// One session: its chats, a chat's messages (paged), sending a text, statuses live.

import { call, get, post, seg } from "./api.js";
import { openSocket } from "./live.js";
import { field, guarded, h, pager, showError, statusBadge, when } from "./ui.js";

/** @typedef {import("./api.js").Message} Message */
/** @typedef {import("./api.js").Chat} Chat */

/** @param {Message} message */
function summary(message) {
  return message.text ?? message.caption ?? `[${message.type}]`;
}

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
    messageList.replaceChildren(...data.map(messageItem));
    messagePager.replaceChildren(
      pager(pagination, (p) => openMessages(chatId, p).catch(showError), "Messages"),
    );
  }

  /** @param {Message} message */
  function messageItem(message) {
    const status = h("span", { class: "status" }, statusBadge(message.status));
    statusCells.set(message.id, status);
    return h(
      "li",
      { class: message.fromMe ? "out" : "in", dataset: { messageId: message.id } },
      h("p", null, summary(message)),
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

  function sendForm() {
    const chat = h("input", { id: "send-chat", name: "chatId", required: true, autocomplete: "off" });
    const text = h("textarea", { id: "send-text", name: "text", required: true, rows: 2 });
    const form = h(
      "form",
      {
        id: "send-form",
        "aria-label": "Send a text",
        onsubmit: (/** @type {SubmitEvent} */ event) => {
          event.preventDefault();
          const button = /** @type {HTMLButtonElement} */ (form.querySelector("button"));
          guarded(button, async () => {
            const chatId = /** @type {HTMLInputElement} */ (chat).value.trim();
            /** @type {Message} */
            const sent = await post(`${base}/messages/text`, {
              chatId,
              text: /** @type {HTMLTextAreaElement} */ (text).value,
            });
            /** @type {HTMLTextAreaElement} */ (text).value = "";
            if (openChat === sent.chatId) {
              if (!statusCells.has(sent.id)) messageList.prepend(messageItem(sent));
            } else {
              await openMessages(sent.chatId);
            }
            await loadChats();
          });
        },
      },
      h("div", { class: "row" }, field("To (phone number or chat id)", chat), field("Text", text)),
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
  return () => socket.close();
}
