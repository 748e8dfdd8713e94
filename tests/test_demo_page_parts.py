"""The demo page's structured parts in a real browser (Chromium via Playwright, as
``test_demo_page.py``): the "Thinking" block of ``sim-reasoner``, tool cards answered by the page's
own tools (``sim-tools``), and the JSON mode's object view. Each runs once whole and once with its
connection cut mid-part, and the resumed page must show exactly what the whole run showed.

``STREAMSERVER_SCREENSHOTS=1`` saves the README's screenshots to ``docs/`` (else to
``test-artifacts/``).

The JSON mode's tests read the ``object`` formatter's stream of a scripted provider's JSON text.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from conftest import REPO, SCRIPTED
from playwright.async_api import Browser, Page
from test_demo_page import (  # noqa: F401  (browser: the fixture)
    ARTIFACTS,
    NEEDS_CHROMIUM,
    browser,
    metrics,
    open_demo,
    paced_config,
)

import streamserver

pytestmark = NEEDS_CHROMIUM
SHOTS = REPO / "docs" if os.environ.get("STREAMSERVER_SCREENSHOTS") else ARTIFACTS
WAIT_MS = 15_000


def parts_config(tmp_path: Path, **sections: Any) -> dict[str, Any]:
    """Paced at 40 tokens/s, short answers, a cut connection kept generating for 5 s."""
    config = paced_config(tmp_path, resume={"grace_s": 5}, server={"retry_ms": 200}, **sections)
    config["providers"]["simulated"].update(tokens_per_second=40, answer_tokens=30)
    return config


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:  # noqa: F811
    """A desktop-sized page (the screenshots), failing the test on any uncaught page error."""
    context = await browser.new_context(viewport={"width": 1100, "height": 760})
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    await context.close()
    assert errors == [], f"uncaught errors in the page: {errors}"


class Cutter:
    """Cuts the newest streaming request to ``path`` (a real socket, aborted as a network failure
    would close it): hooked on ``on_response_prepare``, as ``test_demo_page.ConnectionCutter``."""

    def __init__(self, app: web.Application, path: str) -> None:
        self.path = path
        self.requests: list[web.Request] = []
        app.on_response_prepare.append(self._remember)

    async def _remember(self, request: web.Request, response: web.StreamResponse) -> None:
        if request.path == self.path and response.status in (101, 200):
            self.requests.append(request)

    def cut_newest(self) -> None:
        transport = self.requests[-1].transport
        assert transport is not None
        transport.abort()


async def serve_app(serve: Any, config: dict[str, Any], path: str) -> tuple[Any, Cutter]:
    app = streamserver.create_app(config)
    cutter = Cutter(app, path)
    return await serve(app=app), cutter


async def send(page: Page, transport: str, model: str, prompt: str) -> None:
    await page.select_option("#transport", transport)
    await page.select_option("#model", model)
    await page.fill("#prompt", prompt)
    await page.click("#send")


async def until(page: Page, script: str, arg: Any = None) -> None:
    """Wait (bounded) until ``script`` (a JS expression over ``arg``) holds in the newest answer."""
    await page.wait_for_function(
        f"arg => {{ const msg = [...document.querySelectorAll('.msg.assistant')].pop(); "
        f"return Boolean(msg && ({script})); }}",
        arg=arg,
        timeout=WAIT_MS,
    )


async def sample_until_done(page: Page, selector: str) -> list[str]:
    """The distinct texts of ``selector`` in the newest answer, sampled until it ends."""
    seen: list[str] = []
    deadline = asyncio.get_running_loop().time() + WAIT_MS / 1000
    while True:
        newest = page.locator(".msg.assistant").last
        streaming = "streaming" in (await newest.get_attribute("class") or "")
        target = newest.locator(selector)
        text = await target.first.text_content() if await target.count() else ""
        if text and (not seen or seen[-1] != text):
            seen.append(text)
        if not streaming:
            return seen
        assert asyncio.get_running_loop().time() < deadline, f"still streaming; saw {seen[-1:]}"
        await asyncio.sleep(0.03)


async def shoot(page: Page, name: str, top: str = ".msg.user") -> None:
    """Screenshot the viewport with the newest ``top`` element at its top (the README's images)."""
    await page.evaluate(
        "sel => [...document.querySelectorAll(sel)].pop().scrollIntoView({block: 'start'})", top
    )
    SHOTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(SHOTS / name))


async def newest(page: Page, selector: str) -> str:
    return await page.locator(".msg.assistant").last.locator(selector).first.text_content() or ""


# ---------------------------------------------------------------- reasoning

REASONING_PROMPT = "Why does a streaming server need backpressure?"


