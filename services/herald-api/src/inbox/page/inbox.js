// Herald's reference inbox: the token comes from the page's fragment (#token=...), which the
// browser never sends to a server; every call goes to the same origin's /v1/inbox routes.
"use strict";

const token = new URLSearchParams(location.hash.slice(1)).get("token");
const $ = (id) => document.getElementById(id);
const shown = new Map(); // message id -> its <li>

async function call(path, body) {
  const response = await fetch(path, {
    method: body ? "POST" : "GET",
    headers: Object.assign({ authorization: `Bearer ${token}` },
                           body ? { "content-type": "application/json" } : {}),
    body: body ? JSON.stringify(body) : undefined,
  });
  const answer = await response.json();
  if (!response.ok) throw new Error(answer.detail || `HTTP ${response.status}`);
  return answer;
}

function fail(error) {
  $("error").textContent = String(error.message || error);
  $("error").hidden = false;
}

async function refreshCount() {
  const counts = await call("/v1/inbox/counts");
  $("badge").textContent = counts.unread;
  $("badge").dataset.count = counts.unread;
}

// One message as a list item; text only ever goes in through textContent.
function item(message) {
  const li = document.createElement("li");
  li.dataset.id = message.id;
  const text = document.createElement("div");
  text.className = "text";
  const title = document.createElement(message.action_url ? "a" : "div");
  title.className = "title";
  title.textContent = message.title || message.body || "";
  if (message.action_url) title.href = message.action_url;
  const body = document.createElement("div");
  body.textContent = message.title ? message.body || "" : "";
  const time = document.createElement("time");
  time.dateTime = message.created_at;
  time.textContent = new Date(message.created_at).toLocaleString();
  text.append(title, body, time);
  const read = document.createElement("button");
  read.type = "button";
  read.className = "mark-read";
  read.textContent = "Mark read";
  read.addEventListener("click", () =>
    call("/v1/inbox/mark", { action: "read", message_ids: [message.id] })
      .then(() => { setRead(message.id); return refreshCount(); })
      .catch(fail));
  li.append(text, read);
  li.classList.toggle("unread", !message.read_at);
  read.hidden = Boolean(message.read_at);
  return li;
}

function setRead(id) {
  const li = shown.get(id);
  if (!li) return;
  li.classList.remove("unread");
  li.querySelector(".mark-read").hidden = true;
}

function show(message, newest) {
  if (shown.has(message.id)) return;
  const li = item(message);
  shown.set(message.id, li);
  if (newest) $("messages").prepend(li); else $("messages").append(li);
  $("empty").hidden = true;
}

async function reload() {
  shown.clear();
  $("messages").replaceChildren();
  const page = await call("/v1/inbox/messages?limit=50");
  page.messages.forEach((m) => show(m, false));
  $("empty").hidden = shown.size > 0;
  await refreshCount();
}

function listen() {
  // EventSource cannot send headers: the token goes in the query. It reconnects by itself
  // with Last-Event-ID and gets what it missed.
  const stream = new EventSource(`/v1/inbox/stream?access_token=${encodeURIComponent(token)}`);
  stream.onopen = () => { $("status").textContent = "live"; };
  stream.onerror = () => { $("status").textContent = "reconnecting"; };
  stream.addEventListener("message", (e) => { show(JSON.parse(e.data), true); refreshCount().catch(fail); });
  stream.addEventListener("read", (e) => { setRead(JSON.parse(e.data).id); refreshCount().catch(fail); });
  stream.addEventListener("archived", (e) => {
    const id = JSON.parse(e.data).id;
    shown.get(id)?.remove();
    shown.delete(id);
    refreshCount().catch(fail);
  });
  stream.addEventListener("reset", () => reload().catch(fail));
}

$("mark-all").addEventListener("click", () =>
  call("/v1/inbox/mark", { action: "read", all: true })
    .then((answer) => { answer.changed.forEach(setRead); return refreshCount(); })
    .catch(fail));

if (!token) {
  fail("Open this page as /inbox#token=<a user token from POST /v1/users/{user_id}/inbox-token>.");
} else {
  reload().then(listen).catch(fail);
}
