"""A browser's own ``EventSource`` behind nginx, cut mid-stream: it reconnects by itself, nginx's
round robin sends the reconnect to the other instance, and the page must still end with the whole
answer, each event once.

Chromium (Playwright, as in ``tests/test_demo_page.py``) loads a small page that nginx serves
itself, so the page and ``/v1/stream`` share an origin; the page's connections pass through a TCP
proxy (``tests/fakes/tcp_proxy.py``) that cuts them, with an RST, while the stream goes on: its
instance keeps generating for ``resume.grace_s``. nginx's access log says which instance served
each request.

Only a stream store both instances share can serve that reconnect: until the ``redis`` stream store
is registered, the instances run the memory store, the other instance answers 404 and the test is
an expected failure (strict: once the store exists, the test runs against it and must pass).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from fakes.cluster import Cluster
from fakes.tcp_proxy import TCPProxy
from playwright.async_api import Browser, async_playwright
from test_demo_page import CHROMIUM, CHROMIUM_ARGS, NEEDS_CHROMIUM

pytestmark = NEEDS_CHROMIUM

PROMPT = (
    "A plain EventSource that loses its connection comes back by itself with the id of the last "
    "event it had, and whichever instance the balancer picks sends it the rest of this answer. "
) * 2
"""Streamed back by ``model=echo``: 80 tokens, four seconds at 20 tokens a second (the cut comes
after five)."""

PAGE = """<!doctype html>
<meta charset="utf-8">
<title>EventSource behind nginx</title>
<script>
  // Everything the stream sends, as the browser's own EventSource hands it over.
  window.received = [];
  window.state = "connecting";
  const prompt = new URLSearchParams(location.search).get("prompt");
  const source = new EventSource("/v1/stream?" + new URLSearchParams({prompt, model: "echo"}));
  source.onopen = () => { window.state = "open"; };
  for (const name of ["stream_start", "token", "stream_end", "error"]) {
    source.addEventListener(name, (event) => {
      if (event.data === undefined) {  // not an event of the stream: the connection's error
        window.state = source.readyState === EventSource.CLOSED ? "failed" : "reconnecting";
        return;
      }
      window.received.push({name, id: event.lastEventId, data: JSON.parse(event.data)});
      if (name === "stream_end") {
        source.close();
        window.state = "ended";
      }
    });
  }
</script>
"""


def instance_config(redis_url: str) -> dict[str, Any]:
    """20 tokens a second; EventSource retries after 200 ms; a stream whose reader left goes on
    for 30 s; the streams in Redis."""
    simulated = {"ttft_ms": 0, "tokens_per_second": 20, "jitter": 0, "seed": 7}
    return {
        "server": {"retry_ms": 200},
        "providers": {"simulated": simulated},
        "resume": {"grace_s": 30, "store": "redis"},
        "redis": {"url": redis_url},
    }


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        yield chromium
        await chromium.close()


async def test_an_eventsource_cut_mid_stream_resumes_on_the_other_instance_exactly(
    browser: Browser, redis_url: str, tmp_path: Path
):
    cluster = Cluster(instance_config(redis_url), tmp_path, pages={"/eventsource.html": PAGE})
    cluster.start()
    proxy = TCPProxy("127.0.0.1", cluster.nginx.port)
    errors: list[str] = []
    try:
        port = await proxy.start()
        context = await browser.new_context()
        page = await context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await page.goto(f"http://127.0.0.1:{port}/eventsource.html?{urlencode({'prompt': PROMPT})}")
        await page.wait_for_function(
            "window.received.filter(event => event.name === 'token').length >= 5", timeout=20_000
        )
        proxy.cut()  # mid-stream, an RST both ways: the browser reconnects by itself
        before_cut = await page.evaluate("window.received.map(event => event.name)")
        await page.wait_for_function("['ended', 'failed'].includes(window.state)", timeout=30_000)
        received = await page.evaluate("window.received")
        state = await page.evaluate("window.state")
        logged = await cluster.nginx.logged(2, path="/v1/stream")
        await context.close()
    finally:
        await proxy.close()
        cluster.close()

    assert "stream_end" not in before_cut, "the stream had ended before the cut"
    first = next(entry for entry in logged if entry.last_event_id == "-")
    reconnect = next(entry for entry in logged if entry.last_event_id != "-")
    assert reconnect.upstream != first.upstream, "the reconnect went to the same instance"
    assert reconnect.status == 200, (
        f"the reconnect (Last-Event-ID {reconnect.last_event_id}) reached the other instance "
        f"({reconnect.upstream}), which answered {reconnect.status}"
    )
    ids = [event["id"] for event in received]
    assert len(ids) == len(set(ids)), f"an event arrived twice: {ids}"
    assert [int(i.rsplit(":", 1)[1]) for i in ids] == list(range(len(ids)))
    assert "".join(e["data"]["content"] for e in received if e["name"] == "token") == PROMPT
    assert state == "ended"
    assert errors == []
