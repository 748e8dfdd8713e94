"""The demo page at ``GET /``, driven in a real browser (Debian's Chromium, headless, via Playwright).

The server runs in the test's event loop (the ``serve`` fixture), so the tests use Playwright's async
API. Every stream is paced, and the answer is sampled while it streams: a page that only showed the
text at the end would fail. Without /usr/bin/chromium the tests skip, except in CI, where they fail.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from conftest import REPO, base_config
from playwright.async_api import Browser, Page, async_playwright

import streamserver

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = REPO / "test-artifacts"

NEEDS_CHROMIUM = pytest.mark.skipif(
    not CHROMIUM.exists() and not os.environ.get("CI"),
    reason="needs Chromium at /usr/bin/chromium (apt-get install chromium); CI fails instead",
)
"""The mark of every browser test: skipped without Chromium, except on CI (fails instead)."""
pytestmark = NEEDS_CHROMIUM

# About 70 tokens: at 20 tokens a second the answer streams for ~3.5 s, long enough to watch it grow.
PROMPT = (
    "Streaming means the reader sees every word arrive as soon as the model produces it, "
    "so a long answer starts at once and grows steadily until the very last token lands here."
)
TRANSPORTS = ["eventsource", "fetch", "websocket", "conversation"]


def paced_config(tmp_path: Path, **sections: Any) -> dict[str, Any]:
    """Simulated provider at 20 tokens/s (``echo`` streams the prompt back), conversations in tmp."""
    simulated = {
        "ttft_ms": 0,
        "tokens_per_second": 20,
        "jitter": 0,
        "seed": 7,
        "answer_tokens": 400,
    }
    return base_config(
        providers={"simulated": simulated},
        conversations={"sqlite": {"path": str(tmp_path / "chat.sqlite3")}},
        **sections,
    )


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """A headless Chromium for one test."""
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        yield chromium
        await chromium.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    """A fresh page (own storage) at phone width, failing the test on any uncaught page error."""
    context = await browser.new_context(viewport={"width": 390, "height": 844})
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    await context.close()
    assert errors == [], f"uncaught errors in the page: {errors}"


async def open_demo(page: Page, base_url: str) -> None:
    """Load ``GET /`` and wait until the selectors are filled from the server."""
    await page.goto(base_url + "/")
    await page.wait_for_selector("body[data-ready=true]")


async def ask(page: Page, transport: str, model: str, prompt: str) -> None:
    """Choose a transport and model, type the prompt and send it."""
    await page.select_option("#transport", transport)
    await page.select_option("#model", model)
    await page.fill("#prompt", prompt)
    await page.click("#send")


def answer(page: Page) -> Any:
    """The newest answer's rendered body."""
    return page.locator(".msg.assistant .body").last


async def watch_answer(page: Page, timeout: float = 15) -> list[str]:  # noqa: ASYNC109
    """Sample the streaming answer until it ends; returns the distinct texts seen, in order."""
    seen: list[str] = []
    deadline = asyncio.get_running_loop().time() + timeout
    await page.wait_for_selector(".msg.assistant")
    while True:
        streaming = await page.locator(".msg.assistant.streaming").count()
        text = await answer(page).text_content() or ""
        if not seen or seen[-1] != text:
            seen.append(text)
        if not streaming:
            return seen
        assert asyncio.get_running_loop().time() < deadline, f"still streaming; saw {seen[-1]!r}"
        await asyncio.sleep(0.05)


async def metrics(base_url: str, key: str | None = None) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with httpx.AsyncClient() as http:
        response = await http.get(base_url + "/v1/stream/metrics", headers=headers)
        data: dict[str, Any] = response.json()
        return data


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_each_transport_streams_the_answer_as_it_grows(serve, page, tmp_path, transport):
    client = await serve(paced_config(tmp_path))
    await open_demo(page, client.base_url)
    await ask(page, transport, "echo", PROMPT)
    await page.wait_for_selector(".msg.assistant.streaming .typing")  # the typing indicator
    if transport == "eventsource":
        await wait_until_text(page, 40)
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "demo-page.png"))
    seen = await watch_answer(page)
    assert seen[-1] == PROMPT
    growing = [text for text in seen[:-1] if 0 < len(text) < len(PROMPT)]
    assert len(growing) >= 5, f"too few intermediate states: {growing}"
    assert all(PROMPT.startswith(text) for text in growing)
    assert await page.locator(".typing").count() == 0
    assert int(await page.text_content("#stat-tokens") or 0) > 20
    assert (await page.text_content("#stat-ttft") or "").endswith(" ms")
    assert float(await page.text_content("#stat-rate") or 0) > 5


