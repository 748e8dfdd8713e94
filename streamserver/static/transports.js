// streamserver demo page: the four ways an answer reaches the page. EventSource (GET /v1/stream),
// fetch + ReadableStream (POST /v1/stream), and a WebSocket (/ws/stream, or a conversation on
// /ws/chat/{id}); each resumes the same stream after a dropped connection, with no gap and no
// duplicate.
//
// Separate because a transport only moves events: it feeds a Run (app.js) through its methods
// (token, part, fresh, reconnecting, finish) and never touches the chat log itself. A turn with
// tool calls is several streams (legs): each transport call serves one leg, and stops reading once
// the run has moved on to the next (``run.leg``) or ended.

import { call, cancelById, errorText, withTicket } from "./api.js";
import { EVENT_NAMES, SHAPES } from "./formats.js";
import { setStatus, wire } from "./page.js";

const MAX_RECONNECTS = 5;
// What a server answers a resume it cannot serve with (any other error belongs to the stream).
const RESUME_REFUSED = new Set(["stream_not_found", "invalid_resume", "events_expired", "stream_finished"]);
const RECONNECT_MS = 1000; // EventSource does not tell the page the server's retry: value

// ---------------------------------------------------------------- SSE modes

/** A function true once ``run`` has ended or moved on from the leg that is current now. */
const overFor = (run) => {
  const leg = run.leg;
  return () => run.done || run.leg !== leg;
};

/** Apply one SSE event of the run's format; replays (seq already seen) are dropped. */
function onEvent(run, name, data, id) {
  if (run.done || !run.fresh(id)) return;
  wire(`${name}  id=${id}  ${data}`);
  const meaning = SHAPES[run.format](name, data);
  if (!meaning) return;
  if (meaning.text) run.token(meaning.text);
  run.part(meaning);
  if (meaning.error) run.failed(meaning);
  if (meaning.aborted) run.aborted = true;
  if (meaning.end) {
    const outcome = run.error ? "error" : run.aborted ? "cancelled" : meaning.end;
    run.finish(outcome, run.error);
  }
}

/** Stop for an SSE stream: DELETE it by id, or, before its first event names it, once it does. */
function sseCancel(run) {
  return () => {
    setStatus("Stopping…");
    if (run.streamId) cancelById(run.streamId);
    else run.stopRequested = true;
  };
}

// EventSource: the browser reconnects by itself with Last-Event-ID and the server resumes the same
// stream; events it replays that we already have are dropped by their seq. With an API key the URL
// holds a short-lived ticket, which the browser would reuse: the page reconnects itself instead, with
// a fresh ticket and ?last_event_id=. ``fields``: the request's fields (prompt, model, …).
export function viaEventSource(run, fields) {
  let opened = false;
  let failures = 0;
  const over = overFor(run);
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
    if (over()) return;
    const source = new EventSource(url);
    run.close = () => source.close();
    source.addEventListener("open", () => {
      if (opened && !over()) setStatus("Resumed.");
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
      } else if (over()) {
        source.close();
      } else if (source.readyState === EventSource.CONNECTING) {
        run.reconnecting();
        if (!url.searchParams.has("ticket")) return; // the browser retries by itself
        source.close();
        failures += 1;
        if (failures > MAX_RECONNECTS) {
          run.finish("error", "The connection was lost and the stream could not be resumed.");
        } else {
          setTimeout(() => { if (!over()) connect(); }, RECONNECT_MS);
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
export async function viaFetch(run, fields) {
  const abort = new AbortController();
  const over = overFor(run);
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
      body: JSON.stringify(fields),
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
    if (over() || abort.signal.aborted) return;
    if (!run.streamId || failures >= MAX_RECONNECTS) {
      run.finish("error", "The connection was lost and the stream could not be resumed.");
      return;
    }
    failures += 1;
    run.reconnecting();
    await sleep(retryMs);
    if (over() || abort.signal.aborted) return;
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

// The structured messages of the WebSocket shapes, as the Run reads them (formats.js for SSE).
const PART_MESSAGES = {
  reasoning: (m) => ({ reasoning: m.content }),
  tool_call_start: (m) => ({ toolStart: m }),
  tool_call_delta: (m) => ({ toolDelta: m }),
  tool_call: (m) => ({ toolCall: m }),
};

function socketURL(path) {
  const url = new URL(path, document.baseURI);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url;
}

// A WebSocket that drops mid-answer reconnects and sends {"type": "resume", "received": n} (with
// the stream_id from "start" on /ws/stream; a conversation resumes its reply in progress): the
// server sends its messages from the n-th on, so nothing is missed or repeated. ``first``: the
// route's first message; ``onResumeRefused`` (optional) runs after a resume the server refused.
export function viaSocket(run, path, first, onResumeRefused) {
  let socket = null;
  let failures = 0;
  let sent = false; // the prompt reached an open socket
  let resuming = false; // a resume was sent and nothing has answered it yet
  let started = false; // a token or "start" arrived: an error now belongs to the stream
  const chat = path !== "ws/stream";
  const over = overFor(run);
  run.close = () => { if (socket && socket.readyState <= WebSocket.OPEN) socket.close(1000); };
  run.cancel = () => {
    setStatus("Stopping…");
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ type: "cancel" }));
    else run.stopRequested = true;
  };

  function onMessage(event) {
    if (over()) return;
    wire(String(event.data));
    let message;
    try { message = JSON.parse(event.data); } catch { return; }
    failures = 0;
    if (resuming && message.type === "error" && RESUME_REFUSED.has(message.code)) {
      run.finish("error", `The answer could not be resumed: ${message.error}`);
      if (onResumeRefused) onResumeRefused();
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
    } else if (PART_MESSAGES[message.type]) {
      started = true;
      run.part(PART_MESSAGES[message.type](message));
    } else if (message.type === "error") {
      run.error = message.error;
      // A refused prompt gets only the error; a failing stream sends "done" after it (a chat
      // stream has no "start" to tell the two apart, so give its "done" a moment).
      if (!started) setTimeout(() => run.finish("error", run.error), chat ? 1000 : 0);
    } else if (message.type === "done") {
      const stopped = message.cancelled || message.status === "cancelled";
      const outcome = run.error || message.status === "failed" ? "error" : stopped ? "cancelled" : "stop";
      for (const call of message.tool_calls || []) run.part({ toolCall: call });
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
    if (over()) return;
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
      if (over()) return;
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
      setTimeout(() => { if (!over()) connect(resume); }, RECONNECT_MS);
    });
  }

  connect(first);
}
