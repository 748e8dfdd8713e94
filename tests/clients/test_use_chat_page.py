"""``useChat`` itself in Chromium: a page built at test time with esbuild from the npm packages
``ai``, ``@ai-sdk/react``, ``react`` and ``react-dom`` (``use_chat_page.jsx``, installed by the
``ai_sdk`` fixture), served beside streamserver's ``ai-sdk`` route at ``/api/chat``. It streams
reasoning and text, survives a reload mid-answer (``resume: true``) with no duplicate, runs a tool
round trip, and its stop cancels the generation on the server even while resuming.

The simulated provider is paced (20 tokens a second), so each answer is still streaming when the
test reloads or stops; the tests wait on what the page shows, never on a clock.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from conftest import ServeFactory, base_config
from playwright.async_api import Browser, Page, Response
from test_demo_page import NEEDS_CHROMIUM, browser  # noqa: F401  (browser: the fixture)

import streamserver

from .conftest import NodeAISDK

pytestmark = NEEDS_CHROMIUM

PAGE_HTML = """<!doctype html>
<html><head><meta charset="utf-8"><title>useChat</title></head>
<body><div id="root"></div><script src="/page/use_chat_page.js"></script></body></html>
"""


@pytest.fixture(scope="session")
def page_bundle(ai_sdk: NodeAISDK) -> bytes:
    """``use_chat_page.jsx`` bundled by esbuild (from npm) with the installed packages."""
    return ai_sdk.bundle("use_chat_page.jsx", "--jsx=automatic",
                         '--define:process.env.NODE_ENV="production"')  # fmt: skip


@pytest.fixture
async def base_url(serve: ServeFactory, page_bundle: bytes, tmp_path: Path) -> str:
    """streamserver with ``/api/chat`` (``transport = "ai-sdk"``) and the page at ``/page/``; the
    simulated provider at 20 tokens a second; a stream whose reader left waits 30 s for a resume."""
    simulated = {"ttft_ms": 0, "tokens_per_second": 20, "jitter": 0, "seed": 7,
                 "answer_tokens": 200}  # fmt: skip
    config = base_config(
        providers={"simulated": simulated},
        resume={"grace_s": 30},
        routes={"/api/chat": {"transport": "ai-sdk"}},
        conversations={"sqlite": {"path": str(tmp_path / "chat.sqlite3")}},
    )
    app = streamserver.create_app(config)

    async def html(request: web.Request) -> web.Response:
        return web.Response(text=PAGE_HTML, content_type="text/html")

    async def script(request: web.Request) -> web.Response:
        return web.Response(body=page_bundle, content_type="text/javascript")

    app.router.add_get("/page/", html)
    app.router.add_get("/page/use_chat_page.js", script)
    client = await serve(app=app)
    return client.base_url


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:  # noqa: F811
    """A fresh page (own storage), failing the test on any uncaught page error."""
    context = await browser.new_context()
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    await context.close()
    assert errors == [], f"uncaught errors in the page: {errors}"


def resumes(page: Page) -> list[int]:
    """The statuses of the page's resume requests (``GET /api/chat/<id>/stream``), as they come."""
    statuses: list[int] = []

    def seen(response: Response) -> None:
        if response.request.method == "GET" and response.url.endswith("/stream"):
            statuses.append(response.status)

    page.on("response", seen)
    return statuses


async def open_chat(page: Page, base_url: str, **query: str) -> None:
    await page.goto(base_url + "/page/?" + "&".join(f"{k}={v}" for k, v in query.items()))
    await page.wait_for_selector("#chat")


async def send(page: Page, text: str) -> None:
    await page.fill("#prompt", text)
    await page.click("#send")


async def streamed(base_url: str, stream_id: str) -> dict[str, Any]:
    """What the stream sent, read again from its retained log (``GET /v1/streams/{id}``): its
    text and reasoning, and its chunk types."""
    got: dict[str, Any] = {"text": "", "reasoning": "", "types": []}
    async with (
        httpx.AsyncClient(timeout=30) as http,
        http.stream("GET", f"{base_url}/v1/streams/{stream_id}") as response,
    ):
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line.removeprefix("data: "))
            got["types"].append(chunk["type"])
            if chunk["type"] in ("text-delta", "reasoning-delta"):
                got[chunk["type"].removesuffix("-delta")] += chunk["delta"]
    return got


