"""Shared fixtures: the plugin authors' kit (``streamserver.testing``: ``serve``, a real
streamserver on 127.0.0.1 at an ephemeral port, read by an independent SSE client; ``upstream``,
the fake upstream), and the project's own configs and stores.

Streams are read with httpx + httpx-sse, not with our own parser, so a test of the wire shape is a
test against what other software understands. ``Client``, ``script``, ``wait_until``... are
imported here from the kit so that ``from conftest import ...`` keeps working.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.register_assert_rewrite("streamserver.testing")  # the kit's plugin, imported just below

from streamserver.testing import (  # noqa: E402 (after the rewrite is registered)
    FAST_SIMULATED,
    Client,
    Received,
    ServeFactory,
    script,
    wait_until,
)

# tests/ is importable for the fakes (``fakes.tcp_proxy``), and tests/plugin_fixtures/, the home of
# every test plugin, so that ``plugins.modules`` can name one ("recording_provider").
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent / "plugin_fixtures"))

from fakes.redis_server import RedisServer  # noqa: E402 (importable once the path is set)

pytest_plugins = ["streamserver.testing"]

__all__ = ["FAST_SIMULATED", "REPO", "SCRIPTED", "Client", "Received", "ServeFactory", "base_config",
           "script", "upstream_config", "wait_until"]  # fmt: skip

REPO = Path(__file__).resolve().parent.parent


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


@pytest.fixture
def streamserver_config() -> dict[str, Any]:
    """What the kit's ``serve()`` starts with no argument, here: ``base_config()``."""
    return base_config()


@pytest.fixture
async def client(serve: ServeFactory) -> Client:
    """A client for a server with the default test config."""
    return await serve()


SCRIPTED = {
    "plugins": {"modules": ["streamserver.testing.scripted"]},
    "providers": {"simulated": dict(FAST_SIMULATED), "scripted": {}},
}
"""Config sections that add the scripted provider (``streamserver/testing/scripted.py``)."""


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
