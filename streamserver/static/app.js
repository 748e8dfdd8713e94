// streamserver demo page: one chat view over four transports, and the entry point (index.html loads
// it with <script type="module">). It holds the UI: the options from the server, the key field's
// buttons, the chat log, the stream in progress (Run), conversations, and the controls.
//
// No dependencies, no build step: the modules import each other by relative URLs, so the page also
// works when the app is mounted under a prefix. Safety: model text only ever reaches the page as
// text nodes (markdown.js builds it), never through innerHTML, so it cannot inject markup.

import {
  KEY_NEEDED, apiKey, call, cancelById, errorText, fetchJSON, keyNeeded, showKeyForm, storeKey,
} from "./api.js";
import { SHAPES } from "./formats.js";
import { el, renderMarkdown } from "./markdown.js";
import { applyStructured, initStructured, jsonMode, structuredFields } from "./modes.js";
import { ObjectView } from "./objectview.js";
import { setStatus, ui } from "./page.js";
import { Parts } from "./parts.js";
import { runTool } from "./tools.js";
import { viaEventSource, viaFetch, viaSocket } from "./transports.js";

const STORAGE = { transport: "streamserver.transport", conversation: "streamserver.conversation" };
// The route each transport uses, as named in GET /v1/stream/options.
const ROUTES = {
  eventsource: "/v1/stream", fetch: "/v1/stream", websocket: "/ws/stream",
  conversation: "/ws/chat/{conversation_id}",
};

let options = { buffers: [], formats: [], models: {}, routes: {} };
let current = null; // the stream in progress, a Run
const MAX_LEGS = 4; // a turn answers tool calls at most this many times before it stops

// ---------------------------------------------------------------- storage (may be unavailable)

function load(key) {
  try { return window.localStorage.getItem(key); } catch { return null; }
}
function save(key, value) {
  try { window.localStorage.setItem(key, value); } catch { /* private mode: not remembered */ }
}

// ---------------------------------------------------------------- the key field's buttons

async function useKey(event) {
  event.preventDefault();
  const key = ui.key.value.trim();
  if (!key) { ui.key.focus(); return; }
  if (!storeKey(key)) {
    showKeyForm("This browser does not let the page keep a key (sessionStorage is blocked).");
    return;
  }
  showKeyForm();
  setStatus("Checking the key…");
  if (await loadOptions()) setStatus("API key accepted.");
  applyMode();
  if (ui.transport.value === "conversation") await loadHistory();
}

function forgetKey() {
  storeKey("");
  ui.key.value = "";
  showKeyForm();
  setStatus("The API key is forgotten.");
  if (!ui.keyForm.hidden) ui.key.focus();
}

// ---------------------------------------------------------------- the chat log

function addMessage(role, text) {
  ui.empty.hidden = true;
  const article = el("article", `msg ${role}`);
  article.append(el("h2", "visually-hidden", role === "user" ? "You" : "Answer"));
  const body = el("div", "body");
  article.append(body);
  if (role === "user") body.textContent = text;
  else renderMarkdown(text || "", body);
  ui.log.append(article);
  scrollToEnd();
  return article;
}

// Follow a growing answer only while the reader is at the bottom: scrolling up to read stays put.
const atEnd = () => window.innerHeight + window.scrollY >= document.documentElement.scrollHeight - 160;
const scrollToEnd = () => window.scrollTo({ top: document.documentElement.scrollHeight });

function addNote(article, text, kind) {
  const note = el("p", `note-line ${kind || ""}`, text);
  article.append(note);
}

function clearLog() {
  ui.log.querySelectorAll(".msg").forEach((node) => node.remove());
  ui.empty.hidden = false;
}

// ---------------------------------------------------------------- one stream in progress

class Run {
  /** ``json``: the JSON mode (an object view instead of Markdown). */
  constructor(prompt, json = false) {
    this.prompt = prompt;
    this.text = "";
    this.tokens = 0;
    this.reconnects = 0;
    this.t0 = performance.now();
    this.tFirst = null;
    this.tLast = null;
    this.done = false;
    this.streamId = null;
    this.format = "production";
    this.received = 0; // WebSocket: messages of this stream received so far (a resume names it)
    this.lastSeq = -1;
    this.lastId = null;
    this.stopRequested = false;
    this.cancel = () => this.finish("cancelled"); // until a transport has started something
    this.close = () => {};
    this.frame = 0;
    addMessage("user", prompt);
    this.article = addMessage("assistant", "");
    this.article.classList.add("streaming");
    this.body = this.article.querySelector(".body");
    this.parts = new Parts(this.article, this.body); // the Thinking block and tool cards
    this.leg = 0; // which stream of the turn: each answer to tool calls starts the next one
    this.legStart = 0; // where the current leg's text starts in this.text
    this.next = null; // (fields) => void: send the turn's next leg (set by send)
    this.objectView = null;
    if (json) {
      this.objectView = new ObjectView();
      this.article.insertBefore(this.objectView.root, this.body);
      this.article.classList.add("json");
    }
    this.typing = el("span", "typing");
    this.typing.setAttribute("aria-hidden", "true");
    this.typing.append(el("i"), el("i"), el("i"));
    this.article.append(this.typing);
    ui.wire.textContent = "";
    ui.log.setAttribute("aria-busy", "true");
    ui.send.disabled = true;
    ui.stop.disabled = false;
    setStatus("Waiting for the first token…");
    this.paint();
  }

