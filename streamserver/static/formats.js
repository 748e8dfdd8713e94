// streamserver demo page: the SSE formats the page can read. The server streams SSE in several wire
// shapes (the built-in formatters); the SSE transports read whichever one the user picked.
//
// Separate because the transports use it to read events and the UI to know which formats to
// offer: a plugin's format, missing here, is listed but not offered.

// How the page reads each built-in format's SSE events: a function of (event name, data) that
// returns what the event means: {text} to append, {error}, {end: outcome}, {aborted}, or nothing.
const j = (data) => { try { return JSON.parse(data); } catch { return {}; } };
const endOf = (cancelled) => ({ end: cancelled ? "cancelled" : "stop" });
export const SHAPES = {
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

/** Every SSE event name a built-in format sends (EventSource needs a listener per name). */
export const EVENT_NAMES = ["message", "token", "error", "done", "complete", "stream_start", "stream_end", "start"];
