// streamserver demo page: the Markdown renderer. A subset of Markdown (fences, headings, rules,
// quotes, lists, paragraphs; `code`, **strong**, *em*, http(s) links) built as DOM nodes, rendered
// again from the whole text on each frame of a streaming answer.
//
// Separate because it is the one part that turns model text into page content: the safety rule
// lives here. Model text only ever becomes text nodes (createTextNode / textContent) inside elements
// built here; nothing assigns innerHTML, so model output cannot inject markup, and a link is kept
// only for an http(s) URL.

/** A new ``tag`` element with a class and text content (a text node: never parsed as markup). */
export const el = (tag, className, text) => {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
};

const FENCE = /^\s{0,3}(```+|~~~+)\s*([\w+-]*)\s*$/;
const HEADING = /^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$/;
const RULE = /^\s{0,3}([-*_])(\s*\1){2,}\s*$/;
const ITEM = /^\s{0,3}([-*+]|\d{1,9}[.)])\s+(.*)$/;
const QUOTE = /^\s{0,3}>\s?(.*)$/;
// Inline: `code`, **strong**, *em*, [text](http(s) link). Unclosed markers stay literal, so a
// half-streamed "**bo" shows as typed and becomes bold once the closing marker arrives.
const INLINE = /(`+)([^`]|[^`][\s\S]*?[^`])\1(?!`)|\*\*(?=\S)([\s\S]*?\S)\*\*|\*(?=[^\s*])([\s\S]*?[^\s*])\*(?!\*)|\[([^\]\n]+)\]\(([^()\s]+)\)/g;

/** Render ``text`` as the children of ``into``; a half-streamed block renders as far as it goes. */
export function renderMarkdown(text, into) {
  into.replaceChildren(...blocks(text.split(/\r\n|\r|\n/)));
}

function blocks(lines) {
  const out = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    let m;
    if (!line.trim()) { i += 1; continue; }
    if ((m = FENCE.exec(line))) {
      const body = [];
      i += 1;
      while (i < lines.length && !lines[i].trim().startsWith(m[1])) body.push(lines[i++]);
      i += 1; // the closing fence (or the end of a still-streaming block)
      const code = el("code", null, body.join("\n"));
      if (m[2]) code.dataset.lang = m[2];
      const pre = el("pre");
      pre.append(code);
      out.push(pre);
    } else if ((m = HEADING.exec(line))) {
      const level = Math.min(6, m[1].length + 2); // the page owns h1 and h2
      const h = el(`h${level}`);
      h.append(...inline(m[2]));
      out.push(h);
      i += 1;
    } else if (RULE.test(line)) {
      out.push(el("hr"));
      i += 1;
    } else if (QUOTE.test(line)) {
      const body = [];
      while (i < lines.length && (m = QUOTE.exec(lines[i]))) { body.push(m[1]); i += 1; }
      const quote = el("blockquote");
      quote.append(...blocks(body));
      out.push(quote);
    } else if ((m = ITEM.exec(line))) {
      const ordered = /\d/.test(m[1]);
      const list = el(ordered ? "ol" : "ul");
      if (ordered && parseInt(m[1], 10) !== 1) list.start = parseInt(m[1], 10);
      while (i < lines.length && (m = ITEM.exec(lines[i])) && /\d/.test(m[1]) === ordered) {
        const item = el("li");
        item.append(...inline(m[2]));
        list.append(item);
        i += 1;
      }
      out.push(list);
    } else {
      const body = [];
      while (i < lines.length && lines[i].trim() && !startsBlock(lines[i])) body.push(lines[i++]);
      const p = el("p");
      p.append(...inline(body.join("\n")));
      out.push(p);
    }
  }
  return out;
}

function startsBlock(line) {
  return FENCE.test(line) || HEADING.test(line) || RULE.test(line) || QUOTE.test(line) || ITEM.test(line);
}

function inline(text) {
  const nodes = [];
  let last = 0;
  for (const m of text.matchAll(INLINE)) {
    if (m.index > last) nodes.push(document.createTextNode(text.slice(last, m.index)));
    last = m.index + m[0].length;
    if (m[1]) {
      nodes.push(el("code", null, m[2]));
    } else if (m[3] !== undefined) {
      const strong = el("strong");
      strong.append(...inline(m[3]));
      nodes.push(strong);
    } else if (m[4] !== undefined) {
      const em = el("em");
      em.append(...inline(m[4]));
      nodes.push(em);
    } else {
      nodes.push(link(m[5], m[6]) || document.createTextNode(m[0]));
    }
  }
  if (last < text.length) nodes.push(document.createTextNode(text.slice(last)));
  return nodes;
}

function link(label, href) {
  let url;
  try { url = new URL(href); } catch { return null; }
  if (url.protocol !== "http:" && url.protocol !== "https:") return null; // no javascript: etc.
  const a = el("a", null, label);
  a.href = url.href;
  a.rel = "noopener noreferrer nofollow";
  a.target = "_blank";
  return a;
}
