"""Shared fixtures: a real streamserver on 127.0.0.1 (ephemeral port) and an independent SSE client.

Streams are read with httpx + httpx-sse, not with our own parser, so a test of the wire shape is a
test against what other software understands.
"""

from __future__ import annotations

import asyncio
import copy
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from httpx_sse import ServerSentEvent, aconnect_sse

import streamserver
from streamserver.devtools.fake_upstream import FakeUpstream

# tests/ is importable for the fakes (``fakes.tcp_proxy``), and tests/plugin_fixtures/, the home of
# every test plugin, so that ``plugins.modules`` can name one ("scripted_provider").
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent / "plugin_fixtures"))

from fakes.redis_server import RedisServer  # importable once the path is set

REPO = Path(__file__).resolve().parent.parent

FAST_SIMULATED = {"ttft_ms": 0, "tokens_per_second": 0, "seed": 7, "answer_tokens": 40}


def base_config(**sections: Any) -> dict[str, Any]:
    """A config dict with a fast simulated provider and no plugins directory; ``sections`` merge in."""
    config: dict[str, Any] = {
        "server": {"plugins_dir": str(REPO / "tests" / "no-plugins-here"), "ping_interval_s": 5},
        "providers": {"simulated": dict(FAST_SIMULATED)},
    }
    for name, value in sections.items():
        if isinstance(value, dict) and isinstance(config.get(name), dict):
            config[name] = {**config[name], **copy.deepcopy(value)}
        else:
            config[name] = copy.deepcopy(value)
    return config


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
    """HTTP client bound to one running server."""

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


@pytest.fixture
async def serve() -> AsyncIterator[ServeFactory]:
    """Start ``streamserver.create_app(config)`` on 127.0.0.1; returns a client for it."""
    servers: list[TestServer] = []
    clients: list[Client] = []

    async def start(config: Any = None, app: web.Application | None = None) -> Client:
        if app is None:
            app = streamserver.create_app(base_config() if config is None else config)
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
async def client(serve: ServeFactory) -> Client:
    """A client for a server with the default test config."""
    return await serve()


async def wait_until(predicate: Callable[[], bool], timeout: float = 2.0) -> None:  # noqa: ASYNC109
    """Poll ``predicate`` until true (bounded), for effects that land a moment later."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


SCRIPTED = {
    "plugins": {"modules": ["scripted_provider"]},
    "providers": {"simulated": dict(FAST_SIMULATED), "scripted": {}},
}
"""Config sections that add the scripted test provider (see ``tests/plugin_fixtures/scripted_provider.py``)."""


def script(deltas: list[str], **options: Any) -> str:
    """The prompt that makes the scripted provider yield ``deltas``."""
    return json.dumps({"deltas": deltas, **options})


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[FakeUpstream, str]]:
    """A fake OpenAI/Anthropic upstream on 127.0.0.1; yields it and its ``/v1`` base URL."""
    fake = FakeUpstream()
    server = TestServer(fake.app(), host="127.0.0.1")
    await server.start_server()
    yield fake, str(server.make_url("/v1"))
    await server.close()


def upstream_config(base_url: str, **provider: Any) -> dict[str, Any]:
    """A test config whose ``fake`` provider is the openai provider pointed at the fake upstream."""
    fake = {"type": "openai", "base_url": base_url, "api_key_env": "", "model": "fake-model",
            "max_retries": 2, "timeout_s": 5, **provider}  # fmt: skip
    return base_config(providers={"simulated": dict(FAST_SIMULATED), "fake": fake})


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A real ``redis-server`` on its own free port for the whole run (flush it per test with
    the ``redis_url`` fixture)."""
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session's Redis, empty, restarted if an earlier test stopped it."""
    if redis_server.process is None:
        redis_server.start()
    redis_server.flush()
    return redis_server.url
