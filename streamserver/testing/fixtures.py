"""Fixtures that run the real thing: a streamserver app with your plugin loaded, on 127.0.0.1 at
an ephemeral port, read by an independent SSE client (httpx + httpx-sse, not streamserver's own
parser), and the fake OpenAI/Anthropic upstream.

Which plugins the app loads is a fixture, ``streamserver_plugins``: override it in your
``conftest.py`` with the modules of your package. A module that an installed entry point already
names is not loaded a second time (two registrations of one name would stop the app).
"""

from __future__ import annotations

import asyncio
import copy
import importlib.metadata
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from httpx_sse import ServerSentEvent, aconnect_sse

from ..config import Config, load_config
from ..devtools.fake_upstream import FakeUpstream
from ..plugins import ENTRY_POINT_GROUP, PluginRegistry
from ..web.app import create_app
from . import scripted

FAST_SIMULATED = {"ttft_ms": 0, "tokens_per_second": 0, "seed": 7, "answer_tokens": 40}
"""Options of a simulated provider that answers at once (no pacing: tests wait for nothing)."""

DEFAULT_SECTIONS: dict[str, Any] = {
    "server": {"ping_interval_s": 5},
    "providers": {"simulated": FAST_SIMULATED, "scripted": {}},
}
"""What ``streamserver_config`` holds unless overridden: the fast simulated provider (models
``simulated``, ``echo``, ``sim-tools``, ``sim-reasoner``) and the scripted one (``scripted``)."""


def plugin_config(plugins: Iterable[str] = (), sections: Mapping[str, Any] | None = None) -> Config:
    """A validated config with the plugin modules ``plugins`` loaded beside the built-ins, the
    scripted provider and any installed entry points (no plugins directory), and ``sections``
    (default: ``DEFAULT_SECTIONS``)."""
    installed = {ep.module for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}
    modules = [scripted.__name__, *(m for m in plugins if m not in installed)]
    registry = PluginRegistry()
    registry.load(plugins_dir=None, modules=modules)
    raw = copy.deepcopy(dict(DEFAULT_SECTIONS if sections is None else sections))
    return load_config(raw, registry=registry)


@dataclass
class Received:
    """One SSE response as an independent parser saw it."""

    status: int
    headers: httpx.Headers
    events: list[ServerSentEvent] = field(default_factory=list)

    def json(self) -> list[Any]:
        """Every event's data parsed as JSON."""
        return [json.loads(e.data) for e in self.events]

    def names(self) -> list[str]:
        """Every event's name (``message`` for unnamed events)."""
        return [e.event for e in self.events]


class Client:
    """HTTP client bound to one running server (``http``: an ``httpx.AsyncClient``)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.http = httpx.AsyncClient(base_url=base_url, timeout=10)

    async def sse(
        self,
        path: str,
        *,
        method: str = "GET",
        params: dict[str, Any] | None = None,
        json_body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> Received:
        """Read a whole SSE response (or the error body of a refused one)."""
        async with aconnect_sse(
            self.http, method, path, params=params, json=json_body, headers=dict(headers or {})
        ) as source:
            response = source.response
            received = Received(response.status_code, response.headers)
            if response.headers.get("content-type", "").startswith("text/event-stream"):
                received.events = [event async for event in source.aiter_sse()]
            else:
                await response.aread()
                received.events = [ServerSentEvent(data=response.text)]
        return received

    async def close(self) -> None:
        """Close the HTTP client."""
        await self.http.aclose()


ServeFactory = Callable[..., Awaitable[Client]]
"""``await serve(config=None, app=None)``: see the ``serve`` fixture."""


@pytest.fixture
def streamserver_plugins() -> list[str]:
    """The plugin modules the kit's apps load (override it: ``return ["my_package.plugin"]``)."""
    return []


@pytest.fixture
def streamserver_config() -> dict[str, Any]:
    """The config sections of the kit's apps (override it to add your part's sections)."""
    return copy.deepcopy(DEFAULT_SECTIONS)


@pytest.fixture
async def serve(
    streamserver_plugins: list[str], streamserver_config: dict[str, Any]
) -> AsyncIterator[ServeFactory]:
    """Start apps on 127.0.0.1 (an ephemeral port each); ``await serve()`` returns a ``Client``.

    With no argument the app has ``streamserver_plugins`` loaded and ``streamserver_config``'s
    sections; ``serve(config)`` takes what ``streamserver.create_app`` takes instead, and
    ``serve(app=app)`` serves an app you built. Every app and client closes after the test."""
    servers: list[TestServer] = []
    clients: list[Client] = []

    async def start(config: Any = None, app: web.Application | None = None) -> Client:
        if app is None:
            if config is None:
                config = plugin_config(streamserver_plugins, streamserver_config)
            app = create_app(config)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        client = Client(str(server.make_url("")).rstrip("/"))
        clients.append(client)
        return client

    yield start
    for client in clients:
        await client.close()
    for server in servers:
        await server.close()


@pytest.fixture
async def streamserver_client(serve: ServeFactory) -> Client:
    """A client for an app with your plugins loaded (``streamserver_plugins``)."""
    return await serve()


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[FakeUpstream, str]]:
    """A fake OpenAI/Anthropic upstream on 127.0.0.1; yields it and its ``/v1`` base URL."""
    fake = FakeUpstream()
    server = TestServer(fake.app(), host="127.0.0.1")
    await server.start_server()
    yield fake, str(server.make_url("/v1"))
    await server.close()


async def wait_until(predicate: Callable[[], bool], timeout: float = 2.0) -> None:  # noqa: ASYNC109
    """Poll ``predicate`` until true (bounded), for effects that land a moment later (a metrics
    sink runs on the sinks' worker thread)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)
