// streamserver demo page: the chat log and one answer in progress (Run). A Run is what the
// transports feed (token, part, fresh, reconnecting, finish): it keeps the answer's text, its
// parts (the Thinking block, tool cards, the object view of the JSON mode) and its numbers, and
// paints them once per frame. A turn whose model calls the page's tools is several streams (legs):
// when a leg ends with whole calls, the Run runs the tools and sends the next leg (``next``).
//
// Separate from app.js, which owns the controls and starts a Run for each prompt.

import { cancelById } from "./api.js";
import { el, renderMarkdown } from "./markdown.js";
import { ObjectView } from "./objectview.js";
import { setStatus, ui } from "./page.js";
import { Parts } from "./parts.js";
import { runTool } from "./tools.js";

const MAX_LEGS = 4; // a turn answers tool calls at most this many times before it stops

// ---------------------------------------------------------------- the chat log

export function addMessage(role, text) {
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

export function addNote(article, text, kind) {
  const note = el("p", `note-line ${kind || ""}`, text);
  article.append(note);
}

export function clearLog() {
  ui.log.querySelectorAll(".msg").forEach((node) => node.remove());
  ui.empty.hidden = false;
}

// ---------------------------------------------------------------- one stream in progress

export class Run {
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
    this.onEnd = () => {}; // the app forgets the run
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
    this.onEnd();
  }
}