async def test_reasoning_streams_in_a_thinking_block_that_folds_and_resumes_exactly(
    serve, page, tmp_path
):
    client, cutter = await serve_app(serve, parts_config(tmp_path), "/v1/stream")
    await open_demo(page, client.base_url)

    await send(page, "eventsource", "sim-reasoner", REASONING_PROMPT)
    await until(page, "msg.querySelector('details.thinking[open] .thinking-text')")
    thinking = await sample_until_done(page, ".thinking-text")
    whole = thinking[-1]
    assert len(thinking) >= 5, f"the reasoning did not stream: {thinking}"
    assert all(whole.startswith(text) for text in thinking)
    last = page.locator(".msg.assistant").last
    assert await last.locator("details.thinking").get_attribute("open") is None  # folded
    assert (await newest(page, "details.thinking summary")).startswith("Thought for ")
    answer = await newest(page, ".body")
    assert len(answer) > 40 and answer not in whole

    # The same request (the seed is fixed), cut while it thinks: the page resumes with no duplicate.
    await send(page, "eventsource", "sim-reasoner", REASONING_PROMPT)
    await until(page, "msg.querySelector('.thinking-text')?.textContent.length > 30")
    cutter.cut_newest()
    await sample_until_done(page, ".thinking-text")
    assert await newest(page, ".thinking-text") == whole
    assert await newest(page, ".body") == answer
    assert await page.text_content("#stat-reconnects") == "1"
    figures = await metrics(client.base_url)
    assert figures["total_streams"] == 2 and figures["outcomes"] == {"completed": 2}
    await page.locator(".msg.assistant").last.locator("details.thinking summary").click()
    await shoot(page, "demo-reasoning.png")  # the folded block, opened again by a click


# ---------------------------------------------------------------- tool calls

TOOLS_PROMPT = "What is 12 * (3 + 4)? Use the calculator"
RESULT = '{"expression":"12 * (3 + 4)","result":84}'


async def tool_turn(page: Page, transport: str) -> dict[str, Any]:
    """Ask sim-tools to use the calculator; returns what the card and the answer showed."""
    await send(page, transport, "sim-tools", TOOLS_PROMPT)
    await until(page, "msg.querySelector('.tool-card .tool-args')")
    arguments = await sample_until_done(page, ".tool-args")
    await until(page, "!msg.classList.contains('streaming')")
    return {
        "arguments": arguments,
        "name": await newest(page, ".tool-name"),
        "result": await newest(page, ".tool-result"),
        "state": await newest(page, ".tool-state"),
        "answer": await newest(page, ".body"),
    }


async def test_a_tool_card_fills_in_and_the_page_tool_result_completes_the_turn(
    serve, page, tmp_path
):
    client, cutter = await serve_app(serve, parts_config(tmp_path), "/v1/stream")
    await open_demo(page, client.base_url)
    await page.select_option("#model", "sim-tools")
    assert await page.is_checked("#tool-calculator")  # sim-tools: the calculator is offered

    shown = await tool_turn(page, "fetch")
    whole = json.loads(shown["arguments"][-1])
    assert shown["name"] == "calculator"
    assert "12 * (3 + 4)" in whole["expression"]
    assert len(shown["arguments"]) >= 3, f"the arguments did not form live: {shown['arguments']}"
    assert all(shown["arguments"][-1].startswith(text) for text in shown["arguments"])
    assert shown["result"] == RESULT and shown["state"] == "answered by the page"
    assert shown["answer"].startswith(f"calculator returned {RESULT}.")
    await shoot(page, "demo-tools.png")
    figures = await metrics(client.base_url)
    assert figures["total_streams"] == 2  # the call, then the answer to its result

    # Cut mid-arguments: the card, the result and the answer are the uncut run's, once each.
    await send(page, "fetch", "sim-tools", TOOLS_PROMPT)
    await until(page, "msg.querySelector('.tool-card .tool-args')?.textContent.length > 4")
    cutter.cut_newest()
    await until(page, "!msg.classList.contains('streaming')")
    assert await newest(page, ".tool-args") == shown["arguments"][-1]
    assert await newest(page, ".tool-result") == RESULT
    assert await newest(page, ".body") == shown["answer"]
    assert await page.locator(".msg.assistant").last.locator(".tool-card").count() == 1
    assert await page.text_content("#stat-reconnects") == "1"

    # The WebSocket mode sends the result in a new message on /ws/stream, the same way.
    over_socket = await tool_turn(page, "websocket")
    assert over_socket["result"] == RESULT and over_socket["answer"] == shown["answer"]
    figures = await metrics(client.base_url)
    assert figures["total_streams"] == 6 and figures["outcomes"] == {"completed": 6}

    # The calculator parses arithmetic itself: precedence, powers, and nothing else.
    results = await page.evaluate(
        """async cases => {
            const tools = await import('./static/tools.js');
            return cases.map(c => JSON.parse(tools.runTool('calculator', JSON.stringify({expression: c}))));
        }""",
        ["2 + 3 * 4", "2 ^ 3 ^ 2", "-(1.5 + .5) % 3", "0.1 + 0.2", "7 / 0", "alert(1)", "1 +"],
    )
    assert [r.get("result", r.get("error")) for r in results] == [
        14, 512, -2, 0.3, "division by zero", 1, 'unexpected end in "1 +"',
    ]  # fmt: skip


