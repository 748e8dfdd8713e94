// streamserver demo page: the controls of the structured modes. The page's tools (offered to the
// model, answered by the page) and the output: text, or the JSON mode (format=object with a
// response_format built from the schema field, over fetch: POST /v1/stream, since a query string
// cannot carry JSON).
//
// Separate because app.js owns the stream in progress and the other controls; this module only
// turns these controls into request fields and keeps them enabled where the transport can use them.

import { SCHEMA_PRESETS, responseFormat } from "./objectview.js";
import { ui } from "./page.js";
import { toolDeclarations } from "./tools.js";

// The transports that can carry the page's tools: a JSON request body or message. A conversation
// would answer them with tool_result messages; the page sends its results in a new request instead.
const TOOL_TRANSPORTS = new Set(["fetch", "websocket"]);

/** The names of the page tools that are ticked and usable in this transport. */
export function chosenTools() {
  if (!TOOL_TRANSPORTS.has(ui.transport.value)) return [];
  return ui.toolBoxes.filter((box) => box.checked && !box.disabled).map((box) => box.value);
}

/** The JSON mode is on. */
export const jsonMode = () => ui.output.value === "json";

/** The structured fields of a request: ``tools``, or ``format`` + ``response_format`` (throws
 * with the sentence to show when the schema is not JSON). */
export function structuredFields() {
  const fields = {};
  const tools = chosenTools();
  if (tools.length) fields.tools = toolDeclarations(tools);
  if (jsonMode()) {
    fields.format = "object";
    fields.response_format = responseFormat(ui.schema.value, ui.schemaPreset.value);
  }
  return fields;
}

/** Enable what the transport can use, and say why the rest is off. */
export function applyStructured() {
  const mode = ui.transport.value;
  const toolsOk = TOOL_TRANSPORTS.has(mode);
  for (const box of ui.toolBoxes) box.disabled = !toolsOk;
  ui.toolsNote.textContent = toolsOk
    ? "Offered with each request; the page runs a call and sends its result back (the model sim-tools calls them)."
    : mode === "eventsource"
      ? "A GET query cannot carry tools: use the fetch or WebSocket transport."
      : "Conversations keep their own tools: the page answers tools in the fetch and WebSocket modes.";
  ui.jsonField.hidden = !jsonMode();
  ui.prompt.placeholder = jsonMode() ? SCHEMA_PRESETS[ui.schemaPreset.value].prompt : "Ask something…";
  if (jsonMode()) {
    ui.format.disabled = true;
    ui.formatNote.hidden = false;
    ui.formatNote.textContent = "The JSON mode streams format=object.";
  }
}

/** Switching to the JSON mode moves to the fetch transport (it POSTs the schema). */
export function outputChanged() {
  if (jsonMode() && ui.transport.value !== "fetch") {
    ui.transport.value = "fetch";
    ui.transport.dispatchEvent(new Event("change"));
  }
  if (jsonMode() && !ui.schema.value.trim() && ui.schemaPreset.value !== "any") pickPreset();
}

/** Fill the schema field (and the prompt's placeholder) from the chosen preset. */
export function pickPreset() {
  const preset = SCHEMA_PRESETS[ui.schemaPreset.value];
  ui.schema.value = preset.schema ? JSON.stringify(preset.schema, null, 2) : "";
  if (jsonMode()) ui.prompt.placeholder = preset.prompt;
}

/** Picking sim-tools ticks the calculator when no page tool is ticked. */
export function modelChanged() {
  if (ui.model.value === "sim-tools" && !ui.toolBoxes.some((box) => box.checked)) {
    ui.toolBoxes[0].checked = true;
  }
}

/** Fill the preset selector and wire the controls. */
export function initStructured() {
  for (const [name, preset] of Object.entries(SCHEMA_PRESETS)) {
    ui.schemaPreset.append(new Option(preset.label, name));
  }
  pickPreset();
  ui.schemaPreset.addEventListener("change", pickPreset);
  ui.output.addEventListener("change", () => { outputChanged(); applyStructured(); });
  ui.model.addEventListener("change", modelChanged);
}