async def test_reasoning_and_text_stream_and_a_reload_mid_answer_completes_it_once(
    base_url: str, page: Page
) -> None:
    statuses = resumes(page)
    await open_chat(page, base_url, chat="reload", model="sim-reasoner")
    await send(page, "Why is the sky blue?")
    await page.wait_for_selector("[data-role=assistant] .reasoning")
    await page.wait_for_selector("[data-role=assistant] .text")  # the answer has begun
    assert await page.get_attribute("#chat", "data-status") == "streaming"

    await page.reload()
    await page.wait_for_selector("#chat[data-status=streaming]")  # resumed, still answering
    await page.wait_for_selector("#chat[data-status=ready]", timeout=30_000)

    # On the first load the chat had no stream (204); after the reload, the answer in progress.
    assert statuses == [204, 200]
    assert await page.locator("[data-role=user]").count() == 1
    [reply_id] = await page.locator("[data-role=assistant]").evaluate_all(
        "sections => sections.map(s => s.dataset.id)"
    )
    sent = await streamed(base_url, reply_id.removeprefix("msg_"))
    assert sent["types"][-1] == "finish"
    # Every part once, exactly as the server sent it: the replay replaced the partial reply.
    assert await page.locator("[data-role=assistant] .reasoning").all_text_contents() == [
        sent["reasoning"]
    ]
    assert await page.locator("[data-role=assistant] .text").all_text_contents() == [sent["text"]]


async def test_a_tool_call_is_answered_by_the_page_and_the_model_goes_on(
    base_url: str, page: Page
) -> None:
    await open_chat(page, base_url, chat="tools", model="sim-tools", tools="1")
    await send(page, "What is the weather in Paris?")
    await page.wait_for_selector("[data-role=assistant] .tool[data-state=output-available]")
    # useChat sent the result back by itself; the second step's text follows the call.
    await page.wait_for_selector("[data-role=assistant] .tool ~ .text", timeout=30_000)
    await page.wait_for_selector("#chat[data-status=ready]", timeout=30_000)

    # One reply: the answer after the result continues the message that made the call.
    assert await page.locator("[data-role=assistant]").count() == 1
    [call] = await page.locator("[data-role=assistant] .tool").all_text_contents()
    assert json.loads(call) == {
        "input": {"city": "Paris"},
        "output": {"city": "Paris", "temperature": 21},
    }
    after = await page.locator("[data-role=assistant] .tool ~ .text").all_text_contents()
    assert after and all(after)


async def test_stop_while_resuming_cancels_the_generation_on_the_server(
    base_url: str, page: Page
) -> None:
    statuses = resumes(page)
    await open_chat(page, base_url, chat="stop", model="simulated")
    await send(page, "Tell me a long story.")
    await page.wait_for_selector("[data-role=assistant] .text")
    await page.reload()
    await page.wait_for_selector("#chat[data-status=streaming]")
    assert statuses == [204, 200]

    await page.click("#stop")
    await page.wait_for_selector("#chat[data-status=ready]")

    async with httpx.AsyncClient() as http:
        for _ in range(200):  # bounded: the cancel lands within a few loop turns
            metrics = (await http.get(base_url + "/v1/stream/metrics")).json()
            if metrics["active_streams"] == 0:
                break
            await asyncio.sleep(0.05)
    assert metrics["active_streams"] == 0
    [reply_id] = await page.locator("[data-role=assistant]").evaluate_all(
        "sections => sections.map(s => s.dataset.id)"
    )
    sent = await streamed(base_url, reply_id.removeprefix("msg_"))
    assert sent["types"][-1] == "abort"  # cancelled, not finished
    assert await page.locator("[data-role=assistant]").count() == 1
