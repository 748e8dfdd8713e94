// streamserver demo page: the tools the page itself provides to a model (sim-tools, or a real
// model behind the openai provider). Each has a JSON schema the request declares and a function
// that runs in the browser; its result goes back to the model as a tool result.
//
// Separate because it is the one part that acts on a model's arguments: they are parsed as JSON and
// read as data, never evaluated (the calculator parses arithmetic itself, eval is never used).

/** The page's tools, in the order the request offers them. */
export const PAGE_TOOLS = {
  calculator: {
    description: "Evaluate an arithmetic expression: numbers, + - * / % ^, parentheses.",
    parameters: {
      type: "object",
      properties: {
        expression: { type: "string", description: "the arithmetic, e.g. 12 * (3 + 4)" },
      },
      required: ["expression"],
    },
    run(args) {
      const expression = String(args.expression ?? "");
      const arithmetic = arithmeticIn(expression);
      if (!arithmetic) return { error: `no arithmetic in ${JSON.stringify(expression)}` };
      try {
        return { expression: arithmetic, result: evaluate(arithmetic) };
      } catch (err) {
        return { expression: arithmetic, error: err.message };
      }
    },
  },
  clock: {
    description: "The current local date and time of the user's browser.",
    parameters: { type: "object", properties: {} },
    run() {
      const now = new Date();
      return {
        iso: now.toISOString(),
        local: now.toLocaleString("en-GB", { dateStyle: "full", timeStyle: "long" }),
        time_zone: Intl.DateTimeFormat().resolvedOptions().timeZone,
      };
    },
  },
};

/** The ``tools`` field of a request offering the page tools ``names``. */
export function toolDeclarations(names) {
  return names.filter((name) => Object.hasOwn(PAGE_TOOLS, name)).map((name) => ({
    type: "function",
    function: { name, description: PAGE_TOOLS[name].description, parameters: PAGE_TOOLS[name].parameters },
  }));
}

/** Run the page tool a call names; the result is the tool message's content (JSON text). */
export function runTool(name, argumentsText) {
  const tool = Object.hasOwn(PAGE_TOOLS, name) ? PAGE_TOOLS[name] : null;
  if (!tool) return JSON.stringify({ error: `the page has no tool named ${JSON.stringify(name)}` });
  let args;
  try {
    args = argumentsText.trim() ? JSON.parse(argumentsText) : {};
  } catch (err) {
    return JSON.stringify({ error: `the arguments are not JSON: ${err.message}` });
  }
  if (!args || typeof args !== "object" || Array.isArray(args)) {
    return JSON.stringify({ error: "the arguments must be a JSON object" });
  }
  return JSON.stringify(tool.run(args));
}

// ---------------------------------------------------------------- a safe arithmetic evaluator

const ARITHMETIC = /[-+*/%^().\d\s]*\d[-+*/%^().\d\s]*/g;

/** The longest run of arithmetic in ``text`` ("What is 12 * (3 + 4)?" -> "12 * (3 + 4)"). */
export function arithmeticIn(text) {
  let best = "";
  for (const match of text.match(ARITHMETIC) || []) {
    const run = match.trim();
    if (run.length > best.length) best = run;
  }
  return best;
}

/** Evaluate ``+ - * / % ^`` and parentheses over decimal numbers, by recursive descent. */
export function evaluate(source) {
  const tokens = source.match(/\d+(?:\.\d*)?|\.\d+|[-+*/%^()]|\S/g) || [];
  let at = 0;
  const peek = () => tokens[at];
  const take = () => tokens[at++];
  const fail = (what) => { throw new Error(`${what} in ${JSON.stringify(source)}`); };
  const sum = (depth) => {
    let value = product(depth);
    while (peek() === "+" || peek() === "-") value = take() === "+" ? value + product(depth) : value - product(depth);
    return value;
  };
  const product = (depth) => {
    let value = power(depth);
    for (;;) {
      const op = peek();
      if (op !== "*" && op !== "/" && op !== "%") return value;
      take();
      const right = power(depth);
      if ((op === "/" || op === "%") && right === 0) throw new Error("division by zero");
      value = op === "*" ? value * right : op === "/" ? value / right : value % right;
    }
  };
  const power = (depth) => {
    const base = unary(depth);
    if (peek() !== "^") return base;
    take();
    return base ** power(depth); // right-associative
  };
  const unary = (depth) => {
    if (peek() === "-") { take(); return -unary(depth); }
    if (peek() === "+") { take(); return unary(depth); }
    return atom(depth);
  };
  const atom = (depth) => {
    const token = take();
    if (token === "(") {
      if (depth > 64) fail("too deeply nested");
      const value = sum(depth + 1);
      if (take() !== ")") fail("missing )");
      return value;
    }
    if (token !== undefined && /^(?:\d|\.\d)/.test(token)) return parseFloat(token);
    return fail(token === undefined ? "unexpected end" : `unexpected ${JSON.stringify(token)}`);
  };
  const value = sum(0);
  if (at < tokens.length) fail(`unexpected ${JSON.stringify(peek())}`);
  if (!Number.isFinite(value)) throw new Error("the result is not a finite number");
  return Math.round(value * 1e12) / 1e12; // 0.1 + 0.2 shows as 0.3
}