  /** Event ids are "<stream_id>:<seq>": a seq at or below the last one seen is a replay. */
  fresh(id) {
    if (!id) return true;
    const colon = id.lastIndexOf(":");
    const seq = parseInt(id.slice(colon + 1), 10);
    if (Number.isNaN(seq)) return true;
    if (seq <= this.lastSeq) return false;
    this.lastSeq = seq;
    this.lastId = id;
    if (!this.streamId) {
      this.streamId = id.slice(0, colon);
      if (this.stopRequested) cancelById(this.streamId);
    }
    return true;
  }

  token(content) {
    const now = performance.now();
    if (this.tFirst === null) { this.tFirst = now; setStatus("Streaming…"); }
    this.tLast = now;
    this.tokens += 1;
    this.text += content;
    this.parts.answerStarted();
    this.schedule();
  }

  schedule() {
    if (!this.frame) this.frame = requestAnimationFrame(() => { this.frame = 0; this.paint(); });
  }

  /** A structured part of a format's event (formats.js), or of a WebSocket message. */
  part(meaning) {
    if (typeof meaning.reasoning === "string") {
      if (this.tFirst === null) { this.tFirst = performance.now(); setStatus("Thinking…"); }
      this.parts.reasoning(meaning.reasoning);
    } else if (meaning.toolStart) this.parts.toolStart(meaning.toolStart);
    else if (meaning.toolDelta) this.parts.toolDelta(meaning.toolDelta.index, meaning.toolDelta.arguments);
    else if (meaning.toolCall) this.parts.toolCall(meaning.toolCall);
    else if (meaning.objectEnd && this.objectView) this.objectView.finish(meaning.objectEnd);
    else if ("object" in meaning && this.objectView) this.objectView.update(meaning.object);
    else return;
    if (this.tFirst === null) this.tFirst = performance.now();
    this.schedule();
  }

  /** An error event: kept for the end note; an object stream's invalid JSON is its verdict. */
  failed(meaning) {
    this.error = meaning.error;
    if (meaning.code === "invalid_json" && this.objectView) {
      this.objectView.finish({ invalidJson: { message: meaning.error, offset: meaning.offset } });
    }
  }

  /** The leg ended by calling tools the page can answer: run them, send their results. */
  answerTools(calls) {
    const messages = this.messages || [{ role: "user", content: this.prompt }];
    const legText = this.text.slice(this.legStart);
    messages.push({
      role: "assistant",
      content: legText,
      tool_calls: calls.map((call) => ({
        id: call.id, type: "function", function: { name: call.name, arguments: call.arguments },
      })),
    });
    for (const call of calls) {
      const result = runTool(call.name, call.arguments);
      this.parts.cardFor(call).answered(result);
      messages.push({ role: "tool", tool_call_id: call.id, content: result });
    }
    this.messages = messages;
    this.parts.nextLeg();
    this.leg += 1;
    this.legStart = this.text.length;
    this.streamId = null;
    this.lastSeq = -1;
    this.lastId = null;
    this.received = 0;
    setStatus(`Sent ${calls.length} tool result${calls.length > 1 ? "s" : ""}, waiting for the answer…`);
    this.paint();
    this.next(messages);
  }

  reconnecting() {
    this.reconnects += 1;
    setStatus(`Connection lost, resuming (attempt ${this.reconnects})…`);
    this.paint();
  }

  paint() {
    const follow = !this.done && atEnd();
    if (this.objectView) {
      this.objectView.paint();
      this.body.replaceChildren(el("pre", "json-text", this.text)); // the text, as it streams
    } else {
      renderMarkdown(this.text, this.body);
    }
    this.parts.paint();
    ui.ttft.textContent = this.tFirst === null ? "–" : `${Math.round(this.tFirst - this.t0)} ms`;
    const seconds = this.tokens > 1 ? (this.tLast - this.tFirst) / 1000 : 0;
    ui.rate.textContent = seconds > 0 ? ((this.tokens - 1) / seconds).toFixed(1) : "–";
    ui.tokens.textContent = String(this.tokens);
    ui.reconnects.textContent = String(this.reconnects);
    if (follow) scrollToEnd();
  }

