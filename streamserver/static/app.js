// streamserver demo page: one chat view over four transports. No dependencies, no build step: the
// page loads this module (index.html, <script type="module">) and it imports the others by relative
// URLs, so the page also works when the app is mounted under a prefix.
//
// Safety: model text only ever reaches the page as text nodes (createTextNode / textContent) inside
// elements the page builds; nothing assigns innerHTML, so model output cannot inject markup.

import { el, renderMarkdown } from "./markdown.js";

const $ = (id) => document.getElementById(id);
const ui = {
  transport: $("transport"), model: $("model"), buffer: $("buffer"), bufferNote: $("buffer-note"),
  format: $("format"), formatNote: $("format-note"), log: $("log"), empty: $("empty"), status: $("status"), form: $("composer"),
  prompt: $("prompt"), send: $("send"), stop: $("stop"), wire: $("wire"),
  conversationBar: $("conversation-bar"), conversationId: $("conversation-id"),
  newConversation: $("new-conversation"),
  ttft: $("stat-ttft"), rate: $("stat-rate"), tokens: $("stat-tokens"), reconnects: $("stat-reconnects"),
  keyForm: $("key-form"), key: $("api-key"), keyError: $("api-key-error"), forgetKey: $("forget-key"),
};
const STORAGE = { transport: "streamserver.transport", conversation: "streamserver.conversation" };
const KEY_STORAGE = "streamserver.api_key"; // in sessionStorage: this tab only, gone when it closes
// The route each transport uses, as named in GET /v1/stream/options.
const ROUTES = {
  eventsource: "/v1/stream", fetch: "/v1/stream", websocket: "/ws/stream",
  conversation: "/ws/chat/{conversation_id}",
};
const MAX_RECONNECTS = 5;
// What a server answers a resume it cannot serve with (any other error belongs to the stream).
const RESUME_REFUSED = new Set(["stream_not_found", "invalid_resume", "events_expired", "stream_finished"]);
const RECONNECT_MS = 1000; // EventSource does not tell the page the server's retry: value
const WIRE_LINES = 400;
const KEY_NEEDED = "This server needs a valid API key: enter it under “API key”.";

let options = { buffers: [], formats: [], models: {}, routes: {} };
let current = null; // the stream in progress, a Run
let keyNeeded = false; // the server answered 401: auth.mode = "api_key"

// ---------------------------------------------------------------- storage (may be unavailable)

function load(key) {
  try { return window.localStorage.getItem(key); } catch { return null; }
}
function save(key, value) {
  try { window.localStorage.setItem(key, value); } catch { /* private mode: not remembered */ }
}

// ---------------------------------------------------------------- API key (auth.mode = "api_key")

// The key stays in sessionStorage: never localStorage, a URL or the wire log. fetch sends it as a
// header; EventSource and WebSocket cannot send headers, so they get a ticket (withTicket).

function apiKey() {
  try { return window.sessionStorage.getItem(KEY_STORAGE) || ""; } catch { return ""; }
}

/** Keep ``key`` for this tab, or forget it (``""``); false when the browser blocks sessionStorage. */
function storeKey(key) {
  try {
    if (key) window.sessionStorage.setItem(KEY_STORAGE, key);
    else window.sessionStorage.removeItem(KEY_STORAGE);
    return true;
  } catch {
    return false;
  }
}

/** Show the key field (once the server asked for a key, or while one is kept), and an error. */
function showKeyForm(error) {
  ui.keyForm.hidden = !keyNeeded && !apiKey();
  ui.forgetKey.hidden = !apiKey();
  ui.key.placeholder = apiKey() ? "kept for this tab" : "";
  ui.keyError.textContent = error || "";
  ui.keyError.hidden = !error;
}