async def wait_until_text(page: Page, chars: int) -> None:
    await page.wait_for_function(
        "n => (document.querySelector('.msg.assistant:last-of-type .body') || {}).textContent"
        "?.length >= n",
        arg=chars,
    )


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_stop_cancels_the_stream_on_the_server(serve, page, tmp_path, transport):
    client = await serve(paced_config(tmp_path))
    await open_demo(page, client.base_url)
    await ask(page, transport, "simulated", "Tell me a long story")
    await wait_until_text(page, 20)
    await page.click("#stop")
    await page.wait_for_selector(".msg.assistant:not(.streaming)")
    stopped_at = await answer(page).text_content()
    await asyncio.sleep(0.3)
    assert await answer(page).text_content() == stopped_at  # nothing arrives after Stop
    assert "Stopped." in (await page.locator(".msg.assistant .note-line").all_text_contents())
    figures = await metrics(client.base_url)
    assert figures["outcomes"].get("cancelled") == 1, figures["outcomes"]
    assert await page.is_disabled("#stop")


class ConnectionCutter:
    """Remembers the streaming requests of the browser so a test can cut the first one.

    It hooks ``on_response_prepare``: a real request on a real socket (an SSE response or an
    upgraded WebSocket), closed with ``transport.abort()`` as a network failure would close it.
    """

    def __init__(self, app: web.Application, prefix: str) -> None:
        """``prefix``: the streaming path, or a prefix of paths when it ends with "/"."""
        self.prefix = prefix
        self.requests: list[web.Request] = []
        app.on_response_prepare.append(self._remember)

    async def _remember(self, request: web.Request, response: web.StreamResponse) -> None:
        path = request.path
        wanted = path.startswith(self.prefix) if self.prefix.endswith("/") else path == self.prefix
        if wanted and response.status in (101, 200):
            self.requests.append(request)

    def cut_first(self) -> None:
        transport = self.requests[0].transport
        assert transport is not None
        transport.abort()


async def cut_mid_answer_and_see_it_resume(
    page: Page, transport: str, cutter: ConnectionCutter
) -> None:
    """Ask for PROMPT, cut the connection mid-answer, and check the page resumed it: the exact
    text, once, after one reconnect."""
    await ask(page, transport, "echo", PROMPT)
    await wait_until_text(page, 30)
    cutter.cut_first()
    seen = await watch_answer(page)
    assert seen[-1] == PROMPT
    assert len(seen[-2]) < len(PROMPT)  # the cut happened mid-stream
    assert await page.text_content("#stat-reconnects") == "1"


STREAM_PATHS = {
    "eventsource": "/v1/stream",
    "fetch": "/v1/stream",
    "websocket": "/ws/stream",
    "conversation": "/ws/chat/",
}


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_connection_cut_mid_stream_resumes_without_gap_or_duplicate(
    serve, page, tmp_path, transport
):
    app = streamserver.create_app(
        paced_config(tmp_path, resume={"grace_s": 5}, server={"retry_ms": 200})
    )
    cutter = ConnectionCutter(app, STREAM_PATHS[transport])
    client = await serve(app=app)
    await open_demo(page, client.base_url)
    await cut_mid_answer_and_see_it_resume(page, transport, cutter)
    figures = await metrics(client.base_url)
    assert figures["total_streams"] == 1  # resumed, not generated again
    assert figures["outcomes"] == {"completed": 1}
    if transport == "conversation":
        conversation_id = await page.text_content("#conversation-id")
        async with httpx.AsyncClient() as http:
            history = (
                await http.get(f"{client.base_url}/v1/conversations/{conversation_id}")
            ).json()
        assert [(m["content"], m["status"]) for m in history["messages"]] == [
            (PROMPT, "complete"), (PROMPT, "complete"),
        ]  # fmt: skip


# Line breaks, a blank line and a "data:" inside the text: every shape must carry them exactly.
FORMATS_PROMPT = "A *format* test:\n\n- data: one\n- two, with üñíçødé 🙂"
READABLE_FORMATS = [
    "production",
    "simple",
    "events",
    "progress",
    "chat",
    "openai",
    "ai-sdk",
    "anthropic",
    "text",
]


@pytest.mark.parametrize("format_", READABLE_FORMATS)
async def test_every_format_the_page_offers_streams_exactly_in_the_sse_modes(
    serve, page, tmp_path, format_
):
    config = paced_config(tmp_path)
    config["providers"]["simulated"]["tokens_per_second"] = 200
    client = await serve(config)
    await open_demo(page, client.base_url)
    texts = []
    for transport in ("eventsource", "fetch"):
        await page.select_option("#transport", transport)
        await page.select_option("#format", format_)
        await ask(page, transport, "echo", FORMATS_PROMPT)
        await watch_answer(page)
        texts.append(await page.locator(".msg.assistant").last.get_attribute("data-text"))
    figures = await metrics(client.base_url)

    assert texts == [FORMATS_PROMPT, FORMATS_PROMPT]
    assert figures["outcomes"] == {"completed": 2}
    assert await page.locator(".msg.assistant .note-line.error").count() == 0


