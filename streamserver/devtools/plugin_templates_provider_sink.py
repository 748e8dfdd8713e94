"""What ``streamserver new-plugin`` writes for ``--kind provider`` and ``--kind sink`` (the other
kinds are in ``plugin_templates.py``, with what a template is)."""

from __future__ import annotations

from string import Template

from .plugin_templates import PluginKind

PROVIDER = PluginKind(
    summary="a provider that relays to any OpenAI-compatible chat completions server",
    module=Template('''"""$name: a streamserver provider.

It relays to any OpenAI-compatible server: it posts the conversation to
``<base_url>/chat/completions`` with ``stream: true`` and yields the answer's text deltas as they
arrive, then the finish reason and the usage. The upstream's SSE is read with streamserver's own
decoder. Closing the iterator (the client went away, a cancel) closes the upstream request at
once. The key comes from the environment (``api_key_env``), never from the config file.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import aiohttp
from streamserver import ProviderError, hookimpl
from streamserver.hookspecs import Register
from streamserver.sse_decoder import SSEDecoder
from streamserver.types import Delta, Finish, GenerationRequest, Usage


@dataclass(frozen=True, slots=True)
class RelayOptions:
    """``[providers.$name]`` options."""

    base_url: str = "http://127.0.0.1:8099/v1"
    """The upstream's API root (``streamserver fake-upstream`` serves one on this address)."""
    model: str = "fake-model"
    """The model this provider offers, and asks the upstream for."""
    api_key_env: str = ""
    """The environment variable that holds the upstream's key ("" for none)."""


class RelayProvider:
    """Relays one request to the upstream; text only (no tools, no reasoning)."""

    def __init__(self, options: RelayOptions) -> None:
        self.options = options
        self.session: aiohttp.ClientSession | None = None  # opened by the first stream

    @property
    def models(self) -> Sequence[str]:
        """The one configured model."""
        return (self.options.model,)

    def stream(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        """The answer's text deltas, then one ``Finish``."""
        return self._relay(request)

    async def _relay(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        if self.session is None:
            self.session = aiohttp.ClientSession()
        key = os.environ.get(self.options.api_key_env, "") if self.options.api_key_env else ""
        body = {
            "model": request.model,
            "messages": [{"role": m.role, "content": m.text} for m in request.messages],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if request.max_tokens is not None:
            body["max_tokens"] = request.max_tokens
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        url = self.options.base_url.rstrip("/") + "/chat/completions"
        finish = Finish("stop", request.model)
        async with self.session.post(url, json=body, headers=headers) as response:
            if response.status >= 400:
                raise ProviderError(
                    "upstream_error",
                    f"the upstream answered {response.status}",
                    retryable=response.status == 429 or response.status >= 500,
                )
            decoder = SSEDecoder()
            async for chunk in response.content.iter_any():
                for event in decoder.feed(chunk):
                    if event.data == "[DONE]":
                        yield finish
                        return
                    data = json.loads(event.data)
                    for choice in data.get("choices") or ():
                        text = choice.get("delta", {}).get("content")
                        if text:
                            yield text
                        if choice.get("finish_reason"):
                            finish = Finish(choice["finish_reason"], data.get("model"))
                    usage = data.get("usage")
                    if usage:
                        tokens = Usage(usage["prompt_tokens"], usage["completion_tokens"])
                        finish = Finish(finish.reason, finish.model, tokens)
        yield finish

    async def aclose(self) -> None:
        """Close the HTTP session at shutdown."""
        if self.session is not None:
            await self.session.close()


@hookimpl
def register_providers(register: Register) -> None:
    """Offer the provider type ``$name``."""
    register(
        "$name",
        RelayProvider,
        options=RelayOptions,
        description="an OpenAI relay",
    )
'''),
    tests=Template('''"""The provider against the fake upstream (a real server on 127.0.0.1), alone and in an app."""

from typing import Any

import pytest
from streamserver import ProviderError
from streamserver.devtools.fake_upstream import Plan
from streamserver.testing import gather
from streamserver.types import GenerationRequest, Message

from $name.plugin import RelayOptions, RelayProvider


@pytest.fixture
def streamserver_config(upstream: Any) -> dict[str, Any]:
    """The kit's apps get this provider, pointed at the fake upstream."""
    _, base_url = upstream
    return {"providers": {"$name": {"base_url": base_url}}}


def ask(text: str) -> GenerationRequest:
    return GenerationRequest((Message("user", text),), "fake-model")


async def test_it_yields_the_upstream_text_then_the_finish_and_usage(upstream) -> None:
    fake, base_url = upstream
    fake.queue(Plan(tokens=["Hel", "lo", " world"], usage=(7, 3)))
    provider = RelayProvider(RelayOptions(base_url=base_url))
    try:
        got = await gather(provider, ask("hi"))
    finally:
        await provider.aclose()

    assert got.text == "Hello world"
    assert got.finish is not None and got.finish.reason == "stop"
    assert got.finish.usage is not None and got.finish.usage.completion_tokens == 3


async def test_an_upstream_error_is_a_provider_error(upstream) -> None:
    fake, base_url = upstream
    fake.queue(Plan(fault="server_error"))
    provider = RelayProvider(RelayOptions(base_url=base_url))
    try:
        with pytest.raises(ProviderError, match="the upstream answered 500"):
            await gather(provider, ask("hi"))
    finally:
        await provider.aclose()


async def test_a_client_streams_the_relayed_answer(streamserver_client, upstream) -> None:
    fake, _ = upstream
    fake.queue(Plan(tokens=["Relayed ", "by ", "$name"]))
    got = await streamserver_client.sse(
        "/v1/stream", params={"prompt": "hi", "model": "fake-model"}
    )

    text = "".join(e["content"] for e in got.json() if "content" in e)
    assert text == "Relayed by $name"
    assert got.names()[-1] == "stream_end"
'''),
)