/** fetch, with the key (if any) as a Bearer header; a 401 asks for a key, and drops a refused one. */
async function call(path, init = {}) {
  const key = apiKey();
  const headers = key ? { ...init.headers, Authorization: `Bearer ${key}` } : init.headers;
  const response = await fetch(path, { ...init, headers });
  if (response.status === 401) {
    keyNeeded = true;
    if (key && key === apiKey()) {
      storeKey("");
      const reason = await errorMessage(response.clone());
      showKeyForm(`The server refused this key${reason ? ` (${reason})` : ""}. Check it and enter it again.`);
    } else {
      showKeyForm(ui.keyError.textContent);
    }
  }
  return response;
}

/** ``url`` for a client that cannot send headers: with a key, plus a fresh ticket for its path. */
async function withTicket(url) {
  if (!apiKey()) return url;
  let response;
  try {
    response = await call("v1/tickets", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ path: url.pathname }),
    });
  } catch (err) {
    throw new Error(`Could not get a ticket: ${err.message}`);
  }
  if (!response.ok) throw new Error(await errorText(response));
  url.searchParams.set("ticket", (await response.json()).ticket);
  return url;
}

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

function wire(line) {
  const lines = ui.wire.textContent ? ui.wire.textContent.split("\n") : [];
  lines.push(line);
  ui.wire.textContent = lines.slice(-WIRE_LINES).join("\n");
}

// ---------------------------------------------------------------- one stream in progress

class Run {
  constructor(prompt) {
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
    if (!this.frame) this.frame = requestAnimationFrame(() => { this.frame = 0; this.paint(); });
  }

  reconnecting() {
    this.reconnects += 1;
    setStatus(`Connection lost, resuming (attempt ${this.reconnects})…`);
    this.paint();
  }

