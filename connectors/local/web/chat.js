// The web chat page. Who is writing comes from the signed-in session (GET /api/me), never from the page; the
// page's words come from the server's catalogue in the reader's language (GET /api/chat/ui). Replies are
// Markdown, rendered by marked and cleaned by DOMPurify (both shipped next to this file).
"use strict";
const $ = s => document.querySelector(s);
const log = $("#log"), scroller = $("#scroll"), input = $("#text");
let W = {}, me = null, csrf = "", maxUpload = 0, uploads = true;
let after = 0, polling = 0, partialEl = null, partialLen = 0, thinkingEl = null;
const ROLES = ["rep", "manager", "enablement", "admin"];

const t = (key, vars = {}) => (W[key] || key).replace(/\{(\w+)\}/g, (m, k) => (k in vars ? String(vars[k]) : m));
const conv = () => "web-" + me.id;  // the same conversation the copilot uses for nudges to this person
const sleep = ms => new Promise(ok => setTimeout(ok, ms));

function el(tag, attrs = {}, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === false || v == null) continue;
    if (k === "class") e.className = v; else if (k.startsWith("on")) e[k] = v; else e.setAttribute(k, v === true ? "" : v);
  }
  e.append(...kids.filter(k => k != null && k !== ""));
  return e;
}
const hidden = text => el("span", {class: "visually-hidden"}, text);

function uid() {  // crypto.randomUUID needs https; getRandomValues works on a plain-http intranet address too
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), b => b.toString(16).padStart(2, "0")).join("");
}

// scrolling: follow the conversation while the reader is at its end; never pull them down while they read back
const atEnd = () => scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 80;
function place(node, follow) {
  const stick = follow || atEnd();
  log.append(node);
  if (stick) requestAnimationFrame(() => { scroller.scrollTop = scroller.scrollHeight; });
  return node;
}

// Markdown -----------------------------------------------------------------------------------------------
function markdown(src) {
  const clean = DOMPurify.sanitize(marked.parse(src || "", {gfm: true, breaks: true}),
    {FORBID_TAGS: ["style", "form", "input", "button", "textarea", "select"], FORBID_ATTR: ["style"]});
  const box = document.createElement("div");
  box.innerHTML = clean;
  for (const table of box.querySelectorAll("table")) {  // wide tables scroll inside the message, not the page
    const wrap = el("div", {class: "table", tabindex: "0", role: "region", "aria-label": table.rows[0]?.textContent.trim().slice(0, 60) || "table"});
    table.replaceWith(wrap);
    wrap.append(table);
  }
  for (const a of box.querySelectorAll("a[href]")) { a.target = "_blank"; a.rel = "noopener noreferrer"; }
  return box;
}

function linkRefs(box, cites) {  // [1] in the answer becomes a link to the cited passage
  const byN = new Map(cites.filter(c => c.url).map(c => [String(c.n), c]));
  if (!byN.size) return;
  const walk = document.createTreeWalker(box, NodeFilter.SHOW_TEXT), found = [];
  while (walk.nextNode()) {
    const n = walk.currentNode;
    if (/\[\d+\]/.test(n.nodeValue) && !n.parentElement.closest("a")) found.push(n);
  }
  for (const node of found) {
    const s = node.nodeValue, frag = document.createDocumentFragment();
    let last = 0;
    for (const m of s.matchAll(/\[(\d+)\]/g)) {
      const c = byN.get(m[1]);
      if (!c) continue;
      frag.append(s.slice(last, m.index), el("a", {href: c.url, target: "_blank", rel: "noopener", class: "ref", title: c.title}, m[0]));
      last = m.index + m[0].length;
    }
    frag.append(s.slice(last));
    node.replaceWith(frag);
  }
}

function citations(cites) {
  const list = el("ol", {class: "cites", "aria-label": t("chat_sources")});
  for (const c of cites) {
    const heading = (c.heading || "").split(" > ").slice(1).join(" › ");
    const label = `[${c.n}] ${c.title}${heading ? " › " + heading : ""}`;
    const meta = [c.version ? "v" + c.version : "", c.updated ? t("chat_updated", {date: c.updated}) : ""].filter(Boolean).join(" · ");
    const link = c.url ? el("a", {href: c.url, target: "_blank", rel: "noopener"}, label) : el("span", {}, label);
    list.append(el("li", {}, link, meta ? " · " + meta : "", c.stale_days ? el("span", {class: "stale"}, " · ⚠ " + t("chat_stale", {days: c.stale_days})) : ""));
  }
  return list;
}

// messages ------------------------------------------------------------------------------------------------
function showMine(text, follow = true) {
  return place(el("div", {class: "msg me"}, hidden(t("chat_you")), text), follow);
}

function showError(text) {
  clearWaiting();
  return place(el("div", {class: "msg bot error", role: "alert"}, text), true);
}

function settle(group, key) {
  for (const b of group.querySelectorAll("button")) {
    b.disabled = true;
    if (b.dataset.key === key) { b.classList.add("chosen"); b.setAttribute("aria-pressed", "true"); }
  }
  if (!group.querySelector(".settled")) group.append(el("span", {class: "settled"}, t("chat_settled")));
}