SINK = PluginKind(
    summary="a metrics sink that counts streams by outcome and the tokens they produced",
    module=Template('''"""$name: a streamserver metrics sink that counts streams by outcome.

It sees lifecycle calls only (never one per token) on the sinks' worker thread, so it may take a
lock. Enable it with

    [metrics]
    sinks = ["memory", "$name"]

Its counts show in ``GET /v1/stream/metrics`` under
``${name}_streams`` and
``${name}_tokens``.
"""

from __future__ import annotations

import threading
from collections import Counter

from streamserver import hookimpl
from streamserver.hookspecs import Register
from streamserver.types import MetricsSink, StreamEnd, StreamStart


class OutcomeSink(MetricsSink):
    """Streams by outcome (``completed``, ``cancelled``, ``error``, ...) and tokens in all."""

    def __init__(self, options: object) -> None:
        self.lock = threading.Lock()  # the worker thread writes, the event loop reads
        self.outcomes: Counter[str] = Counter()
        self.tokens = 0

    def stream_finished(self, info: StreamStart, summary: StreamEnd) -> None:
        """Count one stream that ended, whatever the outcome."""
        with self.lock:
            self.outcomes[summary.outcome] += 1
            self.tokens += summary.tokens

    def snapshot(self) -> dict[str, object]:
        """The counts, for ``GET /v1/stream/metrics``."""
        with self.lock:
            return {
                "${name}_streams": dict(self.outcomes),
                "${name}_tokens": self.tokens,
            }


@hookimpl
def register_metrics_sinks(register: Register) -> None:
    """Offer the sink as ``$name``."""
    register(
        "$name",
        OutcomeSink,
        description="streams by outcome",
    )
'''),
    tests=Template('''"""The $name sink, counting real streams."""

import asyncio
from typing import Any

import pytest
from streamserver.testing import DEFAULT_SECTIONS, script
from streamserver.types import StreamEnd, StreamStart

from $name.plugin import OutcomeSink


@pytest.fixture
def streamserver_config() -> dict[str, Any]:
    """The kit's apps run this sink beside the built-in ``memory`` one."""
    return {
        **DEFAULT_SECTIONS,
        "metrics": {"sinks": ["memory", "$name"]},
    }


def test_it_counts_a_finished_stream_by_outcome() -> None:
    sink = OutcomeSink(None)
    info = StreamStart("s1", "/v1/stream", "simulated", "echo", 0.0)
    summary = StreamEnd("s1", "echo", "cancelled", "cancelled", 4, 2, 9, 0.1, 0.01)
    sink.stream_finished(info, summary)

    assert sink.snapshot() == {
        "${name}_streams": {"cancelled": 1},
        "${name}_tokens": 4,
    }


async def test_the_metrics_route_shows_the_counts(streamserver_client) -> None:
    for _ in range(2):
        params = {"prompt": script(["one ", "two"]), "model": "scripted"}
        await streamserver_client.sse("/v1/stream", params=params)

    for _ in range(200):  # the sink runs on a worker thread: its counts land a moment later
        metrics = (await streamserver_client.http.get("/v1/stream/metrics")).json()
        if metrics["${name}_streams"] == {"completed": 2}:
            break
        await asyncio.sleep(0.01)
    assert metrics["${name}_streams"] == {"completed": 2}
    assert metrics["${name}_tokens"] == 4
'''),
)
