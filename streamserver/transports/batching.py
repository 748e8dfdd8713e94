"""The write batching and keep-alive ticker every streaming connection of an app shares, SSE and
WebSocket alike: a tap collects what one loop iteration appended, one callback per iteration writes
every connection's batch, one timer pings the quiet ones."""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from typing import Protocol

from ..settings import ServerSettings

logger = logging.getLogger("streamserver.sse")

BATCH_BYTES = 65536
"""A tap takes at most this much in one loop iteration; then its reader takes the ordinary path,
with flow control and the send timeout (and the producer can be held back)."""


class Flushable(Protocol):
    """Something that collected writes during this loop iteration and writes them at once."""

    def flush(self) -> None:
        """Write what was collected."""
        ...


class Pingable(Protocol):
    """A connection the keep-alive ticker visits."""

    def ping_if_quiet(self) -> None:
        """Send a keep-alive if nothing went out since the last tick."""
        ...


class Writers:
    """The writes of one app's streaming connections (SSE and WebSocket), while their readers keep
    up: two jobs done once for all connections instead of once per connection or per token.

    - **Batching.** A connection's ``tap`` collects the events appended during one event-loop
      iteration; one ``call_soon`` per iteration then writes each connection's events as one
      chunk. An unpaced model or a network read holding many tokens costs one syscall, and a
      thousand paced streams whose timers fall due together share one callback.
    - **Keep-alive pings.** One timer, every half ``ping_interval_s``, pings each connection that
      sent nothing since the last tick: no connection is silent longer than the interval (so no
      proxy idle timeout trips), a busy one is never pinged, and there is no task per connection.
    """

    __slots__ = ("_flushes", "_open", "_ticker", "settings")

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        """The server settings every connection is written with (pings, timeouts)."""
        self._open: set[Pingable] = set()
        self._flushes: list[Flushable] = []
        self._ticker: asyncio.TimerHandle | None = None

    def add(self, conn: Pingable) -> None:
        """Ping ``conn`` while it is open."""
        self._open.add(conn)
        if self._ticker is None:
            self._schedule()

    def discard(self, conn: Pingable) -> None:
        """``conn`` is done; its pings stop."""
        self._open.discard(conn)

    def flush_soon(self, conn: Flushable) -> None:
        """Write ``conn``'s collected events once the current callback is over (a WebSocket's
        collected messages too: the batching is the same)."""
        if not self._flushes:
            asyncio.get_running_loop().call_soon(self._flush)
        self._flushes.append(conn)

    def close(self) -> None:
        """Stop the ping timer (the app is shutting down)."""
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None

    def _flush(self) -> None:
        flushes, self._flushes = self._flushes, []
        for conn in flushes:
            try:
                conn.flush()
            except Exception:  # one connection's failure must not lose the others' writes
                logger.exception("writing to a streaming connection failed")

    def _schedule(self) -> None:
        loop = asyncio.get_running_loop()
        self._ticker = loop.call_later(self.settings.ping_interval_s / 2, self._tick)

    def _tick(self) -> None:
        self._ticker = None
        for conn in list(self._open):
            conn.ping_if_quiet()
        if self._open:
            self._schedule()


class Batch(ABC):
    """What a tap collected during one loop iteration, written at once when ``Writers`` flushes
    (at most ``BATCH_BYTES`` of it): the batching SSE and WebSocket taps share."""

    __slots__ = ("_bytes", "_flusher", "_pending")

    def __init__(self, flusher: Writers) -> None:
        self._flusher = flusher
        self._pending: list[bytes] = []
        self._bytes = 0

    @property
    def full(self) -> bool:
        """A whole batch is collected: take nothing more this iteration."""
        return self._bytes >= BATCH_BYTES

    def collect(self, data: bytes) -> None:
        """Add ``data`` to this iteration's write."""
        if not self._pending:
            # Scheduled before the reader could be woken: what is collected is written first.
            self._flusher.flush_soon(self)
        self._pending.append(data)
        self._bytes += len(data)

    def take(self) -> bytes:
        """Everything collected, as one ``bytes``; the batch starts empty again."""
        pending = self._pending
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        pending.clear()
        self._bytes = 0
        return data

    @abstractmethod
    def flush(self) -> None:
        """Write what was collected."""