  paint() {
    const follow = !this.done && atEnd();
    renderMarkdown(this.text, this.body);
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
    this.done = true;
    if (this.frame) cancelAnimationFrame(this.frame);
    this.close();
    this.paint();
    this.typing.remove();
    this.article.classList.remove("streaming");
    this.article.dataset.text = this.text; // the answer's Markdown source, as it arrived
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

function setStatus(text) { ui.status.textContent = text; }

// ---------------------------------------------------------------- the formats' SSE events

// How the page reads each built-in format's SSE events: a function of (event name, data) that
// returns what the event means: {text} to append, {error}, {end: outcome}, {aborted}, or nothing.
const j = (data) => { try { return JSON.parse(data); } catch { return {}; } };
const endOf = (cancelled) => ({ end: cancelled ? "cancelled" : "stop" });
const SHAPES = {
  production(name, data) {
    const p = j(data);
    if (name === "token") return { text: p.content };
    if (name === "error") return { error: p.error };
    if (name === "stream_end") return { end: p.finish_reason };
    return null;
  },
  simple(name, data) {
    const p = j(data);
    if (typeof p.token === "string") return { text: p.token };
    if (p.error) return { error: p.error };
    if (p.done) return endOf(false);
    return null;
  },
  events(name, data) {
    const p = j(data);
    if (name === "token") return { text: p.content };
    if (name === "error") return { error: p.error };
    if (name === "done") return endOf(p.cancelled);
    return null;
  },
  progress(name, data) {
    const p = j(data);
    if (name === "token") return { text: p.content };
    if (name === "error") return { error: p.error };
    if (name === "complete") return endOf(p.status === "cancelled");
    return null;
  },
  openai(name, data) {
    if (data === "[DONE]") return endOf(false);
    const p = j(data);
    if (p.error) return { error: p.error.message };
    const choice = p.choices && p.choices[0];
    return choice && choice.delta && choice.delta.content ? { text: choice.delta.content } : null;
  },
  "ai-sdk"(name, data) {
    if (data === "[DONE]") return endOf(false);
    const p = j(data);
    if (p.type === "text-delta") return { text: p.delta };
    if (p.type === "error") return { error: p.errorText };
    if (p.type === "abort") return { aborted: true };
    return null;
  },
  text(name, data) {
    if (name === "done") return endOf(data === "cancelled");
    if (name === "error") return { error: data };
    return name === "message" ? { text: data } : null;
  },
};
SHAPES.chat = SHAPES.events;
const EVENT_NAMES = ["message", "token", "error", "done", "complete", "stream_start", "stream_end", "start"];

/** Apply one SSE event of the run's format; replays (seq already seen) are dropped. */
function onEvent(run, name, data, id) {
  if (run.done || !run.fresh(id)) return;
  wire(`${name}  id=${id}  ${data}`);
  const meaning = SHAPES[run.format](name, data);
  if (!meaning) return;
  if (meaning.text) run.token(meaning.text);
  if (meaning.error) run.error = meaning.error;
  if (meaning.aborted) run.aborted = true;
  if (meaning.end) {
    const outcome = run.error ? "error" : run.aborted ? "cancelled" : meaning.end;
    run.finish(outcome, run.error);
  }
}

async function cancelById(streamId) {
  try {
    const response = await call(`v1/streams/${encodeURIComponent(streamId)}`, { method: "DELETE" });
    if (!response.ok && response.status !== 409) setStatus(await errorText(response));
  } catch (err) {
    setStatus(`Could not stop: ${err.message}`);
  }
}

function sseCancel(run) {
  return () => {
    setStatus("Stopping…");
    if (run.streamId) cancelById(run.streamId);
    else run.stopRequested = true;
  };
}

/** The message of an error body in the contract's shape, or null. */
async function errorMessage(response) {
  try {
    const body = await response.json();
    if (body && body.error) return body.error.message || String(body.error);
  } catch { /* not JSON */ }
  return null;
}

async function errorText(response) {
  if (response.status === 401) return KEY_NEEDED;
  const message = await errorMessage(response);
  return message ? `${response.status}: ${message}` : `HTTP ${response.status}`;
}

function streamFields(prompt) {
  const fields = { prompt };
  if (!ui.format.disabled && ui.format.value) fields.format = ui.format.value;
  if (ui.model.value && !ui.model.disabled) fields.model = ui.model.value;
  if (ui.buffer.value && !ui.buffer.disabled) fields.buffer = ui.buffer.value;
  return fields;
}

// EventSource: the browser reconnects by itself with Last-Event-ID and the server resumes the same
// stream; events it replays that we already have are dropped by their seq. With an API key the URL
// holds a short-lived ticket, which the browser would reuse: the page reconnects itself instead, with
// a fresh ticket and ?last_event_id=.
function viaEventSource(run) {
  const fields = streamFields(run.prompt);
  let opened = false;
  let failures = 0;
  run.cancel = sseCancel(run);

  async function connect() {
    const url = new URL("v1/stream", document.baseURI);
    for (const [name, value] of Object.entries(fields)) url.searchParams.set(name, value);
    if (run.lastId) url.searchParams.set("last_event_id", run.lastId);
    try {
      await withTicket(url);
    } catch (err) {
      run.finish("error", err.message);
      return;
    }
    if (run.done) return;
    const source = new EventSource(url);
    run.close = () => source.close();
    source.addEventListener("open", () => {
      if (opened && !run.done) setStatus("Resumed.");
      opened = true;
      failures = 0;
    });
    for (const name of EVENT_NAMES.filter((n) => n !== "error")) {
      source.addEventListener(name, (event) => onEvent(run, name, event.data, event.lastEventId));
    }
    // "error" is both the server's error event (a MessageEvent with data) and a connection failure.
    source.addEventListener("error", (event) => {
      if (typeof event.data === "string") {
        onEvent(run, "error", event.data, event.lastEventId);
      } else if (run.done) {
        source.close();
      } else if (source.readyState === EventSource.CONNECTING) {
        run.reconnecting();
        if (!url.searchParams.has("ticket")) return; // the browser retries by itself
        source.close();
        failures += 1;
        if (failures > MAX_RECONNECTS) {
          run.finish("error", "The connection was lost and the stream could not be resumed.");
        } else {
          setTimeout(() => { if (!run.done) connect(); }, RECONNECT_MS);
        }
      } else {
        run.finish("error", opened
          ? "The connection closed before the end of the answer."
          : "The server refused the request (try the fetch transport to see why).");
      }
    });
  }

  connect();
}

/** A minimal SSE parser (the WHATWG rules): feed it text, it calls ``onEvent(name, data, id)``. */
class SSEParser {
  constructor(onEvent, onRetry) {
    this.onEvent = onEvent;
    this.onRetry = onRetry;
    this.buffer = "";
    this.reset();
  }
  reset() { this.name = ""; this.data = []; this.id = null; }
  push(chunk) {
    let text = this.buffer + chunk;
    // A trailing "\r" may be the first half of "\r\n": keep it until the next chunk.
    const held = text.endsWith("\r") ? "\r" : "";
    if (held) text = text.slice(0, -1);
    const lines = text.split(/\r\n|\r|\n/);
    this.buffer = lines.pop() + held; // the last piece is an incomplete line
    for (const line of lines) this.line(line);
  }
  line(line) {
    if (line === "") {
      if (this.data.length) this.onEvent(this.name || "message", this.data.join("\n"), this.id);
      this.reset();
      return;
    }
    if (line.startsWith(":")) return; // comment (keep-alive ping)
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") this.name = value;
    else if (field === "data") this.data.push(value);
    else if (field === "id" && !value.includes("\0")) this.id = value;
    else if (field === "retry" && /^\d+$/.test(value)) this.onRetry(parseInt(value, 10));
  }
}

// fetch + ReadableStream: POST the prompt; after a drop, GET /v1/streams/{id} with Last-Event-ID.
async function viaFetch(run) {
  const abort = new AbortController();
  let retryMs = 1000;
  run.close = () => abort.abort();
  run.cancel = sseCancel(run);
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  const parser = () => new SSEParser(
    (name, data, id) => onEvent(run, name, data, id),
    (ms) => { retryMs = ms; },
  );
  let response;
  try {
    response = await call("v1/stream", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
      body: JSON.stringify(streamFields(run.prompt)),
      signal: abort.signal,
    });
  } catch (err) {
    run.finish("error", `Could not connect: ${err.message}`);
    return;
  }
  let failures = 0;
  for (;;) {
    if (response) {
      if (response.status === 204) { run.finish("stop", "The stream had already ended."); return; }
      if (!response.ok) { run.finish("error", await errorText(response)); return; }
      run.streamId = run.streamId || response.headers.get("X-Stream-ID");
      if (run.reconnects) setStatus("Resumed.");
      try {
        await readBody(response, parser(), () => { failures = 0; });
      } catch {
        if (abort.signal.aborted) return;
      }
    }
    if (run.done || abort.signal.aborted) return;
    if (!run.streamId || failures >= MAX_RECONNECTS) {
      run.finish("error", "The connection was lost and the stream could not be resumed.");
      return;
    }
    failures += 1;
    run.reconnecting();
    await sleep(retryMs);
    if (run.done || abort.signal.aborted) return;
    try {
      response = await call(`v1/streams/${encodeURIComponent(run.streamId)}`, {
        headers: run.lastId ? { "Last-Event-ID": run.lastId, Accept: "text/event-stream" } : {},
        signal: abort.signal,
      });
    } catch {
      response = null;
      if (abort.signal.aborted) return;
    }
  }
}

async function readBody(response, parser, onData) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) { parser.push(decoder.decode()); return; }
    onData();
    parser.push(decoder.decode(value, { stream: true }));
  }
}