async def test_model_output_cannot_inject_html_or_script(serve, page, tmp_path):
    client = await serve(paced_config(tmp_path))
    hostile = (
        '<img src=x onerror="window.__xss=1"> and <script>window.__xss=2</script> '
        "and [click](javascript:window.__xss=3) and <b>bold?</b>"
    )
    await open_demo(page, client.base_url)
    await ask(page, "fetch", "echo", hostile)
    seen = await watch_answer(page)
    await asyncio.sleep(0.3)  # an injected image would have failed to load by now
    assert seen[-1] == hostile  # shown literally
    assert await page.evaluate("window.__xss") is None
    assert await page.locator("#log img, #log script, #log a, #log b").count() == 0


async def test_markdown_is_rendered_while_streaming(serve, page, tmp_path):
    client = await serve(paced_config(tmp_path))
    await open_demo(page, client.base_url)
    await ask(page, "websocket", "echo", "Use **bold** and `code`:\n\n- one\n- two")
    await watch_answer(page)
    body = answer(page)
    assert await body.locator("strong").text_content() == "bold"
    assert await body.locator("code").text_content() == "code"
    assert await body.locator("ul > li").all_text_contents() == ["one", "two"]


async def test_conversation_history_is_shown_again_after_a_reload(serve, page, tmp_path):
    client = await serve(paced_config(tmp_path))
    await open_demo(page, client.base_url)
    await ask(page, "conversation", "echo", "Remember the tortoise.")
    await watch_answer(page)
    conversation_id = await page.text_content("#conversation-id")
    await page.reload()
    await page.wait_for_selector("body[data-ready=true]")
    await page.wait_for_selector(".msg.assistant")
    assert await page.input_value("#transport") == "conversation"
    assert await page.text_content("#conversation-id") == conversation_id
    assert await page.locator(".msg .body").all_text_contents() == [
        "Remember the tortoise.",
        "Remember the tortoise.",
    ]
    await page.click("#new-conversation")
    await page.wait_for_selector(".msg", state="detached")
    assert await page.text_content("#conversation-id") != conversation_id


async def test_the_page_fills_its_selectors_from_the_server_and_fits_a_phone(serve, page, tmp_path):
    client = await serve(paced_config(tmp_path))
    await open_demo(page, client.base_url)
    buffers = await page.locator("#buffer option").all_text_contents()
    assert {"raw", "word", "sentence"} <= set(buffers)
    assert {"simulated", "echo"} <= set(await page.locator("#model option").all_text_contents())
    formats = await page.locator("#format option").all_inner_texts()
    assert set(READABLE_FORMATS) <= set(formats)
    await page.select_option("#transport", "fetch")
    assert await page.input_value("#format") == "production"  # the route's own formatter
    assert not await page.is_disabled("#format")
    await page.select_option("#transport", "websocket")
    assert await page.is_disabled("#format")  # a WebSocket mode reads the route's shape
    await page.select_option("#transport", "conversation")
    assert await page.is_disabled("#buffer")  # the chat route allows no buffer override
    for name in ("Transport", "Model", "Buffer", "Format", "Prompt"):
        assert await page.get_by_label(name, exact=True).count() == 1
    assert await page.get_attribute("#log", "aria-live") == "polite"
    overflow = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0
    await page.focus("#send")
    outline = await page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline == "solid"  # visible focus (the button was focused from script: focus-visible)


async def test_the_page_works_when_the_app_is_mounted_under_a_prefix(serve, page, tmp_path):
    outer = web.Application()
    outer.add_subapp("/llm/", streamserver.create_app(paced_config(tmp_path)))
    client = await serve(app=outer)
    await open_demo(page, client.base_url + "/llm")
    assert "echo" in await page.locator("#model option").all_text_contents()
    await ask(page, "websocket", "echo", "Mounted apps use relative URLs.")
    seen = await watch_answer(page)
    assert seen[-1] == "Mounted apps use relative URLs."


# ---------------------------------------------------------------- with auth on (auth.mode = "api_key")

KEY = "sk-demo-0123456789abcdef"


@pytest.fixture
def api_key(monkeypatch: pytest.MonkeyPatch) -> str:
    """The server's only API key (``STREAMSERVER_API_KEYS``), which the tests type into the page."""
    monkeypatch.setenv("STREAMSERVER_API_KEYS", f"demo:{KEY}")
    return KEY


