"""The event log of one stream: encoded events in order, read by any number of readers, each from
its own position.

Transports never talk to the pipeline; they read the log. That one idea gives resume (start
reading at ``seq + 1``), several readers per stream, and batching (a reader that is behind takes
everything available and writes it at once). Backpressure: when the slowest reader is
``high_water`` events behind, the producer waits, so an unread stream holds still instead of
growing memory, and the wait reaches the upstream socket. Events every reader has written are
dropped, or, when the stream is kept for resume, compressed into an archive.
"""

from __future__ import annotations

import asyncio
from array import array
from bisect import bisect_right
from collections.abc import Awaitable, Callable, Generator
from functools import partial
from typing import Any, TypeAlias, cast

import lz4.block

_DROP_BATCH = 32
"""Without retention, events every reader has written are dropped this many at a time."""

_SEGMENT = 16
"""With retention, events every reader has written are compressed at least this many at a time."""
_WIDTH = array("I").itemsize
"""Bytes per event length in a segment."""

Tap: TypeAlias = Callable[[bytes | str], bool]
"""Hands a reader one new event synchronously; returns False to decline (the reader then wakes
and writes it the ordinary way)."""


class StreamLog:
    """Append-only log of one stream's wire events (bytes for SSE, str for WebSocket).

    Sequence numbers are positions in the log; ``end`` is the next one. The producer appends
    synchronously and awaits ``writable()`` when ``full``; readers ``wait(pos)`` then ``read(pos)``.
    A reader that has caught up may ``follow`` with a tap instead: each new event is handed to the
    tap the moment it is appended (a direct socket write for SSE), with no task switch per event.
    """

    __slots__ = (
        "_archive",
        "_base",
        "_compress",
        "_counted",
        "_items",
        "_max_bytes",
        "_parked",
        "_readers",
        "_retain",
        "_wake_floor",
        "_writable",
        "closed",
        "end",
        "floor",
        "high_water",
        "nbytes",
        "trimmed",
    )

    def __init__(
        self,
        high_water: int,
        *,
        retain: bool = True,
        max_bytes: int = 0,
        compress: bool = False,
        base: int = 0,
    ) -> None:
        self._items: list[bytes | str] = []
        self._base = base
        """Sequence number of ``_items[0]`` (above 0 once read events are dropped or archived)."""
        self._compress = compress and retain
        """Keep retained events every reader has written compressed (bytes logs only)."""
        self._archive: _Archive | None = None
        self.end = base
        """Sequence number the next appended event gets (``base``, above 0 for a copy of a log
        whose oldest events are gone)."""
        self._retain = retain
        self._readers: list[Reader] = []
        self._parked: list[Reader] = []
        """Readers waiting for the next event (some with a tap)."""
        self._writable: asyncio.Future[None] | None = None
        self._wake_floor = 0
        """The floor at which the waiting producer is woken."""
        self.high_water = high_water
        self._counted = 0
        """Attached readers that count in ``readers`` (all but a store's mirror)."""
        self.floor = base
        """Position of the slowest reader: the producer may run ``high_water`` events ahead."""
        self.closed = False
        self.nbytes = 0
        self._max_bytes = max_bytes
        self.trimmed = 0
        """Events dropped (already read by every reader) to keep the log under ``max_bytes``."""

    @property
    def full(self) -> bool:
        """True when the slowest reader is ``high_water`` or more events behind."""
        return self.end - self.floor >= self.high_water

    def append(self, item: bytes | str) -> None:
        """Add one encoded event and hand it to waiting readers. Hot path: keep it short."""
        self._items.append(item)
        self.end += 1
        self.nbytes += len(item)
        if self._parked:
            self._deliver(item)

    def _deliver(self, item: bytes | str) -> None:
        end = self.end
        tapped = woken = False
        for reader in self._parked:
            tap = reader.tap
            if tap is not None and reader.pos == end - 1 and tap(item):
                reader.pos = end
                tapped = True
            else:
                reader.wake()
                woken = True
        if woken:
            self._parked = [r for r in self._parked if r.waiter is not None]
        if tapped:
            self._update_floor()

    def read(self, pos: int) -> list[bytes | str]:
        """Every event from ``pos`` to the end (empty if none). ``pos`` must not be trimmed."""
        if pos >= self._base:
            return self._items[pos - self._base :]
        assert self._archive is not None, "read before the oldest kept event"
        return [*self._archive.read(pos), *self._items]

    @property
    def oldest(self) -> int:
        """The position of the oldest event still kept (retention trims the start)."""
        archive = self._archive
        if archive is not None and archive.base < archive.end:
            return archive.base
        return self._base

    def available(self, pos: int) -> bool:
        """Whether the events from ``pos`` on are still kept (a position past the end of a live
        stream is kept too: its reader waits for it)."""
        return pos >= self.oldest

    def wait(self, pos: int) -> Awaitable[None]:
        """Done once an event at ``pos`` exists or the log is closed."""
        if pos < self.end or self.closed:
            return _READY
        return self._park(Reader(pos), None)

    def follow(self, reader: Reader, tap: Tap) -> Awaitable[None]:
        """Hand each new event to ``tap`` as it is appended (advancing ``reader``) until the tap
        declines one or the log closes; done then, with that event unread.

        Not a coroutine itself: a reader that follows a stream for its whole life holds one
        suspended frame (``_park``'s), not two.
        """
        if reader.pos < self.end or self.closed:
            return _READY
        return self._park(reader, tap)

    def watch(self, pos: int, tap: Tap, closed: Callable[[], None]) -> Reader:
        """Follow the log from ``pos`` for good, with no task: ``tap`` takes the events already
        there now and each new one as it is appended, and must accept every one (a declined
        event would end the watch unheard); ``closed`` is called once, soon after the log closes,
        unless ``unwatch`` came first, even between the close and the call.

        The watcher is an uncounted reader (a store's mirror): it has taken each event by the
        time its tap returns, so it never holds the producer back, and what it costs per stream
        is a future and a callback instead of a task and its frame.
        """
        reader = self.attach(pos, counted=False)
        if pos < self.end:
            for item in self.read(pos):
                tap(item)
            self.advance(reader, self.end)
        waiter = asyncio.get_running_loop().create_future()
        waiter.add_done_callback(partial(self._watch_ended, reader, closed))
        if self.closed:
            waiter.set_result(None)  # ``closed`` runs soon, unless unwatched first
            return reader
        reader.tap = tap
        reader.waiter = waiter
        self._parked.append(reader)
        return reader

    def _watch_ended(
        self, reader: Reader, closed: Callable[[], None], waiter: asyncio.Future[None]
    ) -> None:
        # Woken by close() and not unwatched since (an unwatch between the close and this
        # callback has detached the reader already).
        if not waiter.cancelled() and self.closed and self.detach(reader):
            closed()

    def unwatch(self, reader: Reader) -> None:
        """Stop a watcher before the log closes."""
        waiter, reader.waiter = reader.waiter, None
        if waiter is not None:
            waiter.cancel()
        if reader in self._parked:
            self._parked.remove(reader)
        self.detach(reader)

    async def _park(self, reader: Reader, tap: Tap | None) -> None:
        reader.waiter = asyncio.get_running_loop().create_future()
        reader.tap = tap
        self._parked.append(reader)
        try:
            await reader.waiter
        finally:
            reader.waiter = None
            reader.tap = None
            if reader in self._parked:
                self._parked.remove(reader)

    async def writable(self) -> None:
        """Wait until the slowest reader has caught up below the high-water mark."""
        while self.full and not self.closed:
            await self._producer_wait(self.end - self.high_water + 1)

    async def drained(self) -> None:
        """Wait until every attached reader has written everything logged so far (or left)."""
        while self._readers and self.floor < self.end and not self.closed:
            await self._producer_wait(self.end)

    async def _producer_wait(self, floor: int) -> None:
        """Wait until the slowest reader reaches ``floor`` or the last reader leaves."""
        self._wake_floor = floor
        if self._writable is None or self._writable.done():
            self._writable = asyncio.get_running_loop().create_future()
        await self._writable

    def close(self) -> None:
        """No more events: wake every reader so it can finish."""
        self.closed = True
        parked, self._parked = self._parked, []
        for reader in parked:
            reader.wake()
        self._wake_producer()

    def _wake_producer(self) -> None:
        fut, self._writable = self._writable, None
        if fut is not None and not fut.done():
            fut.set_result(None)

    def attach(self, pos: int, *, counted: bool = True) -> Reader:
        """Register a reader starting at ``pos``; it holds back the producer via ``floor``.
        ``counted=False``: a reader that is not a client (a store's mirror), left out of
        ``readers``, so the stream's last client leaving still starts its grace period."""
        reader = Reader(pos)
        reader.counted = counted
        self._counted += counted
        self._readers.append(reader)
        self._update_floor()
        return reader

    def detach(self, reader: Reader) -> bool:
        """Forget a reader; the producer no longer waits for it. False if it was not attached."""
        if reader not in self._readers:
            return False
        self._readers.remove(reader)
        self._counted -= reader.counted
        self._update_floor()
        return True

    def advance(self, reader: Reader, pos: int) -> None:
        """A reader has written everything before ``pos``."""
        reader.pos = pos
        self._update_floor()

    @property
    def readers(self) -> int:
        """How many readers (clients) are attached."""
        return self._counted

    @property
    def delivered(self) -> int:
        """The furthest ``Reader.delivered`` of the attached readers (0 with none)."""
        return max((reader.delivered for reader in self._readers), default=0)

    def _update_floor(self) -> None:
        # With no reader the floor stays where the last one left it: the producer runs on up to
        # high_water events for a reader that may come back (resume), then waits.
        readers = self._readers
        if readers:
            count = len(readers)
            if count == 1:
                self.floor = readers[0].pos
            elif count == 2:  # a client and a store's mirror: the common shared case
                first, second = readers[0].pos, readers[1].pos
                self.floor = first if first < second else second
            else:
                self.floor = min(r.pos for r in readers)
        if not self._retain:
            # Read events go in batches, not one by one as each is read.
            if self.floor - self._base >= _DROP_BATCH:
                self._drop(self.floor - self._base)
        else:
            if self._compress and (
                self.floor - self._base >= _SEGMENT
                or (self.closed and self._items and self.floor >= self.end)
            ):
                self._compact()
            if self._max_bytes and self.nbytes > self._max_bytes:
                self._trim()
        if self._writable is not None and (self.floor >= self._wake_floor or not readers):
            self._wake_producer()

    def _compact(self) -> None:
        """Compress what every reader has written, at least ``_SEGMENT`` events at a time (all
        that are ready in one segment, so a burst costs one call), and a closed log's last events
        too: resume reads them back rarely, and they are most of a stream's memory."""
        archive = self._archive
        if archive is None:
            archive = self._archive = _Archive(self._base)
        items = cast(list[bytes], self._items)
        count = self.floor - self._base  # at least _SEGMENT, or all of a closed log's (see caller)
        archive.add(items[:count])
        del items[:count]
        self._base += count

    def _trim(self) -> None:
        """Keep what resume needs within ``max_bytes``: the oldest events every reader has
        written go (whole archived segments first)."""
        excess = self.nbytes - self._max_bytes
        archive = self._archive
        dropped = 0
        while (
            excess > 0
            and archive is not None
            and archive.base < archive.end
            and archive.oldest_end() <= self.floor
        ):
            count, size = archive.drop_oldest()
            self.nbytes -= size
            excess -= size
            dropped += count
        count = 0
        while count < self.floor - self._base and excess > 0:
            excess -= len(self._items[count])
            count += 1
        self._drop(count)
        if count and archive is not None:
            # Loose events go only once the archive is empty; the next segment starts after them.
            archive.base = archive.end = self._base
        self.trimmed += dropped + count

    def _drop(self, count: int) -> None:
        if count:
            items = self._items
            self.nbytes -= len(items[0]) if count == 1 else sum(len(i) for i in items[:count])
            del items[:count]
            self._base += count