// ---------------------------------------------------------------- WebSocket modes

function socketURL(path) {
  const url = new URL(path, document.baseURI);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url;
}

// A WebSocket that drops mid-answer reconnects and sends {"type": "resume", "received": n} (with
// the stream_id from "start" on /ws/stream; a conversation resumes its reply in progress): the
// server sends its messages from the n-th on, so nothing is missed or repeated.
function viaSocket(run, path, first) {
  let socket = null;
  let failures = 0;
  let sent = false; // the prompt reached an open socket
  let resuming = false; // a resume was sent and nothing has answered it yet
  let started = false; // a token or "start" arrived: an error now belongs to the stream
  const chat = path !== "ws/stream";
  run.close = () => { if (socket && socket.readyState <= WebSocket.OPEN) socket.close(1000); };
  run.cancel = () => {
    setStatus("Stopping…");
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ type: "cancel" }));
    else run.stopRequested = true;
  };

  function onMessage(event) {
    if (run.done) return;
    wire(String(event.data));
    let message;
    try { message = JSON.parse(event.data); } catch { return; }
    failures = 0;
    if (resuming && message.type === "error" && RESUME_REFUSED.has(message.code)) {
      run.finish("error", `The answer could not be resumed: ${message.error}`);
      // A conversation's stored history has what the server kept of the reply: show it.
      if (chat) loadHistory();
      return;
    }
    resuming = false;
    run.received += 1;
    if (message.type === "start") {
      started = true;
      run.streamId = message.stream_id;
    } else if (message.type === "token") {
      started = true;
      run.token(message.content);
    } else if (message.type === "error") {
      run.error = message.error;
      // A refused prompt gets only the error; a failing stream sends "done" after it (a chat
      // stream has no "start" to tell the two apart, so give its "done" a moment).
      if (!started) setTimeout(() => run.finish("error", run.error), chat ? 1000 : 0);
    } else if (message.type === "done") {
      const stopped = message.cancelled || message.status === "cancelled";
      const outcome = run.error || message.status === "failed" ? "error" : stopped ? "cancelled" : "stop";
      run.finish(outcome, run.error);
    }
  }

  async function connect(hello) {
    let url;
    try {
      url = await withTicket(socketURL(path));
    } catch (err) {
      run.finish("error", err.message);
      return;
    }
    if (run.done) return;
    socket = new WebSocket(url);
    socket.addEventListener("open", () => {
      if (run.reconnects) setStatus("Resumed.");
      socket.send(JSON.stringify(hello));
      sent = true;
      resuming = hello.type === "resume";
      if (run.stopRequested) socket.send(JSON.stringify({ type: "cancel" }));
    });
    socket.addEventListener("message", onMessage);
    socket.addEventListener("close", (event) => {
      if (run.done) return;
      // /ws/stream names the stream in "start"; a conversation resumes its reply in progress.
      const canResume = Boolean(run.streamId) || (chat && sent);
      if (!canResume || failures >= MAX_RECONNECTS) {
        run.finish("error", canResume
          ? "The connection was lost and the answer could not be resumed."
          : `The connection closed (code ${event.code}) before the answer started.`);
        return;
      }
      failures += 1;
      run.reconnecting();
      const resume = { type: "resume", received: run.received };
      if (run.streamId) resume.stream_id = run.streamId;
      setTimeout(() => { if (!run.done) connect(resume); }, RECONNECT_MS);
    });
  }

  connect(first);
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

function send() {
  const prompt = ui.prompt.value;
  if (!prompt.trim() || current) return;
  if (keyNeeded && !apiKey()) {
    setStatus(KEY_NEEDED);
    ui.key.focus();
    return;
  }
  const mode = ui.transport.value;
  ui.prompt.value = "";
  const run = new Run(prompt);
  current = run;
  if (!ui.format.disabled) run.format = ui.format.value;
  if (mode === "eventsource") viaEventSource(run);
  else if (mode === "fetch") viaFetch(run);
  else if (mode === "websocket") {
    const fields = streamFields(prompt);
    delete fields.format; // the route's WebSocket shape is what this page reads
    viaSocket(run, "ws/stream", fields);
  } else {
    const first = { message: prompt };
    if (ui.model.value && !ui.model.disabled) first.model = ui.model.value;
    viaSocket(run, `ws/chat/${encodeURIComponent(conversationId())}`, first);
  }
}

async function fetchJSON(path) {
  const response = await call(path);
  if (!response.ok) throw Object.assign(new Error(await errorText(response)), { status: response.status });
  return response.json();
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
      const readable = Object.hasOwn(SHAPES, name);
      const option = new Option(readable ? name : `${name} (not read by this page)`, name);
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