def secured_config(tmp_path: Path, **sections: Any) -> dict[str, Any]:
    return paced_config(tmp_path, auth={"mode": "api_key"}, **sections)


def record_urls(page: Page) -> list[str]:
    """Every URL the page requests from now on: HTTP (EventSource and fetch included) and WebSocket."""
    urls: list[str] = []
    page.on("request", lambda request: urls.append(request.url))
    page.on("websocket", lambda socket: urls.append(socket.url))
    return urls


async def enter_key(page: Page, key: str) -> None:
    """Type ``key`` into the API key field and submit it."""
    await page.get_by_label("API key", exact=True).fill(key)
    await page.click("#key-form button[type=submit]")


async def local_storage(page: Page) -> str:
    return str(await page.evaluate("JSON.stringify(Object.entries(window.localStorage))"))


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_with_auth_on_the_page_asks_for_the_key_then_streams(
    serve, page, tmp_path, api_key, transport
):
    client = await serve(secured_config(tmp_path))
    urls = record_urls(page)
    await open_demo(page, client.base_url)
    field = page.get_by_label("API key", exact=True)
    assert await field.is_visible()
    assert await field.get_attribute("type") == "password"
    assert "needs a valid API key" in (await page.text_content("#status") or "")
    await enter_key(page, api_key)
    await page.wait_for_selector("#model option[value=echo]", state="attached")
    await ask(page, transport, "echo", PROMPT)
    seen = await watch_answer(page)
    assert seen[-1] == PROMPT
    assert len(seen) > 2  # it streamed
    assert await page.evaluate("sessionStorage.getItem('streamserver.api_key')") == api_key
    assert api_key not in await local_storage(page)
    assert not [url for url in urls if api_key in url]
    if transport != "fetch":  # EventSource and WebSocket cannot send headers: a ticket instead
        assert [url for url in urls if "ticket=" in url]


@pytest.mark.parametrize("transport", ["eventsource", "websocket"])
async def test_with_auth_on_a_resumed_connection_gets_a_fresh_ticket(
    serve, page, tmp_path, api_key, transport
):
    app = streamserver.create_app(
        secured_config(tmp_path, resume={"grace_s": 5}, server={"retry_ms": 200})
    )
    path = STREAM_PATHS[transport]
    cutter = ConnectionCutter(app, path)
    client = await serve(app=app)
    urls = record_urls(page)
    await open_demo(page, client.base_url)
    await enter_key(page, api_key)
    await page.wait_for_selector("#model option[value=echo]", state="attached")
    await cut_mid_answer_and_see_it_resume(page, transport, cutter)
    streams = [url for url in urls if f"{path}?" in url]
    tickets = {url.partition("ticket=")[2].partition("&")[0] for url in streams}
    assert len(streams) == 2 and len(tickets) == 2  # one ticket per connection
    if transport == "eventsource":
        assert "last_event_id=" in streams[1]
    assert not [url for url in urls if api_key in url]
    figures = await metrics(client.base_url, api_key)
    assert figures["total_streams"] == 1  # resumed, not generated again
    assert figures["outcomes"] == {"completed": 1}


async def test_with_auth_on_a_wrong_key_shows_a_clear_message(serve, page, tmp_path, api_key):
    client = await serve(secured_config(tmp_path))
    await open_demo(page, client.base_url)
    await enter_key(page, "sk-wrong-guess")
    error = page.locator("#api-key-error")
    await error.wait_for()
    assert await error.get_attribute("role") == "alert"
    assert "refused this key" in (await error.text_content() or "")
    assert "needs a valid API key" in (await page.text_content("#status") or "")
    assert await page.evaluate("sessionStorage.length") == 0  # a refused key is not kept
    await enter_key(page, api_key)
    await page.wait_for_selector("#model option[value=echo]", state="attached")
    assert await error.is_hidden()


async def test_forget_key_clears_it_from_the_tab(serve, page, tmp_path, api_key):
    client = await serve(secured_config(tmp_path))
    await open_demo(page, client.base_url)
    await enter_key(page, api_key)
    await page.wait_for_selector("#model option[value=echo]", state="attached")
    await page.get_by_role("button", name="Forget key").click()
    assert await page.evaluate("sessionStorage.length") == 0
    assert await page.input_value("#api-key") == ""
    await page.fill("#prompt", "no key, no stream")
    await page.click("#send")
    assert "needs a valid API key" in (await page.text_content("#status") or "")
    assert await page.locator(".msg").count() == 0


async def test_with_auth_off_the_page_asks_for_no_key(serve, page, tmp_path):
    client = await serve(paced_config(tmp_path))
    await open_demo(page, client.base_url)
    assert await page.is_hidden("#key-form")
    assert await page.text_content("#status") == ""
