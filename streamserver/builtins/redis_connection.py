"""The one Redis client an app's ``redis`` stores share (``[redis]``): a connection pool, a
timeout on every call, and the key names.

Every call is bounded by ``timeout_s`` (connect, read, and waiting for a pooled connection when
all are busy), with no retry by the library: a timed-out write may still run on the server once
it wakes, so only the stores retry, and only what is safe to repeat (the stream store's appends
say where they start, and Redis skips what it has). A call that fails raises
``StoreUnavailable``, which the stores' callers turn into a 503 or carry on without. Keys of one
stream or conversation share a hash tag (``{st_...}``), so Redis Cluster keeps them on one slot.
"""

from __future__ import annotations

import asyncio
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
        self.client: redis.Redis = client_for(
            settings, settings.max_connections, settings.timeout_s, "streamserver"
        )

    def key(self, *parts: str) -> str:
        """``<prefix>:<part>:...``."""
        return ":".join((self.prefix, *parts))

    def tagged(self, item_id: str, suffix: str) -> str:
        """A key of one stream or conversation: ``<prefix>:{<id>}:<suffix>`` (one Cluster slot)."""
        return f"{self.prefix}:{{{item_id}}}:{suffix}"

    async def call(self, make: Callable[[], Awaitable[T]]) -> T:
        """Run one Redis call (or pipeline), as ``StoreUnavailable`` if Redis fails it."""
        try:
            result = await make()
        except (RedisError, OSError) as exc:
            if cancelling():
                raise asyncio.CancelledError from exc
            raise StoreUnavailable(describe(exc)) from None
        if cancelling():
            raise asyncio.CancelledError
        return result

    async def health(self) -> str | None:
        """``None`` when Redis answers a PING within the timeout; else the reason."""
        try:
            await self.client.ping()
        except (RedisError, OSError) as exc:
            return f"redis: {describe(exc)}"
        return None

    async def aclose(self) -> None:
        await self.client.aclose()


def cancelling() -> bool:
    """Whether the current task was asked to stop, even though the call returned.

    redis-py sends each command under its socket timeout with ``asyncio.wait_for``, which on
    Python 3.11 returns normally when the cancel arrives as the send completes (fixed in 3.12):
    the cancel is lost, and a loop that calls Redis again (a lease's renewal, a follower) never
    ends, so a shutdown that waits for it hangs. Every call of the stores goes through
    ``RedisConnection.call``, which gives the cancel back (and the notices' listener, which
    calls redis-py itself, asks after each message).
    """
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def client_for(
    settings: RedisSettings, connections: int, read_timeout_s: float, name: str
) -> redis.Redis:
    """A client with its own pool of at most ``connections``: a call waits up to ``timeout_s``
    for a free one (a burst queues instead of failing), reads time out after
    ``read_timeout_s``, nothing is retried by the library. A URL that does not parse is a
    config error that does not repeat the URL (it may hold a password)."""
    retry = Retry(NoBackoff(), 0)
    try:
        pool = redis.BlockingConnectionPool.from_url(
            redis_url(settings),
            max_connections=connections,
            timeout=settings.timeout_s,
            socket_timeout=read_timeout_s,
            socket_connect_timeout=settings.timeout_s,
            retry=retry,
            health_check_interval=30,
            client_name=name,
        )
    except ValueError:
        key = "redis.url_env" if settings.url_env else "redis.url"
        raise ConfigError(
            key, "a URL like redis://[user:password@]host:port/db (rediss:// for TLS)"
        ) from None
    return redis.Redis(connection_pool=pool, retry=retry)


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