  /** End the run: ``outcome`` is a finish reason, ``message`` a note shown under the answer. */
  finish(outcome, message) {
    if (this.done) return;
    const calls = this.parts.calls;
    if (this.next && calls.length && (outcome === "tool_calls" || outcome === "stop")) {
      if (this.leg + 1 < MAX_LEGS) {
        this.close();
        this.answerTools(calls);
        return;
      }
      message = message || `Stopped after ${MAX_LEGS} rounds of tool calls.`;
    }
    this.done = true;
    if (this.frame) cancelAnimationFrame(this.frame);
    this.close();
    this.paint();
    this.typing.remove();
    this.article.classList.remove("streaming");
    this.article.dataset.text = this.text; // the answer's Markdown source, as it arrived
    for (const card of this.parts.cards.values()) {
      if (card.result === null && !card.root.classList.contains("unanswered")) {
        card.unanswered(this.next ? "not answered (the turn ended)" : "not answered by the page in this mode");
      }
    }
    const stopped = outcome === "cancelled" || outcome === "client_gone";
    if (outcome === "cancelled") addNote(this.article, "Stopped.", "warn");
    if (outcome === "client_gone") {
      addNote(this.article, "The connection dropped for longer than the server waits for a "
        + "reader (resume.grace_s), so it stopped this answer.", "warn");
    }
    if (message) addNote(this.article, message, outcome === "error" ? "error" : "warn");
    const secs = ((performance.now() - this.t0) / 1000).toFixed(1);
    const summary = outcome === "error" ? "Failed" : stopped ? "Stopped" : "Done";
    setStatus(`${summary} · ${this.tokens} tokens in ${secs} s`);
    ui.log.setAttribute("aria-busy", "false");
    ui.send.disabled = false;
    ui.stop.disabled = true;
    if (current === this) current = null;
  }
}

// ---------------------------------------------------------------- conversations

