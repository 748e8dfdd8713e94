"""Twelve ``EventSource`` streams on one page, through nginx over HTTPS and HTTP/2, all at once.

A browser opens at most six HTTP/1.1 connections to one origin, and an ``EventSource`` holds its
connection for its whole stream: a page's seventh waits for one of the first six to end. Over
HTTP/2 all the streams of a page share one connection. Chromium (as in
``tests/test_nginx_eventsource.py``) loads a page that nginx serves itself, with the README's
HTTPS and HTTP/2 ``server`` block and a self-signed certificate made for the test (the browser
context accepts it); the page opens twelve streams and notes, in the order they happen, each
stream's first token and its end. The same page over the README's plain HTTP/1.1 block is the
control: there no more than six streams have started when the first one ends. A WebSocket still
upgrades through the HTTPS block (its handshake is HTTP/1.1).
"""

from __future__ import annotations

import json
import re
import ssl
from pathlib import Path
from typing import Any

import websockets
from conftest import REPO
from fakes.certificate import self_signed
from fakes.cluster import Cluster
from fakes.nginx import readme_tls_conf
from playwright.async_api import Browser
from test_demo_page import NEEDS_CHROMIUM, browser  # noqa: F401  (browser: the fixture)

STREAMS = 12
"""Twice the six HTTP/1.1 connections Chromium opens to one origin."""

HTTP1_CONNECTIONS = 6

PROMPTS = [
    f"Stream {i} of this page gets its own answer, word by word, at the pace of the model, while "
    "every other stream of the page is still arriving beside it over the one connection it "
    "shares with them, and none of them waits for another to end before its first word comes."
    for i in range(STREAMS)
]
"""Streamed back by ``model=echo``: about 45 tokens each, over two seconds at 20 a second."""

PAGE = """<!doctype html>
<meta charset="utf-8">
<title>Twelve EventSources, one origin</title>
<script>
  // "first <i>" and "end <i>", in the order they happen; each stream's text; the failures.
  window.order = [];
  window.texts = [];
  window.failed = [];
  PROMPTS.forEach((prompt, i) => {
    window.texts[i] = "";
    const source = new EventSource("/v1/stream?" + new URLSearchParams({prompt, model: "echo"}));
    source.addEventListener("token", (event) => {
      if (!window.order.includes("first " + i)) window.order.push("first " + i);
      window.texts[i] += JSON.parse(event.data).content;
    });
    source.addEventListener("stream_end", () => {
      source.close();
      window.order.push("end " + i);
    });
    source.addEventListener("error", (event) => {
      // A stream's error event (with data), or a connection the browser gave up on.
      if (event.data !== undefined || source.readyState === EventSource.CLOSED) {
        source.close();
        window.failed.push(i);
      }
    });
  });
</script>
""".replace("PROMPTS", json.dumps(PROMPTS))


def instance_config() -> dict[str, Any]:
    """The simulated model at 20 tokens a second, each stream paced on its own."""
    simulated = {"ttft_ms": 0, "tokens_per_second": 20, "jitter": 0, "seed": 7}
    return {"providers": {"simulated": simulated}}


async def load_the_page(
    chromium: Browser, tmp_path: Path, *, tls: bool
) -> tuple[list[str], str, list[str]]:
    """Run the page through nginx (HTTPS and HTTP/2 or plain HTTP/1.1) in front of one instance
    until every stream has ended or failed, and check each stream's text; return the order of
    first tokens and ends, the page's protocol as Chromium names it, and the protocol nginx logged
    for each ``/v1/stream`` request."""
    certificate = self_signed(tmp_path / "tls") if tls else None
    cluster = Cluster(
        instance_config(), tmp_path, count=1, pages={"/streams.html": PAGE}, certificate=certificate
    ).start()
    errors: list[str] = []
    try:
        context = await chromium.new_context(ignore_https_errors=tls)
        page = await context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await page.goto(f"{cluster.base_url}/streams.html")
        await page.wait_for_function(
            f"window.order.filter(e => e.startsWith('end')).length + window.failed.length"
            f" >= {STREAMS}",
            timeout=60_000,
        )
        seen = await page.evaluate(
            "({order: window.order, texts: window.texts, failed: window.failed,"
            " protocol: performance.getEntriesByType('navigation')[0].nextHopProtocol})"
        )
        await context.close()
        logged = await cluster.nginx.logged(STREAMS, path="/v1/stream")
    finally:
        cluster.close()
    # Whatever the protocol, every stream ends with its whole answer, exactly.
    assert errors == []
    assert seen["failed"] == []
    assert seen["texts"] == PROMPTS
    return seen["order"], seen["protocol"], [entry.protocol for entry in logged]


def started_before_the_first_end(order: list[str]) -> int:
    """How many streams had their first token before any stream ended."""
    first_end = next(i for i, entry in enumerate(order) if entry.startswith("end"))
    return len([entry for entry in order[:first_end] if entry.startswith("first")])


def test_the_readme_shows_the_https_and_http2_server_block_the_tests_run():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("**HTTPS and HTTP/2.**") :]
    shown = re.search(r"^```nginx\n(.*?)^```", section, re.MULTILINE | re.DOTALL)

    assert shown is not None, "the README's 'HTTPS and HTTP/2' has no nginx block"
    assert shown.group(1) == readme_tls_conf()


@NEEDS_CHROMIUM
async def test_twelve_eventsources_of_one_page_stream_at_once_over_http2(
    browser: Browser,  # noqa: F811
    tmp_path: Path,
):
    order, protocol, logged = await load_the_page(browser, tmp_path, tls=True)

    assert started_before_the_first_end(order) == STREAMS, order
    assert protocol == "h2"
    assert logged == ["HTTP/2.0"] * STREAMS


@NEEDS_CHROMIUM
async def test_over_http1_the_seventh_eventsource_waits_for_one_to_end(
    browser: Browser,  # noqa: F811
    tmp_path: Path,
):
    # The control: the same page and streams over plain HTTP/1.1 cannot pass the test above.
    order, protocol, logged = await load_the_page(browser, tmp_path, tls=False)

    assert started_before_the_first_end(order) <= HTTP1_CONNECTIONS, order
    assert protocol == "http/1.1"
    assert logged == ["HTTP/1.1"] * STREAMS


async def test_a_websocket_upgrades_through_the_https_server_block(tmp_path: Path):
    certificate = self_signed(tmp_path / "tls")
    trusted = ssl.create_default_context(cafile=certificate.path)
    cluster = Cluster(instance_config(), tmp_path, count=1, certificate=certificate).start()
    messages: list[dict[str, Any]] = []
    try:
        url = f"wss://127.0.0.1:{cluster.nginx.port}/ws/stream"
        async with websockets.connect(url, ssl=trusted) as ws:
            await ws.send(json.dumps({"prompt": PROMPTS[0], "model": "echo"}))
            async for frame in ws:
                messages.append(json.loads(frame))
                if messages[-1]["type"] in ("done", "error"):
                    break
        logged = await cluster.nginx.logged(1)
    finally:
        cluster.close()

    assert "".join(m["content"] for m in messages if m["type"] == "token") == PROMPTS[0]
    assert messages[-1]["type"] == "done"
    assert [(entry.path, entry.status, entry.protocol) for entry in logged] == [
        ("/ws/stream", 101, "HTTP/1.1")
    ]
