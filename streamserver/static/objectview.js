// streamserver demo page: the JSON mode's schemas and its view of an object stream. The server
// parses the growing JSON text (format=object) and sends the value so far in `object` events, then
// `object_end` with the whole value and the schema's verdict; this module shows them.
//
// Separate because it renders model values: every key and value becomes a text node (el sets
// textContent), never markup. The view is drawn again from the newest value each time, so it only
// ever shows one value: an event seen twice cannot double anything.

import { el } from "./markdown.js";

/** Schemas to start from (the textarea holds the one in use, editable). */
export const SCHEMA_PRESETS = {
  recipe: {
    label: "Recipe",
    prompt: "A recipe for a quick weeknight pasta",
    schema: {
      type: "object",
      properties: {
        title: { type: "string" },
        servings: { type: "integer", minimum: 1, maximum: 8 },
        vegetarian: { type: "boolean" },
        ingredients: {
          type: "array", minItems: 3, maxItems: 6,
          items: {
            type: "object",
            properties: {
              name: { type: "string" },
              quantity: { type: "number", minimum: 1, maximum: 500 },
              unit: { type: "string", enum: ["g", "ml", "pieces", "tbsp"] },
            },
            required: ["name", "quantity", "unit"],
          },
        },
      },
      required: ["title", "servings", "vegetarian", "ingredients"],
    },
  },
  products: {
    label: "Search results (a table)",
    prompt: "Lamps for a reading corner",
    schema: {
      type: "object",
      properties: {
        query: { type: "string" },
        results: {
          type: "array", minItems: 3, maxItems: 5,
          items: {
            type: "object",
            properties: {
              name: { type: "string" },
              price: { type: "number", minimum: 5, maximum: 200 },
              in_stock: { type: "boolean" },
              rating: { type: "integer", minimum: 1, maximum: 5 },
            },
            required: ["name", "price", "in_stock", "rating"],
          },
        },
      },
      required: ["query", "results"],
    },
  },
  contact: {
    label: "Contact card",
    prompt: "A contact card for the support desk",
    schema: {
      type: "object",
      properties: {
        name: { type: "string" },
        email: { type: "string", format: "email" },
        city: { type: "string" },
        tags: { type: "array", items: { type: "string" }, minItems: 1, maxItems: 3 },
        status: { type: "string", enum: ["active", "away", "offline"] },
      },
      required: ["name", "email", "city", "tags", "status"],
    },
  },
  any: { label: "Any JSON (json_object, no schema)", prompt: "Any JSON object", schema: null },
};

/** The request's ``response_format`` for the schema text (``""``: any JSON); throws if not JSON. */
export function responseFormat(schemaText, name) {
  if (!schemaText.trim()) return { type: "json_object" };
  let schema;
  try {
    schema = JSON.parse(schemaText);
  } catch (err) {
    throw new Error(`The schema is not JSON: ${err.message}`);
  }
  if (!schema || typeof schema !== "object" || Array.isArray(schema)) {
    throw new Error("The schema must be a JSON object.");
  }
  return { type: "json_schema", json_schema: { name: name || "page_schema", schema, strict: false } };
}

/** The sentence ``object_end`` or an ``invalid_json`` error stands for. */
export function verdictText(end) {
  if (end.invalidJson) {
    const at = end.invalidJson.offset === undefined ? "" : ` at offset ${end.invalidJson.offset}`;
    return `invalid_json${at}: ${end.invalidJson.message}`;
  }
  if (end.valid) return "valid";
  const first = (end.errors || [])[0];
  return first ? `invalid: ${first.path} ${first.message}` : "invalid";
}

