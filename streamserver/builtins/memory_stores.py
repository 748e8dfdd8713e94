"""The embedded default stores: ``memory`` for live streams (nothing shared beyond this process:
the registry alone serves resume) and ``memory`` for the limits' counts."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from ..hookspecs import Register, hookimpl
from ..stores import Appended, Entries, Notice, SharedStream, StreamState

if TYPE_CHECKING:
    from ..config import Config


class MemoryStreams:
    """Shares nothing: a stream lives in the process that runs it (``distributed`` is False, so
    the service never calls the methods below; they answer as a store that holds nothing)."""

    distributed = False

    async def open(
        self, config: Config, instance_id: str, on_notice: Callable[[Notice, str], None]
    ) -> None:
        return None

    async def aclose(self) -> None:
        return None

    async def health(self) -> str | None:
        return None

    async def create(self, streams: Sequence[tuple[SharedStream, str]]) -> list[str | None]:
        return [None] * len(streams)

    async def started_with(self, caller: str, idempotency_key: str) -> str | None:
        return None

    async def write(self, appended: Sequence[Appended]) -> list[bool]:
        return [False] * len(appended)

    async def state(self, stream_id: str) -> StreamState | None:
        return None

    async def read(self, stream_id: str, start: int, wait_s: float) -> Entries:
        raise LookupError(stream_id)

    async def owner_alive(self, owner: str) -> bool:
        return False

    async def mark_lost(self, stream_id: str, end: int) -> bool:
        return False

    async def notify(self, notice: Notice, stream_id: str) -> None:
        return None

    async def reading(self, stream_id: str, until: float) -> None:
        return None

    async def readers_elsewhere(self, stream_id: str) -> int:
        return 0

    async def renew(self, owned: Sequence[str], reading: Sequence[str]) -> None:
        return None


class MemoryLimits:
    """The limits' counts of this process: a token bucket per caller, the streams it runs."""

    distributed = False

    def __init__(self) -> None:
        self._per_minute = 0.0
        self._max_total = 0
        self._max_mine = 0
        self._buckets: dict[str, tuple[float, float]] = {}
        """identity -> (tokens left, when they were counted)."""
        self._counted: dict[str, str] = {}
        """stream id -> identity, for the streams that count now."""
        self._by_key: dict[str, int] = {}

    async def open(self, config: Config, instance_id: str) -> None:
        self._per_minute = config.limits.requests_per_minute
        self._max_total = config.limits.max_concurrent_streams
        self._max_mine = config.limits.max_concurrent_streams_per_key

    async def aclose(self) -> None:
        return None

    async def health(self) -> str | None:
        return None

    async def charge(self, identity: str) -> float:
        rate = self._per_minute
        if rate <= 0:
            return 0.0
        now = time.monotonic()
        tokens, at = self._buckets.get(identity, (rate, now))
        tokens = min(rate, tokens + (now - at) * rate / 60)
        if tokens < 1:
            return (1 - tokens) * 60 / rate
        self._buckets[identity] = (tokens - 1, now)
        if len(self._buckets) > 100_000:  # forget the idle: one-off clients cannot grow this
            self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < 120}
        return 0.0

    async def acquire(self, stream_id: str, identity: str) -> str | None:
        if len(self._counted) >= self._max_total:
            return "total"
        mine = self._by_key.get(identity, 0)
        if mine >= self._max_mine:
            return "key"
        self._counted[stream_id] = identity
        self._by_key[identity] = mine + 1
        return None

    def release(self, stream_id: str, identity: str) -> None:
        if self._counted.pop(stream_id, None) is None:  # never counted, or released already
            return
        left = self._by_key.get(identity, 1) - 1
        if left:
            self._by_key[identity] = left
        else:
            self._by_key.pop(identity, None)


@hookimpl
def register_limit_stores(register: Register) -> None:
    register(
        "memory",
        lambda options: MemoryLimits(),
        description="rate and concurrency counts of this process",
    )


@hookimpl
def register_stream_stores(register: Register) -> None:
    register(
        "memory",
        lambda options: MemoryStreams(),
        description="live streams in this process only (resume on the same instance)",
    )
