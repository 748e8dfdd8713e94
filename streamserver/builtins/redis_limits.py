"""The ``redis`` limit store (``[limits] store = "redis"``): requests per minute and concurrent
streams counted across every instance that shares one Redis.

Each check is one Lua script (EVALSHA), so it is atomic however many instances ask at once, and
its clock is Redis's own (``TIME``): the instances' clocks do not matter. The keys, all under the
one hash tag ``{limits}`` so that the scripts run on Redis Cluster too (``<prefix>`` is
``[redis] key_prefix``):

- ``<prefix>:{limits}:rate:<identity>``: a hash, one caller's token bucket: ``tokens`` (left,
  a float) and ``at`` (when they were counted, Redis time in seconds). It refills continuously at
  ``requests_per_minute`` a minute up to that many, as the memory store's does; it expires once
  it would be full again (60 s), since a missing bucket is a full one.
- ``<prefix>:{limits}:streams``: a sorted set, every stream generating on any instance, scored by
  when its lease runs out (Redis time in ms); ``max_concurrent_streams`` counts its members.
- ``<prefix>:{limits}:streams:<identity>``: the same for one caller's streams
  (``max_concurrent_streams_per_key``).

A lease lasts ``[redis] lease_s``. The instance that runs a stream renews the leases of all its
streams every third of that, in one pipeline, from one task; a stream's end removes it. An
instance that dies stops renewing, so its streams stop counting once their leases run out:
every acquire first drops the members whose lease has run out. Redis unreachable: a request is
refused with 503 (``StoreUnavailable``); the renewal retries on its own and recovers when Redis
returns (renewing re-adds a stream Redis lost, e.g. after a restart without persistence).

Cost: one round trip per request (the rate, when ``requests_per_minute`` is set), one per stream
start and about one per stream end (ends that come together share one).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from ..hookspecs import Register, hookimpl
from ..stores import StoreUnavailable
from .redis_extra import require_redis

if TYPE_CHECKING:
    from ..config import Config
    from .redis_connection import RedisConnection

log = logging.getLogger("streamserver")

T = TypeVar("T")

_KEEP = """
local function keep(key, ms)  -- a key lives at least as long as its newest lease
  if redis.call('PTTL', key) < ms then redis.call('PEXPIRE', key, ms) end
end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
"""

CHARGE = """
-- KEYS[1]: one caller's bucket; ARGV[1]: requests per minute.
-- Returns 0 (one request taken) or the microseconds until a token is back.
local rate = tonumber(ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local held = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens, at = tonumber(held[1]), tonumber(held[2])
if tokens == nil or at == nil then tokens, at = rate, now end
tokens = math.min(rate, tokens + math.max(0, now - at) * rate / 60)
if tokens < 1 then return math.max(1, math.ceil((1 - tokens) * 60000000 / rate)) end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens - 1),
           'at', string.format('%.17g', now))
redis.call('PEXPIRE', KEYS[1], 61000)
return 0
"""

ACQUIRE = (
    _KEEP
    + """
-- KEYS[1]: every stream; KEYS[2]: this caller's streams.
-- ARGV: the stream id, max in all, max for the caller, the lease in ms.
-- Returns 0 (it counts now), or the limit it would pass: 1 in all, 2 for the caller.
local now = now_ms()
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 1 end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[3]) then return 2 end
local lease = tonumber(ARGV[4])
local expiry = string.format('%.0f', now + lease)
redis.call('ZADD', KEYS[1], expiry, ARGV[1])
redis.call('ZADD', KEYS[2], expiry, ARGV[1])
keep(KEYS[1], lease)
keep(KEYS[2], lease)
return 0
"""
)

RENEW = (
    _KEEP
    + """
-- KEYS[1]: every stream; KEYS[2..n]: one caller's streams each.
-- ARGV[1]: the lease in ms; then, for each caller's key in turn, how many of its streams follow,
-- and their ids. Each gets a lease from now (added again if Redis lost it).
local lease = tonumber(ARGV[1])
local expiry = string.format('%.0f', now_ms() + lease)
local at = 2
for k = 2, #KEYS do
  local count = tonumber(ARGV[at])
  for i = at + 1, at + count do
    redis.call('ZADD', KEYS[1], expiry, ARGV[i])
    redis.call('ZADD', KEYS[k], expiry, ARGV[i])
  end
  at = at + count + 1
  keep(KEYS[k], lease)