# ---------------------------------------------------------------- the JSON mode

PRODUCTS = {
    "query": "Lamps for a reading corner",
    "results": [
        {"name": "Arc floor lamp", "price": 89.5, "in_stock": True, "rating": 4},
        {"name": "<img src=x onerror=window.__xss=1>", "price": 24, "in_stock": False, "rating": 3},
        {"name": "Clip-on reading light", "price": 12.99, "in_stock": True, "rating": 5},
    ],
}


def json_script(text: str) -> str:
    """The scripted provider's prompt streaming ``text`` in 4-character pieces."""
    pieces = [text[i : i + 4] for i in range(0, len(text), 4)]
    return json.dumps({"deltas": pieces, "gap_ms": 25})


def json_config(tmp_path: Path) -> dict[str, Any]:
    config = parts_config(tmp_path)
    config["plugins"] = {"modules": list(SCRIPTED["plugins"]["modules"])}
    config["providers"]["scripted"] = {}
    return config


async def test_the_json_mode_fills_in_an_object_shows_valid_and_resumes_exactly(
    serve, page, tmp_path
):
    client, cutter = await serve_app(serve, json_config(tmp_path), "/v1/stream")
    await open_demo(page, client.base_url)
    await page.select_option("#output", "json")
    assert await page.input_value("#transport") == "fetch"  # the JSON mode POSTs its schema
    await page.select_option("#schema-preset", "products")
    assert json.loads(await page.input_value("#schema"))["required"] == ["query", "results"]
    requests: list[dict[str, Any]] = []
    page.on("request", lambda r: requests.append(r.post_data_json) if r.method == "POST" else None)

    await send(page, "fetch", "scripted", json_script(json.dumps(PRODUCTS)))
    await until(page, "msg.querySelector('.object-view .tree')")
    trees = await sample_until_done(page, ".object-content")
    assert len(trees) >= 5, f"the object did not fill in: {trees}"
    assert await newest(page, ".verdict") == "valid"
    tree = trees[-1]
    assert "Arc floor lamp" in tree and "<img src=x onerror=window.__xss=1>" in tree
    assert await page.locator("#log img").count() == 0
    assert await page.evaluate("window.__xss") is None
    (body,) = [r for r in requests if r and "response_format" in r]
    assert body["format"] == "object"
    assert body["response_format"]["json_schema"]["schema"]["required"] == ["query", "results"]

    await page.locator(".msg.assistant").last.get_by_role("button", name="Table").click()
    cells = (
        await page.locator(".msg.assistant").last.locator(".object-table td").all_text_contents()
    )
    assert cells[:4] == ["Arc floor lamp", "89.5", "true", "4"]
    # The stand-in's prompt is its script, not what a user types: left out of the picture.
    await page.evaluate("[...document.querySelectorAll('.msg.user')].pop().hidden = true")
    await shoot(page, "demo-json.png", ".msg.assistant")
    await page.evaluate("[...document.querySelectorAll('.msg.user')].pop().hidden = false")
    await page.locator(".msg.assistant").last.get_by_role("button", name="Tree").click()

    # Cut mid-object: the view re-renders from the events, and a replayed one doubles nothing.
    await send(page, "fetch", "scripted", json_script(json.dumps(PRODUCTS)))
    await until(page, "msg.querySelector('.object-view .tree')?.textContent.length > 40")
    cutter.cut_newest()
    resumed = await sample_until_done(page, ".object-content")
    assert resumed[-1] == tree
    assert await newest(page, ".verdict") == "valid"
    assert await page.text_content("#stat-reconnects") == "1"

    # Text that is not JSON: the verdict says so, with the offset.
    await send(page, "fetch", "scripted", json_script('{"query": "lamps", oops}'))
    await until(page, "!msg.classList.contains('streaming')")
    assert (await newest(page, ".verdict")).startswith("invalid_json at offset 19: ")
    async with httpx.AsyncClient() as http:  # the view showed what the stream sent
        options = (await http.get(client.base_url + "/v1/stream/options")).json()
    assert "object" in options["formats"]
