// streamserver demo page: the structured parts of an answer beside its text. The model's reasoning
// in a "Thinking" block that streams while the model thinks and folds when the answer starts, and a
// card per tool call: its name, its arguments as they form, then the result the page's tool gave.
//
// Separate because a Run (app.js) only forwards the parts; this module owns how they look. Model
// text and arguments only ever become text nodes (el sets textContent), never markup. A transport
// drops replayed events before they get here, so every part is added once.

import { el } from "./markdown.js";

/** The "Thinking" block of one answer: a <details> open while reasoning streams. */
export class Thinking {
  constructor(article, before) {
    this.text = "";
    this.t0 = performance.now();
    this.folded = false;
    this.root = el("details", "thinking");
    this.root.open = true;
    this.summary = el("summary", "", "Thinking…");
    this.body = el("div", "thinking-text");
    this.root.append(this.summary, this.body);
    article.insertBefore(this.root, before);
  }

  add(text) { this.text += text; }

  /** The answer's text (or a tool call) has started: fold the block, say how long it took. */
  fold() {
    if (this.folded) return;
    this.folded = true;
    this.root.open = false;
    const seconds = ((performance.now() - this.t0) / 1000).toFixed(1);
    this.summary.textContent = `Thought for ${seconds} s`;
  }

  paint() { if (this.body.textContent !== this.text) this.body.textContent = this.text; }
}

/** The card of one tool call: name, arguments (live), then the page tool's result. */
export class ToolCard {
  constructor(article, before, call) {
    this.id = call.id || "";
    this.name = call.name || "";
    this.arguments = "";
    this.result = null;
    this.root = el("section", "tool-card");
    this.root.setAttribute("aria-label", `Tool call ${this.name}`);
    const head = el("header", "tool-head");
    head.append(el("span", "tool-kind", "Tool call"), el("code", "tool-name", this.name));
    this.state = el("span", "tool-state muted", "writing arguments…");
    head.append(this.state);
    this.args = el("pre", "tool-args");
    this.out = el("pre", "tool-result");
    this.out.hidden = true;
    this.root.append(head, this.args, this.out);
    article.insertBefore(this.root, before);
  }

  addArguments(fragment) { this.arguments += fragment; }

  /** The whole call (``tool_call``): its arguments as the server assembled them. */
  complete(call) {
    if (typeof call.arguments === "string") this.arguments = call.arguments;
    this.state.textContent = "called";
  }

  /** The page ran its tool: show what goes back to the model. */
  answered(result) {
    this.result = result;
    this.state.textContent = "answered by the page";
    this.root.classList.add("answered");
  }

  /** No page tool answered it (a tool the page does not have, or the mode sends no results). */
  unanswered(why) {
    this.state.textContent = why;
    this.root.classList.add("unanswered");
  }

  paint() {
    if (this.args.textContent !== this.arguments) this.args.textContent = this.arguments;
    if (this.result !== null) {
      this.out.hidden = false;
      if (this.out.textContent !== this.result) this.out.textContent = this.result;
    }
  }
}

/** Every part of one answer: its Thinking block and tool cards, placed before ``before``. */
export class Parts {
  constructor(article, before) {
    this.article = article;
    this.before = before;
    this.thinking = null;
    this.cards = new Map(); // "leg:index" -> ToolCard
    this.calls = []; // the current leg's whole calls, in index order
    this.leg = 0;
  }

  reasoning(text) {
    if (!this.thinking) this.thinking = new Thinking(this.article, this.before);
    this.thinking.add(text);
  }

  /** Text started (or a call did): reasoning is over. */
  answerStarted() { if (this.thinking) this.thinking.fold(); }

  card(index, call = {}) {
    const key = `${this.leg}:${index}`;
    if (!this.cards.has(key)) {
      this.answerStarted();
      this.cards.set(key, new ToolCard(this.article, this.before, call));
    }
    return this.cards.get(key);
  }

  toolStart(call) { this.card(call.index, call); }
  toolDelta(index, fragment) { this.card(index).addArguments(fragment); }

  toolCall(call) {
    const card = this.card(call.index, call);
    card.complete(call);
    if (!this.calls.some((c) => c.index === call.index)) this.calls.push({ ...call, arguments: card.arguments });
    this.calls.sort((a, b) => a.index - b.index);
  }

  /** The next leg of the turn (after the page answered this leg's calls). */
  nextLeg() {
    const calls = this.calls;
    this.calls = [];
    this.leg += 1;
    return calls;
  }

  cardFor(call, leg = this.leg) { return this.cards.get(`${leg}:${call.index}`); }

  paint() {
    if (this.thinking) this.thinking.paint();
    for (const card of this.cards.values()) card.paint();
  }
}