function newConversationId() {
  const bytes = new Uint8Array(12);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function conversationId() {
  let id = load(STORAGE.conversation);
  if (!id || !/^[A-Za-z0-9_-]{1,64}$/.test(id)) {
    id = newConversationId();
    save(STORAGE.conversation, id);
  }
  return id;
}

async function loadHistory() {
  const id = conversationId();
  ui.conversationId.textContent = id;
  clearLog();
  let response;
  try {
    response = await call(`v1/conversations/${encodeURIComponent(id)}`);
  } catch (err) {
    setStatus(`Could not load the conversation: ${err.message}`);
    return;
  }
  if (response.status === 404) { setStatus("New conversation."); return; }
  if (!response.ok) { setStatus(await errorText(response)); return; }
  const body = await response.json();
  for (const message of body.messages || []) {
    const article = addMessage(message.role === "user" ? "user" : "assistant", message.content);
    if (message.status && message.status !== "complete") addNote(article, `(${message.status})`, "warn");
  }
  setStatus(`Conversation loaded: ${(body.messages || []).length} messages.`);
}

// ---------------------------------------------------------------- controls

function routeAllows(mode, field) {
  const route = options.routes[ROUTES[mode]];
  return Boolean(route && route.allow.includes(field));
}

function applyMode() {
  const mode = ui.transport.value;
  const bufferOk = routeAllows(mode, "buffer");
  ui.buffer.disabled = !bufferOk;
  ui.bufferNote.hidden = bufferOk;
  ui.bufferNote.textContent = bufferOk ? "" : "Not taken by this route.";
  ui.model.disabled = !routeAllows(mode, "model") || ui.model.options.length === 0;
  const sse = mode === "eventsource" || mode === "fetch";
  const formatOk = sse && routeAllows(mode, "format");
  ui.format.disabled = !formatOk;
  ui.formatNote.hidden = formatOk;
  ui.formatNote.textContent = formatOk ? "" : sse
    ? "Not taken by this route."
    : "A WebSocket mode reads the route's own message shape.";
  ui.conversationBar.hidden = mode !== "conversation";
  applyStructured();
}

async function changeMode() {
  if (current) {
    current.cancel();
    current.finish("cancelled", "Switched transport.");
  }
  save(STORAGE.transport, ui.transport.value);
  applyMode();
  clearLog();
  setStatus("");
  if (ui.transport.value === "conversation") await loadHistory();
}

/** The stream request's fields: the prompt, and each choice the route takes. */
function streamFields(prompt) {
  const fields = { prompt };
  if (!ui.format.disabled && ui.format.value) fields.format = ui.format.value;
  if (ui.model.value && !ui.model.disabled) fields.model = ui.model.value;
  if (ui.buffer.value && !ui.buffer.disabled) fields.buffer = ui.buffer.value;
  return fields;
}

function send() {
  const prompt = ui.prompt.value;
  if (!prompt.trim() || current) return;
  if (keyNeeded && !apiKey()) {
    setStatus(KEY_NEEDED);
    ui.key.focus();
    return;
  }
  const mode = ui.transport.value;
  let structured;
  try {
    structured = mode === "conversation" ? {} : structuredFields();
  } catch (err) {
    setStatus(err.message);
    ui.schema.focus();
    return;
  }
  ui.prompt.value = "";
  const run = new Run(prompt, jsonMode() && mode === "fetch");
  current = run;
  if (!ui.format.disabled) run.format = ui.format.value;
  if (structured.format) run.format = structured.format;
  // A turn with tool calls sends the conversation so far (messages) to the same route again.
  const legFields = (messages) => {
    const fields = { ...streamFields(prompt), ...structured };
    if (messages) { delete fields.prompt; fields.messages = messages; }
    return fields;
  };
  if (mode === "eventsource") viaEventSource(run, streamFields(prompt));
  else if (mode === "fetch") {
    if (structured.tools) run.next = (messages) => viaFetch(run, legFields(messages));
    viaFetch(run, legFields());
  } else if (mode === "websocket") {
    const socketFields = (messages) => {
      const fields = legFields(messages);
      delete fields.format; // the route's WebSocket shape is what this page reads
      return fields;
    };
    if (structured.tools) run.next = (messages) => viaSocket(run, "ws/stream", socketFields(messages));
    viaSocket(run, "ws/stream", socketFields());
  } else {
    const first = { message: prompt };
    if (ui.model.value && !ui.model.disabled) first.model = ui.model.value;
    // A refused resume: the conversation's stored history has what the server kept of the reply.
    viaSocket(run, `ws/chat/${encodeURIComponent(conversationId())}`, first, loadHistory);
  }
}

/** Fill the selectors from the server; false if it refused (with auth on: until a key is accepted). */
async function loadOptions() {
  const [loaded, models] = await Promise.allSettled([fetchJSON("v1/stream/options"), fetchJSON("v1/models")]);
  if (loaded.status === "fulfilled") {
    options = loaded.value;
    ui.buffer.options.length = 1; // keep "default"
    for (const name of options.buffers) ui.buffer.append(new Option(name, name));
    const chosen = ui.format.value;
    ui.format.replaceChildren();
    for (const name of options.formats) {
      // A plugin's format may have any shape: listed, not offered, since the page cannot read it.
      // "object" is the JSON mode's (Output), which adds the schema it streams against.
      const readable = Object.hasOwn(SHAPES, name) && name !== "object";
      const label = name === "object" ? "object (Output: JSON object)" : `${name} (not read by this page)`;
      const option = new Option(readable ? name : label, name);
      option.disabled = !readable;
      ui.format.append(option);
    }
    const route = options.routes[ROUTES.fetch];
    const fallback = route && Object.hasOwn(SHAPES, route.formatter) ? route.formatter : "production";
    ui.format.value = Object.hasOwn(SHAPES, chosen) && options.formats.includes(chosen) ? chosen : fallback;
    for (const option of ui.transport.options) option.disabled = !options.routes[ROUTES[option.value]];
  } else {
    const { message, status } = loaded.reason;
    setStatus(status === 401 ? message : `Could not read the server's options: ${message}`);
  }
  if (models.status === "fulfilled") {
    const groups = new Map();
    for (const model of models.value.data || []) {
      if (!groups.has(model.owned_by)) groups.set(model.owned_by, []);
      groups.get(model.owned_by).push(model.id);
    }
    ui.model.replaceChildren();
    for (const [provider, names] of groups) {
      const group = document.createElement("optgroup");
      group.label = provider;
      for (const name of names) group.append(new Option(name, name));
      ui.model.append(group);
    }
  }
  return loaded.status === "fulfilled";
}

async function init() {
  ui.form.addEventListener("submit", (event) => { event.preventDefault(); send(); });
  ui.prompt.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      send();
    }
  });
  ui.stop.addEventListener("click", () => { if (current) current.cancel(); });
  ui.transport.addEventListener("change", changeMode);
  ui.newConversation.addEventListener("click", async () => {
    save(STORAGE.conversation, newConversationId());
    await loadHistory();
  });
  ui.keyForm.addEventListener("submit", useKey);
  initStructured();
  ui.forgetKey.addEventListener("click", forgetKey);

  const saved = load(STORAGE.transport);
  if (saved && [...ui.transport.options].some((o) => o.value === saved)) ui.transport.value = saved;

  showKeyForm();
  await loadOptions();
  applyMode();
  if (ui.transport.value === "conversation") await loadHistory();
  document.body.dataset.ready = "true";
}

init();
