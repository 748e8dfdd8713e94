// streamserver demo page: the page's elements, looked up once, and the two lines every part writes
// to: the status line and the wire log.
//
// Separate so that the UI (app.js), the server calls (api.js) and the transports (transports.js)
// share them without importing each other: the modules depend on this one, never in a circle.

const $ = (id) => document.getElementById(id);

/** The page's elements by what they are (index.html gives their ids). */
export const ui = {
  transport: $("transport"), model: $("model"), buffer: $("buffer"), bufferNote: $("buffer-note"),
  format: $("format"), formatNote: $("format-note"), log: $("log"), empty: $("empty"), status: $("status"), form: $("composer"),
  prompt: $("prompt"), send: $("send"), stop: $("stop"), wire: $("wire"),
  conversationBar: $("conversation-bar"), conversationId: $("conversation-id"),
  newConversation: $("new-conversation"),
  ttft: $("stat-ttft"), rate: $("stat-rate"), tokens: $("stat-tokens"), reconnects: $("stat-reconnects"),
  output: $("output"), jsonField: $("json-field"), schemaPreset: $("schema-preset"), schema: $("schema"),
  toolBoxes: [$("tool-calculator"), $("tool-clock")], toolsNote: $("tools-note"),
  keyForm: $("key-form"), key: $("api-key"), keyError: $("api-key-error"), forgetKey: $("forget-key"),
};

const WIRE_LINES = 400;

/** Show ``text`` in the status line (announced: role="status"). */
export function setStatus(text) { ui.status.textContent = text; }

/** Append ``line`` to the wire log, which keeps the last WIRE_LINES lines of the current stream. */
export function wire(line) {
  const lines = ui.wire.textContent ? ui.wire.textContent.split("\n") : [];
  lines.push(line);
  ui.wire.textContent = lines.slice(-WIRE_LINES).join("\n");
}