class _Archive:
    """A retained log's events that every reader has written, LZ4-compressed in segments of at
    least ``_SEGMENT`` (what was ready together; only a closed log's last one may be shorter).

    A production token event of ~82 bytes is ~136 bytes as a bytes object in a list, and ~24 in
    a segment (the segment's own cost included); archiving 16 events takes ~3 µs, LZ4 ~1.3 of
    them. A resume from before ``end`` decompresses the segments it needs.
    """

    __slots__ = ("_blobs", "_sizes", "_starts", "base", "end")

    def __init__(self, base: int) -> None:
        self.base = base
        """Sequence number of the oldest archived event."""
        self.end = base
        """Sequence number after the newest archived event."""
        self._blobs: list[bytes] = []
        self._starts = array("q")
        """Sequence number of each segment's first event."""
        self._sizes = array("q")
        """Uncompressed bytes of each segment's events."""

    def add(self, items: list[bytes]) -> None:
        """Archive the events that follow ``end``: their lengths, then the events, compressed."""
        data = b"".join([array("I", map(len, items)).tobytes(), *items])
        self._blobs.append(lz4.block.compress(data))
        self._starts.append(self.end)
        self._sizes.append(len(data) - _WIDTH * len(items))
        self.end += len(items)

    def read(self, pos: int) -> list[bytes]:
        """The archived events from ``pos`` (``base <= pos < end``) on."""
        starts = self._starts
        first = bisect_right(starts, pos) - 1
        events: list[bytes] = []
        for index in range(first, len(starts)):
            stop = starts[index + 1] if index + 1 < len(starts) else self.end
            events += _unpack(self._blobs[index], stop - starts[index])
        return events[pos - starts[first] :]

    def oldest_end(self) -> int:
        """Sequence number after the oldest segment's events."""
        return self._starts[1] if len(self._starts) > 1 else self.end

    def drop_oldest(self) -> tuple[int, int]:
        """Forget the oldest segment; how many events and uncompressed bytes it held."""
        count = self.oldest_end() - self.base
        del self._blobs[0]
        del self._starts[0]
        size = self._sizes.pop(0)
        self.base += count
        return count, size


def _unpack(blob: bytes, count: int) -> list[bytes]:
    data: bytes = lz4.block.decompress(blob)
    lengths = array("I")
    lengths.frombytes(data[: _WIDTH * count])
    offset = _WIDTH * count
    events: list[bytes] = []
    for length in lengths:
        events.append(data[offset : offset + length])
        offset += length
    return events


class _Ready:
    """Awaitable and already done: awaiting it does not suspend."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        return
        yield  # a generator that ends at once


_READY = _Ready()


class Reader:
    """One transport's position in a log, and while it waits, its wake-up and optional tap."""

    __slots__ = ("counted", "delivered", "pos", "tap", "waiter")

    def __init__(self, pos: int) -> None:
        self.pos = pos
        self.counted = True
        self.delivered = pos
        """The position before which its transport has written every event to the client (the
        client has what came before a resume point); transports that track it raise it once a
        write has happened."""
        self.waiter: asyncio.Future[None] | None = None
        self.tap: Tap | None = None

    def wake(self) -> None:
        """End this reader's wait."""
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
