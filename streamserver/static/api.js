// streamserver demo page: calls to the server's HTTP API. The API key (auth.mode = "api_key") is
// kept for this tab and sent with every fetch; a client that cannot send headers gets a ticket; an
// error body in the contract's shape ({"error": {"code", "message"}}) becomes a sentence to show.
//
// Separate because the UI and the transports both call the server, and a 401 is handled the same
// way wherever it comes from: the key field is shown and a refused key is dropped.

import { setStatus, ui } from "./page.js";

// The key stays in sessionStorage: never localStorage, a URL or the wire log. fetch sends it as a
// header; EventSource and WebSocket cannot send headers, so they get a ticket (withTicket).
const KEY_STORAGE = "streamserver.api_key"; // in sessionStorage: this tab only, gone when it closes

/** What the page says when the server needs a key it does not have (or refused). */
export const KEY_NEEDED = "This server needs a valid API key: enter it under “API key”.";

/** The server answered 401: auth.mode = "api_key" (a live binding: importers see it change). */
export let keyNeeded = false;

/** The key kept for this tab, or ``""``. */
export function apiKey() {
  try { return window.sessionStorage.getItem(KEY_STORAGE) || ""; } catch { return ""; }
}

/** Keep ``key`` for this tab, or forget it (``""``); false when the browser blocks sessionStorage. */
export function storeKey(key) {
  try {
    if (key) window.sessionStorage.setItem(KEY_STORAGE, key);
    else window.sessionStorage.removeItem(KEY_STORAGE);
    return true;
  } catch {
    return false;
  }
}

/** Show the key field (once the server asked for a key, or while one is kept), and an error. */
export function showKeyForm(error) {
  ui.keyForm.hidden = !keyNeeded && !apiKey();
  ui.forgetKey.hidden = !apiKey();
  ui.key.placeholder = apiKey() ? "kept for this tab" : "";
  ui.keyError.textContent = error || "";
  ui.keyError.hidden = !error;
}

/** fetch, with the key (if any) as a Bearer header; a 401 asks for a key, and drops a refused one. */
export async function call(path, init = {}) {
  const key = apiKey();
  const headers = key ? { ...init.headers, Authorization: `Bearer ${key}` } : init.headers;
  const response = await fetch(path, { ...init, headers });
  if (response.status === 401) {
    keyNeeded = true;
    if (key && key === apiKey()) {
      storeKey("");
      const reason = await errorMessage(response.clone());
      showKeyForm(`The server refused this key${reason ? ` (${reason})` : ""}. Check it and enter it again.`);
    } else {
      showKeyForm(ui.keyError.textContent);
    }
  }
  return response;
}

/** ``url`` for a client that cannot send headers: with a key, plus a fresh ticket for its path. */
export async function withTicket(url) {
  if (!apiKey()) return url;
  let response;
  try {
    response = await call("v1/tickets", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ path: url.pathname }),
    });
  } catch (err) {
    throw new Error(`Could not get a ticket: ${err.message}`);
  }
  if (!response.ok) throw new Error(await errorText(response));
  url.searchParams.set("ticket", (await response.json()).ticket);
  return url;
}

/** GET ``path`` as JSON; a refusal throws an Error with the message to show and the ``status``. */
export async function fetchJSON(path) {
  const response = await call(path);
  if (!response.ok) throw Object.assign(new Error(await errorText(response)), { status: response.status });
  return response.json();
}

/** Ask the server to stop ``streamId`` (a stream that already ended, 409, is no error here). */
export async function cancelById(streamId) {
  try {
    const response = await call(`v1/streams/${encodeURIComponent(streamId)}`, { method: "DELETE" });
    if (!response.ok && response.status !== 409) setStatus(await errorText(response));
  } catch (err) {
    setStatus(`Could not stop: ${err.message}`);
  }
}

/** The message of an error body in the contract's shape, or null. */
export async function errorMessage(response) {
  try {
    const body = await response.json();
    if (body && body.error) return body.error.message || String(body.error);
  } catch { /* not JSON */ }
  return null;
}

/** The sentence to show for a refused request: the contract's message, or the HTTP status. */
export async function errorText(response) {
  if (response.status === 401) return KEY_NEEDED;
  const message = await errorMessage(response);
  return message ? `${response.status}: ${message}` : `HTTP ${response.status}`;
}
