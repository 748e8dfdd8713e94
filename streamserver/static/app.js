// streamserver demo page: one chat view over four transports, and the entry point (index.html loads
// it with <script type="module">). It holds the UI: the options from the server, the key field's
// buttons, conversations, and the controls; each prompt starts a Run (run.js) on a transport.
//
// No dependencies, no build step: the modules import each other by relative URLs, so the page also
// works when the app is mounted under a prefix. Safety: model text only ever reaches the page as
// text nodes (markdown.js builds it), never through innerHTML, so it cannot inject markup.

import {
  KEY_NEEDED, apiKey, call, errorText, fetchJSON, keyNeeded, showKeyForm, storeKey,
} from "./api.js";
import { SHAPES } from "./formats.js";
import { applyStructured, initStructured, jsonMode, structuredFields } from "./modes.js";
import { setStatus, ui } from "./page.js";
import { Run, addMessage, addNote, clearLog } from "./run.js";
import { viaEventSource, viaFetch, viaSocket } from "./transports.js";

const STORAGE = { transport: "streamserver.transport", conversation: "streamserver.conversation" };
// The route each transport uses, as named in GET /v1/stream/options.
const ROUTES = {
  eventsource: "/v1/stream", fetch: "/v1/stream", websocket: "/ws/stream",
  conversation: "/ws/chat/{conversation_id}",
};

let options = { buffers: [], formats: [], models: {}, routes: {} };
let current = null; // the stream in progress, a Run

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
  run.onEnd = () => { if (current === run) current = null; };
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