function showReply(item, follow = false) {
  const r = item.reply;
  const d = el("div", {class: "msg bot" + (r.kind === "error" ? " error" : ""), "data-id": item.id}, hidden(t("chat_copilot")));
  const body = markdown(r.markdown || r.text);
  linkRefs(body, r.citations || []);
  d.append(...body.childNodes);
  if (r.citations && r.citations.length) d.append(citations(r.citations));
  if (r.buttons && r.buttons.length) {
    const group = el("div", {class: "buttons", role: "group", "aria-label": t("chat_buttons_label")});
    for (const b of r.buttons) {
      group.append(el("button", {type: "button", "data-key": b.key, onclick: () => {
        settle(group, b.key);
        input.focus();
        send(b.label, {key: b.key, ref: b.ref});
      }}, b.label));
    }
    d.append(group);
    if (item.done) settle(group, item.chosen);
  }
  return place(d, follow);
}

function clearWaiting() {
  if (thinkingEl) { thinkingEl.remove(); thinkingEl = null; }
  if (partialEl) { partialEl.remove(); partialEl = null; partialLen = 0; }
  log.setAttribute("aria-busy", "false");
}

function showThinking() {
  if (thinkingEl || partialEl) return;
  thinkingEl = place(el("div", {class: "msg bot thinking", role: "status"}, t("chat_thinking")), true);
}

function showPartial(text) {  // the answer while the model writes it; announced once it is complete
  if (thinkingEl) { thinkingEl.remove(); thinkingEl = null; }
  partialLen = text.length;
  log.setAttribute("aria-busy", "true");
  const stick = atEnd();
  if (!partialEl) partialEl = place(el("div", {class: "msg bot cursor", "aria-hidden": "true"}), true);
  partialEl.replaceChildren(...markdown(text).childNodes);
  if (stick) scroller.scrollTop = scroller.scrollHeight;
}

// the server ----------------------------------------------------------------------------------------------
async function failure(r, upload) {
  if (r.status === 413) return t("chat_upload_too_large", {mb: Math.floor(maxUpload / 1048576)});
  if (r.status === 429) return t("chat_too_fast", {seconds: r.headers.get("Retry-After") || 60});
  if (upload && !uploads) return t("chat_upload_disabled");
  if (r.status === 400 || r.status === 415) return t("chat_bad_message");
  return t("chat_send_failed", {status: r.status});
}

async function post(body, headers, upload) {
  for (let attempt = 0; attempt < 5; attempt++) {  // the same id on a retry: the server answers once
    try {
      const r = await fetch("/api/chat", {method: "POST", headers: {"X-CSRF-Token": csrf, ...headers}, body});
      if (r.status === 401) { location.href = "/login"; return; }
      if (r.ok) { showThinking(); return; }
      showError(await failure(r, upload));
      return;
    } catch (e) { await sleep(1000 * (attempt + 1)); }
  }
  showError(t("chat_network_error"));
}

function send(text, action) {
  showMine(text);
  return post(JSON.stringify({text, conversation: conv(), id: uid(), action}), {"Content-Type": "application/json"}, false);
}

async function upload(files) {
  for (const f of files) {
    showMine("📎 " + f.name);
    if (maxUpload && f.size > maxUpload) { showError(t("chat_upload_too_large", {mb: Math.floor(maxUpload / 1048576)})); continue; }
    const fd = new FormData();
    fd.append("conversation", conv());
    fd.append("id", "upload-" + uid());
    fd.append("file", f);
    await post(fd, {}, true);
  }
}

async function poll(gen) {
  while (gen === polling) {
    try {
      const r = await fetch(`/api/replies?conversation=${encodeURIComponent(conv())}&after=${after}&wait=25&plen=${partialLen}`);
      if (r.status === 401) { location.href = "/login"; return; }
      if (!r.ok) { await sleep(2000); continue; }
      const data = await r.json();
      if (gen !== polling) return;
      if (data.partial && !data.replies.length) showPartial(data.partial);
      if (data.replies.length) clearWaiting();
      for (const rep of data.replies) { after = Math.max(after, rep.id); showReply(rep); }
      if (data.replies.length && log.querySelector(".buttons button:enabled")) settleAnswered();
    } catch (e) { await sleep(2000); }
  }
}

async function settleAnswered() {  // a question settled elsewhere (a typed "1", a newer proposal): its buttons close
  const r = await fetch(`/api/history?conversation=${encodeURIComponent(conv())}`);
  if (!r.ok) return;
  for (const it of (await r.json()).items) {
    const group = it.done && log.querySelector(`[data-id="${it.id}"] .buttons`);
    if (group && group.querySelector("button:enabled")) settle(group, it.chosen);
  }
}