end
keep(KEYS[1], lease)
return 0
"""
)

_PASSED = {1: "total", 2: "key"}
"""What the acquire script answers for a limit a stream would pass."""

_CHUNK = 1000
"""Streams renewed per script call (a pipeline sends all the calls in one round trip)."""


class RedisLimits:
    """Counts in Redis, shared by every instance; the leases of this instance's streams."""

    distributed = True

    def __init__(self) -> None:
        require_redis()  # an extra: say so at start-up
        self._connection: RedisConnection | None = None
        self._loop_id = 0
        self._per_minute = 0.0
        self._max_total = 0
        self._max_mine = 0
        self._lease_ms = 0
        self._held: dict[str, str] = {}
        """stream id -> identity: the streams this instance counts, whose leases it renews."""
        self._ending: list[tuple[str, str]] = []
        """Streams that ended, not yet removed from Redis."""
        self._lock = asyncio.Lock()
        """Renewals and removals go one at a time: a removal sent while a renewal of the same
        stream is on the wire could otherwise land first, and the renewal add it back."""
        self._renewer: asyncio.Task[None] | None = None
        self._remover: asyncio.Task[None] | None = None
        self._closed = False
        self._failing = False

    async def open(self, config: Config, instance_id: str) -> None:
        from . import redis_connection  # here: the redis extra may not be installed

        limits = config.limits
        self._per_minute = limits.requests_per_minute
        self._max_total = limits.max_concurrent_streams
        self._max_mine = limits.max_concurrent_streams_per_key
        self._lease_ms = round(config.redis.lease_s * 1000)
        loop = asyncio.get_running_loop()
        self._loop_id = id(loop)
        connection = self._connection = redis_connection.acquire(config.redis, self._loop_id)
        client = connection.client
        self._charge = client.register_script(CHARGE)
        self._acquire = client.register_script(ACQUIRE)
        self._renew = client.register_script(RENEW)
        self._all = connection.tagged("limits", "streams")
        self._renewer = loop.create_task(
            self._renew_forever(config.redis.lease_s / 3), name="limit leases"
        )

    async def aclose(self) -> None:
        self._closed = True
        if self._renewer is not None:
            self._renewer.cancel()
            await asyncio.gather(self._renewer, return_exceptions=True)
        if self._remover is not None:  # the ends already seen: Redis hears of them (bounded)
            await asyncio.gather(self._remover, return_exceptions=True)
        if self._connection is not None:
            from .redis_connection import release

            connection, self._connection = self._connection, None
            await release(connection, self._loop_id)

    async def health(self) -> str | None:
        return None if self._connection is None else await self._connection.health()

    async def charge(self, identity: str) -> float:
        if self._per_minute <= 0:
            return 0.0
        key = self._tagged("rate:" + identity)
        waited = await self._call(lambda: self._charge(keys=[key], args=[repr(self._per_minute)]))
        return int(waited) / 1_000_000

    async def acquire(self, stream_id: str, identity: str) -> str | None:
        remover = self._remover
        if remover is not None and not remover.done():
            # This instance's ended streams leave the count first, as they do in memory: a
            # stream started right after another ended never counts the ended one.
            await asyncio.wait([remover])
        keys = [self._all, self._mine(identity)]
        args: list[str | int] = [stream_id, self._max_total, self._max_mine, self._lease_ms]
        passed = int(await self._call(lambda: self._acquire(keys=keys, args=args)))
        if passed:
            return _PASSED[passed]
        self._held[stream_id] = identity
        return None

    def release(self, stream_id: str, identity: str) -> None:
        if self._held.pop(stream_id, None) is None or self._closed:
            return  # never counted here, or the store is closing: its lease runs out
        self._ending.append((stream_id, identity))
        if self._remover is None or self._remover.done():
            self._remover = asyncio.get_running_loop().create_task(
                self._remove_ended(), name="limit releases"
            )

    async def _remove_ended(self) -> None:
        """Remove the streams that ended from Redis, those that ended together in one round
        trip. Should Redis fail it, their leases (no longer renewed) run out instead."""
        while self._ending:
            async with self._lock:
                ended, self._ending = self._ending, []
                pipe = self._client().pipeline(transaction=False)
                pipe.zrem(self._all, *(stream_id for stream_id, _ in ended))
                for identity, ids in _by_identity(ended).items():
                    pipe.zrem(self._mine(identity), *ids)
                with contextlib.suppress(StoreUnavailable):  # logged; the leases run out
                    await self._call(pipe.execute)

    async def _renew_forever(self, period_s: float) -> None:
        """Renew this instance's leases every ``period_s``, whatever Redis does meanwhile."""
        while True:
            await asyncio.sleep(period_s)
            try:
                await self._renew_held()
            except StoreUnavailable:
                pass  # logged by _call; the next round tries again
            except Exception:  # never let the renewal die: the leases would run out
                log.exception("renewing the limit leases failed")

    async def _renew_held(self) -> None:
        async with self._lock:
            held = _by_identity(list(self._held.items()))
            if not held:
                return
            pipe = self._client().pipeline(transaction=False)
            keys: list[str] = [self._all]
            args: list[str | int] = [self._lease_ms]
            size = 0
            for identity, ids in held.items():
                for start in range(0, len(ids), _CHUNK):
                    part = ids[start : start + _CHUNK]
                    keys.append(self._mine(identity))
                    args += [len(part), *part]
                    size += len(part)
                    if size >= _CHUNK:
                        await self._renew(keys=keys, args=args, client=pipe)  # queued, not sent
                        keys, args, size = [self._all], [self._lease_ms], 0
            if size:
                await self._renew(keys=keys, args=args, client=pipe)
            await self._call(pipe.execute)

    async def _call(self, make: Callable[[], Awaitable[T]]) -> T:
        """One Redis round trip; an outage is logged when it begins and when it ends."""
        if self._connection is None:
            raise StoreUnavailable("the limit store is closed")
        try:
            result = await self._connection.call(make)
        except StoreUnavailable as exc:
            if not self._failing:
                self._failing = True
                log.warning("limits: Redis is unavailable (%s); requests get 503 meanwhile", exc)
            raise
        if self._failing:
            self._failing = False
            log.info("limits: Redis answers again")
        return result

    def _client(self) -> Any:
        assert self._connection is not None
        return self._connection.client

    def _tagged(self, suffix: str) -> str:
        assert self._connection is not None
        return self._connection.tagged("limits", suffix)

    def _mine(self, identity: str) -> str:
        return self._tagged("streams:" + identity)


def _by_identity(pairs: list[tuple[str, str]]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for stream_id, identity in pairs:
        grouped.setdefault(identity, []).append(stream_id)
    return grouped


@hookimpl
def register_limit_stores(register: Register) -> None:
    register(
        "redis",
        lambda options: RedisLimits(),
        description="rate and concurrency counts shared by every instance ([redis])",
    )
