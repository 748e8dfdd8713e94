"""The one Redis client an app's ``redis`` stores share (``[redis]``): a connection pool, a
timeout on every call, and the key names.

Every call is bounded by ``timeout_s`` (connect and read), with one retry on a fresh connection
(a pooled one Redis closed while it was away); a call that still fails raises
``StoreUnavailable``, which the stores' callers turn into a 503 or carry on without. Keys of one
stream or conversation share a hash tag (``{st_...}``), so Redis Cluster keeps them on one slot.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from ..errors import ConfigError
from ..settings import RedisSettings
from ..stores import StoreUnavailable

T = TypeVar("T")


def redis_url(settings: RedisSettings) -> str:
    """The server's URL: the ``url_env`` variable's value when that is set, else ``url``."""
    if settings.url_env:
        value = os.environ.get(settings.url_env, "")
        if not value:
            raise ConfigError(
                "redis.url_env",
                f"the environment variable {settings.url_env} set to a redis:// URL",
            )
        return value
    return settings.url


class RedisConnection:
    """A pooled client and the key prefix; ``call`` turns every Redis failure into
    ``StoreUnavailable`` with a message that names no password."""

    def __init__(self, settings: RedisSettings) -> None:
        self.settings = settings
        self.prefix = settings.key_prefix
        # A blocking pool: a call finding every connection busy (a burst of stream starts)
        # waits for one, up to the timeout, where the default pool fails it at once.
        pool = redis.BlockingConnectionPool.from_url(
            redis_url(settings),
            socket_timeout=settings.timeout_s,
            socket_connect_timeout=settings.timeout_s,
            max_connections=settings.max_connections,
            timeout=settings.timeout_s,
            retry=Retry(NoBackoff(), 1),
            health_check_interval=30,
            client_name="streamserver",
        )
        self.client: redis.Redis = redis.Redis.from_pool(pool)

    def key(self, *parts: str) -> str:
        """``<prefix>:<part>:...``."""
        return ":".join((self.prefix, *parts))

    def tagged(self, item_id: str, suffix: str) -> str:
        """A key of one stream or conversation: ``<prefix>:{<id>}:<suffix>`` (one Cluster slot)."""
        return f"{self.prefix}:{{{item_id}}}:{suffix}"

    async def call(self, make: Callable[[], Awaitable[T]]) -> T:
        """Run one Redis call (or pipeline), as ``StoreUnavailable`` if Redis fails it."""
        try:
            return await make()
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(describe(exc)) from None

    async def health(self) -> str | None:
        """``None`` when Redis answers a PING within the timeout; else the reason."""
        try:
            await self.client.ping()
        except (RedisError, OSError) as exc:
            return f"redis: {describe(exc)}"
        return None

    async def aclose(self) -> None:
        await self.client.aclose()


def describe(exc: BaseException) -> str:
    """A Redis failure in a few words, never with the URL's password."""
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:300]


_shared: dict[tuple[int, str, str], tuple[RedisConnection, int]] = {}
"""Open connections by (loop, URL, prefix), with how many stores hold each."""


def acquire(settings: RedisSettings, loop_id: int) -> RedisConnection:
    """The app's connection to this Redis (one pool for all its stores); ``release`` it after."""
    key = (loop_id, redis_url(settings), settings.key_prefix)
    found = _shared.get(key)
    if found is None:
        connection = RedisConnection(settings)
        _shared[key] = (connection, 1)
        return connection
    _shared[key] = (found[0], found[1] + 1)
    return found[0]


async def release(connection: RedisConnection, loop_id: int) -> None:
    """A store is done with ``connection``; the last one closes it."""
    for key, (held, count) in list(_shared.items()):
        if held is connection and key[0] == loop_id:
            if count > 1:
                _shared[key] = (held, count - 1)
                return
            del _shared[key]
    await connection.aclose()


def as_text(value: Any) -> str:
    """A Redis reply value as text."""
    return value.decode() if isinstance(value, bytes) else str(value)
