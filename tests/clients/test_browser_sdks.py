"""The OpenAI and Anthropic SDKs from npm, bundled by esbuild and run in Chromium on a page of
another origin (``browser_sdks.js``): the CORS preflight allows what each SDK sends from a browser,
the streams arrive whole, and the page can read the stream's id."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from conftest import ServeFactory, base_config
from playwright.async_api import Browser
from test_demo_page import NEEDS_CHROMIUM, browser  # noqa: F401  (browser: the fixture)

from .conftest import NodeAISDK

pytestmark = NEEDS_CHROMIUM

PROMPT = "Say hello from a page on another origin"


@pytest.fixture(scope="session")
def sdk_bundle(ai_sdk: NodeAISDK) -> bytes:
    """``browser_sdks.js`` bundled for the browser by esbuild with the installed SDKs."""
    return ai_sdk.bundle("browser_sdks.js", "--platform=browser")


@pytest.fixture
async def page_origin(sdk_bundle: bytes) -> AsyncIterator[str]:
    """A server of its own (another port: another origin) serving the page and its script."""

    async def html(request: web.Request) -> web.Response:
        page = '<!doctype html><meta charset="utf-8"><script src="/sdks.js"></script>'
        return web.Response(text=page, content_type="text/html")

    async def script(request: web.Request) -> web.Response:
        return web.Response(body=sdk_bundle, content_type="text/javascript")

    app = web.Application()
    app.router.add_get("/", html)
    app.router.add_get("/sdks.js", script)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield str(server.make_url("")).rstrip("/")
    await server.close()


@pytest.mark.parametrize("allowed", [True, False])
async def test_the_sdks_stream_from_a_page_on_an_allowed_origin_only(
    serve: ServeFactory,
    page_origin: str,
    browser: Browser,  # noqa: F811
    allowed: bool,
) -> None:
    origins = [page_origin] if allowed else ["https://elsewhere.example"]
    client = await serve(base_config(cors={"origins": origins}))
    context = await browser.new_context()
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(page_origin + "/")
    await page.wait_for_function("typeof window.runClients === 'function'")
    try:
        if not allowed:
            with pytest.raises(Exception, match=r"Connection error|Failed to fetch"):
                await page.evaluate("([base, prompt]) => runClients(base, prompt)",
                                    [client.base_url, PROMPT])  # fmt: skip
            return
        got = await page.evaluate("([base, prompt]) => runClients(base, prompt)",
                                  [client.base_url, PROMPT])  # fmt: skip
    finally:
        await context.close()
    assert errors == []
    assert got["openai"] == got["anthropic"] != ""
    assert PROMPT.split()[0] in got["openai"]
    assert got["streamId"].startswith("st_")
    assert got["stopReason"] == "end_turn"