/** The view of one object stream: a Tree / Table switch, the value, and the verdict. */
export class ObjectView {
  constructor() {
    this.value = undefined;
    this.end = null; // object_end's payload, or {invalidJson} after an invalid_json error
    this.mode = "tree";
    this.root = el("section", "object-view");
    this.root.setAttribute("aria-label", "Object");
    const bar = el("div", "object-bar");
    this.buttons = {};
    for (const [mode, label] of [["tree", "Tree"], ["table", "Table"]]) {
      const button = el("button", "link", label);
      button.type = "button";
      button.dataset.mode = mode;
      button.setAttribute("aria-pressed", String(mode === this.mode));
      button.addEventListener("click", () => { this.mode = mode; this.paint(); });
      this.buttons[mode] = button;
      bar.append(button);
    }
    this.verdict = el("span", "verdict muted", "parsing…");
    this.verdict.setAttribute("role", "status");
    bar.append(this.verdict);
    this.content = el("div", "object-content");
    this.root.append(bar, this.content);
  }

  /** The value so far (an ``object`` event): replaces, never adds to, what is shown. */
  update(value) { this.value = value; }

  /** The final verdict: ``object_end``'s payload, or ``{invalidJson}``. */
  finish(end) {
    this.end = end;
    if (end.object !== undefined) this.value = end.object;
  }

  paint() {
    for (const [mode, button] of Object.entries(this.buttons)) {
      button.setAttribute("aria-pressed", String(mode === this.mode));
    }
    const rows = this.mode === "table" ? tableRows(this.value) : null;
    if (this.value === undefined) this.content.replaceChildren(el("p", "muted", "No value yet."));
    else if (this.mode === "table" && rows) this.content.replaceChildren(table(rows));
    else if (this.mode === "table") {
      this.content.replaceChildren(el("p", "muted", "No list of objects to tabulate."), tree(this.value));
    } else this.content.replaceChildren(tree(this.value));
    if (this.end) {
      const text = verdictText(this.end);
      this.verdict.textContent = text;
      this.verdict.className = `verdict ${text === "valid" ? "ok" : "bad"}`;
    }
  }
}

const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);

/** A value as nested lists: ``key: value`` per property, one item per array element. */
function tree(value) {
  if (!isObject(value) && !Array.isArray(value)) {
    const list = el("ul", "tree");
    list.append(leafItem(null, value));
    return list;
  }
  return branch(value);
}

function branch(value) {
  const list = el("ul", "tree");
  const entries = Array.isArray(value) ? value.map((v, i) => [i, v]) : Object.entries(value);
  if (!entries.length) list.append(el("li", "muted", Array.isArray(value) ? "[ ]" : "{ }"));
  for (const [key, child] of entries) {
    if (isObject(child) || Array.isArray(child)) {
      const item = el("li");
      item.append(el("span", Array.isArray(value) ? "index" : "key", `${key}`));
      item.append(el("span", "muted", Array.isArray(child) ? ` [${child.length}]` : ""));
      item.append(branch(child));
      list.append(item);
    } else {
      list.append(leafItem(Array.isArray(value) ? null : key, child));
    }
  }
  return list;
}

function leafItem(key, value) {
  const item = el("li");
  if (key !== null) item.append(el("span", "key", key), document.createTextNode(": "));
  item.append(el("span", `val ${value === null ? "null" : typeof value}`, scalar(value)));
  return item;
}

const scalar = (v) => (typeof v === "string" ? v : JSON.stringify(v));

/** The rows to tabulate: the value itself or its first property, when a list of objects. */
function tableRows(value) {
  const listOfObjects = (v) => Array.isArray(v) && v.length > 0 && v.every(isObject);
  if (listOfObjects(value)) return value;
  if (isObject(value)) return Object.values(value).find(listOfObjects) || null;
  return null;
}

function table(rows) {
  const columns = [];
  for (const row of rows) for (const key of Object.keys(row)) if (!columns.includes(key)) columns.push(key);
  const node = el("table", "object-table");
  const head = el("tr");
  for (const column of columns) head.append(el("th", "", column));
  node.append(el("thead"), el("tbody"));
  node.tHead.append(head);
  for (const row of rows) {
    const tr = el("tr");
    for (const column of columns) {
      const v = row[column];
      tr.append(el("td", "", v === undefined ? "" : isObject(v) || Array.isArray(v) ? JSON.stringify(v) : scalar(v)));
    }
    node.tBodies[0].append(tr);
  }
  return node;
}
