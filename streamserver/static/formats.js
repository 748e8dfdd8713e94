// streamserver demo page: the SSE formats the page can read. The server streams SSE in several wire
// shapes (the built-in formatters); the SSE transports read whichever one the user picked.
//
// Separate because the transports use it to read events and the UI to know which formats to
// offer: a plugin's format, missing here, is listed but not offered.

// How the page reads each built-in format's SSE events: a function of (event name, data) that
// returns what the event means: {text} to append, {error} (with its {code}, {offset}),
// {end: outcome} (with the {toolCalls} the stream made), {aborted}, a structured part
// ({reasoning}, {toolStart}, {toolDelta}, {toolCall}), an object stream's {object} and
// {objectEnd}, or nothing.
const j = (data) => { try { return JSON.parse(data); } catch { return {}; } };
const endOf = (cancelled) => ({ end: cancelled ? "cancelled" : "stop" });

/** The reasoning and tool-call events of the shapes that carry them (production, events, chat). */
function part(name, p) {
  if (name === "reasoning") return { reasoning: p.content };
  if (name === "tool_call_start") return { toolStart: p };
  if (name === "tool_call_delta") return { toolDelta: p };
  if (name === "tool_call") return { toolCall: p };
  return null;
}

export const SHAPES = {
  production(name, data) {
    const p = j(data);
    if (name === "token") return { text: p.content };
    if (name === "error") return { error: p.error, code: p.code, offset: p.offset };
    if (name === "stream_end") return { end: p.finish_reason, toolCalls: p.tool_calls || [] };
    // format=object (the JSON mode): the value so far, then the whole value and its verdict.
    if (name === "object") return { object: p.object };
    if (name === "object_end") return { objectEnd: p };
    return part(name, p);
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
    if (name === "done") return { ...endOf(p.cancelled), toolCalls: p.tool_calls || [] };
    return part(name, p);
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
  anthropic(name, data) {
    const p = j(data);
    if (name === "content_block_delta" && p.delta && p.delta.type === "text_delta") return { text: p.delta.text };
    if (name === "error") return { error: p.error && p.error.message };
    if (name === "message_stop") return endOf(false);
    return null;
  },
  text(name, data) {
    if (name === "done") return endOf(data === "cancelled");
    if (name === "error") return { error: data };
    return name === "message" ? { text: data } : null;
  },
};
SHAPES.chat = SHAPES.events;
SHAPES.object = SHAPES.production; // the production shape plus object and object_end

/** Every SSE event name a built-in format sends (EventSource needs a listener per name). */
export const EVENT_NAMES = ["message", "token", "error", "done", "complete", "stream_start", "stream_end",
  "start", "reasoning", "tool_call_start", "tool_call_delta", "tool_call", "object", "object_end",
  "content_block_delta", "message_stop"];