async function loadHistory() {
  const r = await fetch(`/api/history?conversation=${encodeURIComponent(conv())}`);
  if (!r.ok) { showError(t("chat_history_failed")); return; }
  const data = await r.json();
  for (const it of data.items) {
    if (it.type === "me") showMine(it.file ? "📎 " + it.file : it.text, false);
    else showReply(it, false);
  }
  after = data.after;
  const last = data.items[data.items.length - 1];
  if (last && last.type === "me") showThinking();  // asked before the reload, not answered yet
  requestAnimationFrame(() => { scroller.scrollTop = scroller.scrollHeight; });
}

// the page ------------------------------------------------------------------------------------------------
function words(ui) {
  W = ui.words;
  document.documentElement.lang = ui.lang === "zh" ? "zh-CN" : ui.lang;
  document.title = t("chat_title");
  for (const e of document.querySelectorAll("[data-t]")) e.textContent = t(e.dataset.t);
  input.placeholder = t("chat_placeholder");
  $("#attach").title = t("chat_attach");  // what 📎 does, for the mouse too
  log.setAttribute("aria-label", t("chat_log_label"));
  const codes = Object.keys(ui.langs), next = codes[(codes.indexOf(ui.lang) + 1) % codes.length];
  const sw = $("#lang");
  sw.hidden = codes.length < 2;
  sw.textContent = ui.langs[next];
  sw.lang = next === "zh" ? "zh-CN" : next;
  sw.setAttribute("aria-label", `${t("chat_language_label")}: ${ui.langs[next]}`);
  sw.onclick = () => {
    document.cookie = `copilot_lang=${next}; path=/; max-age=31536000; samesite=lax${location.protocol === "https:" ? "; secure" : ""}`;
    location.reload();
  };
}

function welcome() {
  const role = ROLES.includes(me.role) ? me.role : "rep";
  const examples = t("chat_examples_" + role).split("|").filter(Boolean);
  $("#welcome").replaceChildren(
    el("h2", {}, t("chat_welcome_title", {name: me.name})),
    el("p", {}, t("chat_welcome_" + role)),
    me.people && me.people.length ? el("p", {}, t("chat_welcome_demo")) : "",
    el("div", {class: "examples"}, el("span", {}, t("chat_examples_label")),
       ...examples.map(q => el("button", {type: "button", onclick: () => { input.focus(); send(q); }}, q))));
  $("#welcome").hidden = false;
}

function header() {
  const role = ROLES.includes(me.role) ? t("chat_role_" + me.role) : me.role;
  $("#me").textContent = `${me.name} · ${role}${me.team ? " · " + me.team : ""}`;
  $("#console").hidden = me.role === "rep";
  if (me.people && me.people.length) {  // demo mode, signed in as an admin: look at the copilot as a sample person
    const sel = $("#people");
    $("#switch").hidden = false;
    sel.replaceChildren(...me.people.map(u => el("option", {value: u.id}, `${u.name} · ${ROLES.includes(u.role) ? t("chat_role_" + u.role) : u.role}`)));
    sel.value = me.id;
    sel.onchange = async () => {
      const s = await fetch("/api/switch", {method: "POST", headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf},
        body: JSON.stringify({person: sel.value})});
      if (s.ok) location.reload(); else showError(await failure(s, false));
    };
  }
}

function wire() {
  const form = $("#f");
  form.onsubmit = e => {
    e.preventDefault();
    const text = input.value.trim();
    if (!text) return;
    input.value = "";
    grow();
    send(text);
  };
  const grow = () => { input.style.height = "auto"; input.style.height = Math.min(input.scrollHeight + 2, innerHeight * 0.3) + "px"; };
  input.addEventListener("input", grow);
  input.addEventListener("keydown", e => {  // Enter sends, Shift+Enter breaks the line; never while an IME is composing
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing && e.keyCode !== 229) { e.preventDefault(); form.requestSubmit(); }
  });
  $("#file").onchange = async () => { const files = [...$("#file").files]; $("#file").value = ""; await upload(files); };
  const drop = $("#drop");
  let depth = 0;
  const hasFiles = e => e.dataTransfer && [...e.dataTransfer.types].includes("Files");
  addEventListener("dragenter", e => { if (hasFiles(e)) { depth++; drop.hidden = false; } });
  addEventListener("dragleave", e => { if (hasFiles(e) && --depth <= 0) { depth = 0; drop.hidden = true; } });
  addEventListener("dragover", e => { if (hasFiles(e)) e.preventDefault(); });
  addEventListener("drop", e => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    depth = 0;
    drop.hidden = true;
    upload([...e.dataTransfer.files]);
  });
}

async function start() {
  const [r, u] = await Promise.all([fetch("/api/me"), fetch("/api/chat/ui")]);
  if (r.status === 401 || u.status === 401) { location.href = "/login"; return; }
  me = await r.json();
  const ui = await u.json();
  csrf = me.csrf;
  maxUpload = ui.max_upload;
  uploads = ui.uploads;
  $("#csrf").value = csrf;
  words(ui);
  header();
  welcome();
  wire();
  await loadHistory();
  log.setAttribute("aria-busy", "false");
  input.focus();
  poll(++polling);
}
start();
