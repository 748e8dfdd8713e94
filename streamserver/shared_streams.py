"""Streams shared beyond this process, through a distributed ``StreamStore`` (``[resume] store``).

- **The owner** (the instance that runs a generation) mirrors its log into the store: a reader
  that is not a client (``StreamLog.attach(counted=False)``) takes each event through a tap, in
  the producer's own step; one writer sends the new events of every stream in one
  ``store.write``, never one per token. A stream nobody follows elsewhere is written every
  ``LAZY_S`` (its events then are only for a reader that may come later: a resume fills from what
  is there and follows the rest); once another instance follows it (a ``follow`` notice), or when
  it ends, at the end of the loop iteration that logged them. Its readers read from memory as
  before. A write that fails is retried; after ``lease_s`` of failures the streams
  go on for their local readers only, and are marked lost in the store once it answers again.
- **Any other instance** asked for a stream it does not run makes a *replica* of it
  (``replicas.py``).
- **A lease** per instance, renewed every third of ``lease_s`` with the stream keys it owns and
  the reader marks it holds, in one call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .replicas import Replicas
from .stores import (
    Appended,
    Notice,
    SharedStream,
    StoreUnavailable,
    StreamStore,
    store_unavailable,
)
from .streams import Stream, StreamRegistry

if TYPE_CHECKING:
    from .config import Config
    from .event_log import Reader

log = logging.getLogger("streamserver.shared")

LAZY_S = 0.5
"""How often the events of a stream that nobody elsewhere follows are written: at 50 tokens a
second, one store entry holds 25 of them instead of one. Only a resume elsewhere reads them, and
it follows what is not there yet (the owner then writes the rest at once), so a longer round
costs a resume nothing; at 0.1 s Redis spent 4.0 µs of CPU per paced token, at 0.5 s 2.4.
Each stream keeps its own round (``LAZY_S`` after its first event not written), so the writes of
a thousand streams spread over the round instead of landing in one burst every ``LAZY_S``."""
_LAZY_TICK_S = 0.02
"""The lazy writes due within this much of each other go in one write."""
_RETRY_S = 0.5
"""Between attempts at a write (or a replica's read) that failed."""


class _Mirrored:
    """One owned stream's events not yet written to the store."""

    __slots__ = (
        "close_taken", "closed", "dirty", "eager", "failing_since", "lazy_due", "pending",
        "publish", "reader", "shared", "start", "stream", "unsent", "written",
    )  # fmt: skip

    def __init__(self, stream: Stream, shared: SharedStreams) -> None:
        self.stream = stream
        self.shared = shared
        self.pending: list[bytes | str] = []
        self.start = 0
        """The position of ``pending[0]``."""
        self.unsent: list[Appended] = []
        """Writes taken but not confirmed: retried as they are, first (the store skips what
        it had already stored)."""
        self.written = 0
        """The position up to which the store has the events."""
        self.closed = False
        self.close_taken = False
        self.dirty = False
        """Queued for the writer (now or at the next lazy round)."""
        self.eager = False
        """Another instance follows it: written in the iteration its events were logged."""
        self.lazy_due = 0.0
        """When its lazy write is due (the loop's clock), while it waits for one; else 0."""
        self.failing_since: float | None = None
        self.reader: Reader | None = None
        """Its watch of the stream's log (``StreamLog.watch``): no task per stream."""
        self.publish: SharedStream | None = None
        """Not published yet: its first write publishes it."""

    def tap(self, item: bytes | str) -> bool:
        """``StreamLog.watch``'s tap: collect, and queue the stream for the writer once."""
        self.pending.append(item)
        if not self.dirty:
            self.dirty = True
            self.shared.queue(self)
        return True

    def log_closed(self) -> None:
        """``StreamLog.watch``'s ``closed``."""
        self.shared._log_closed(self)

    def take(self) -> list[Appended]:
        """What to write now: the unconfirmed writes, then what was logged since."""
        if self.pending or (self.closed and not self.close_taken) or self.publish is not None:
            record = self.stream.record
            data = record.to_data() if self.closed and record is not None else None
            self.unsent.append(
                Appended(self.stream.id, self.start, self.pending, self.closed, data, self.publish)
            )
            self.start += len(self.pending)
            self.pending = []
            self.close_taken = self.closed
            self.publish = None
        self.dirty = False
        return list(self.unsent)


class SharedStreams:
    """The service's side of a distributed stream store: mirrors, replicas, leases, cancels."""

    def __init__(
        self, store: StreamStore, config: Config, registry: StreamRegistry, instance_id: str
    ) -> None:
        self.store = store
        self.config = config
        self.registry = registry
        self.instance_id = instance_id
        self.lease_s = config.redis.lease_s
        self._mirrored: dict[str, _Mirrored] = {}
        self._dirty: list[_Mirrored] = []
        """Streams to write at the end of this iteration."""
        self._lazy: deque[tuple[float, _Mirrored]] = deque()
        """Streams waiting for their lazy write, with its due time, in that order (an entry
        whose due time is no longer the stream's own left the queue: ``_unlazy``)."""
        self._lazy_timer: asyncio.TimerHandle | None = None
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._writing = False
        """A write is in flight (or its batch waits to be retried)."""
        self._renewer: asyncio.Task[None] | None = None
        self._failing = False
        """The last write failed (for the log: once when it starts, once when it ends)."""
        self._creating: list[tuple[SharedStream, str, asyncio.Future[str | None]]] = []
        """Streams to publish at the end of this iteration, and their starts' answers."""
        self._unpublished: dict[str, SharedStream] = {}
        """Streams started without waiting for the store (it answers): their first write
        publishes them."""
        self._answering = False
        """The store's last answer was a success: a stream without an ``Idempotency-Key``
        starts at once and is published with its first write. After a failure each start
        asks the store first (a 503 while it fails), until it answers again; so does the
        first start of all."""
        self._abandoned: dict[str, int] = {}
        """Streams this instance stopped mirroring (the store failed too long): their end in
        the store, to mark them lost there once it answers."""
        self._tasks: set[asyncio.Task[Any]] = set()
        self.replicas = Replicas(store, config, registry, self._spawn)
        """The streams of other instances read here."""

    async def open(self) -> None:
        await self.store.open(self.config, self.instance_id, self._notice)
        loop = asyncio.get_running_loop()
        self._writer = loop.create_task(self._write_loop(), name="stream store writer")
        self._renewer = loop.create_task(self._renew_loop(), name="stream store lease")

    async def close(self) -> None:
        """Write what is pending (for up to the store's timeout), then stop."""
        self._flush_lazy()
        deadline = time.monotonic() + self.config.redis.timeout_s
        while (self._dirty or self._writing) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.01)  # bounded: at most the store's timeout
        if self._lazy_timer is not None:
            self._lazy_timer.cancel()
        tasks = [t for t in (self._writer, self._renewer, *self._tasks) if t]
        for task in tasks:
            task.cancel()
        if tasks:  # bounded: a task that lost its cancel in a library must not hang the stop
            done, stuck = await asyncio.wait(tasks, timeout=self.config.redis.timeout_s + 1)
            for task in done:
                if not task.cancelled():
                    task.exception()  # retrieved: nothing is left to log at exit
            for task in stuck:
                log.error("task %r did not stop when cancelled; left behind", task.get_name())
        await self.store.aclose()

    async def health(self) -> str | None:
        return await self.store.health()

    # the owner's side

    async def publish(
        self,
        stream: Stream,
        formatter: str,
        formatter_options: Mapping[str, Any],
        idempotency: tuple[str, str] | None,
    ) -> str | None:
        """Tell the store about a stream about to start; the id of an earlier one with the same
        ``Idempotency-Key`` instead, when there is one (then nothing is published).

        While the store answers, a stream without a key is not waited for: it is published
        with its first write (``mirror`` sends it at once, in the writer's next round trip with
        every other stream's events), so a start costs no round trip on the way to its first
        token. A key needs the store's answer first (an earlier stream may have it), and so does
        every start after a failed call: a 503 while the store is away."""
        info = stream.info
        assert info is not None
        shared = SharedStream(
            id=stream.id,
            route=stream.route,
            form=stream.form,
            owner=self.instance_id,
            key_id=stream.key_id or "",
            formatter=formatter,
            formatter_options=dict(formatter_options),
            headers=dict(stream.headers),
            provider=info.provider,
            model=info.model,
            created=info.created,
            grace_s=stream.grace_s,
            idempotency=idempotency,
        )
        if idempotency is None and self._answering:  # no round trip before it starts
            self._unpublished[stream.id] = shared
            return None
        if not self._creating:  # the first start of this loop iteration sends them all
            asyncio.get_running_loop().call_soon(self._create_batch)
        created: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._creating.append((shared, stream.key_id or "", created))
        try:
            return await created
        except StoreUnavailable as exc:
            raise store_unavailable(exc, "stream") from None

    def _create_batch(self) -> None:
        """Publish the streams that started in one loop iteration, in one round trip: a burst
        of starts does not queue for connections, one each."""
        batch, self._creating = self._creating, []
        self._spawn(self._create(batch), "stream store create")

    async def _create(
        self, batch: list[tuple[SharedStream, str, asyncio.Future[str | None]]]
    ) -> None:
        try:
            earlier = await self.store.create([(shared, caller) for shared, caller, _ in batch])
        except Exception as exc:  # each start answers for itself (a 503, or the store's bug)
            self._answering = False
            for _, _, created in batch:
                if not created.done():
                    created.set_exception(exc)
            return
        self._answering = True
        for (shared, _, created), answer in zip(batch, earlier, strict=True):
            if not created.done():
                created.set_result(answer)
            elif answer is None:  # its request went meanwhile: it will never run
                with contextlib.suppress(StoreUnavailable):  # else its keys expire, as any would
                    await self.store.mark_lost(shared.id, 0)

    async def withdraw(self, stream_id: str) -> None:
        """A published stream will not start after all (the drain began): say it ended."""
        if self._unpublished.pop(stream_id, None) is None:
            await self.store.mark_lost(stream_id, 0)

    def mirror(self, stream: Stream) -> None:
        """Write ``stream``'s log to the store as it grows (call before its task first runs), as
        the log's watcher: the events go from its appends to the writer's next batch."""
        mirrored = _Mirrored(stream, self)
        self._mirrored[stream.id] = mirrored
        mirrored.publish = self._unpublished.pop(stream.id, None)
        if mirrored.publish is not None:  # published in the writer's next round trip
            mirrored.dirty = True
            self._dirty.append(mirrored)
            self._wake.set()
        mirrored.reader = stream.log.watch(0, mirrored.tap, mirrored.log_closed)

    def _log_closed(self, mirrored: _Mirrored) -> None:
        """The stream's log closed: its end goes out now."""
        mirrored.closed = True
        mirrored.eager = True
        self._unlazy(mirrored)
        if not mirrored.dirty:
            mirrored.dirty = True
            self.queue(mirrored)

    def queue(self, mirrored: _Mirrored) -> None:
        """``mirrored`` has new events: write them this iteration, or ``LAZY_S`` from now."""
        if not mirrored.eager:
            loop = asyncio.get_running_loop()
            mirrored.lazy_due = due = loop.time() + LAZY_S
            self._lazy.append((due, mirrored))
            if self._lazy_timer is None:
                self._lazy_timer = loop.call_at(due, self._lazy_round)
            return
        self._dirty.append(mirrored)
        if not self._wake.is_set():
            self._wake.set()

    def _unlazy(self, mirrored: _Mirrored) -> None:
        """``mirrored`` no longer waits for its lazy write (its entry is skipped when due)."""
        if mirrored.lazy_due:
            mirrored.lazy_due = 0.0
            mirrored.dirty = False

    def _lazy_round(self) -> None:
        """The timer at the first due time: write every stream due by then (or within a tick),
        and set the timer for the next."""
        self._lazy_timer = None
        loop = asyncio.get_running_loop()
        self._flush_lazy(loop.time() + _LAZY_TICK_S)
        if self._lazy:
            self._lazy_timer = loop.call_at(self._lazy[0][0], self._lazy_round)

    def _flush_lazy(self, until: float = float("inf")) -> None:
        """Queue for the writer every lazy stream due by ``until``."""
        lazy, dirty = self._lazy, self._dirty
        while lazy and lazy[0][0] <= until:
            due, mirrored = lazy.popleft()
            if mirrored.lazy_due == due:  # else it left the queue meanwhile
                mirrored.lazy_due = 0.0
                dirty.append(mirrored)
        if dirty and not self._wake.is_set():
            self._wake.set()

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._dirty = self._dirty, []
            sends = [(mirrored, done) for mirrored in batch for done in mirrored.take()]
            self._writing = True
            try:
                live = await self.store.write([done for _, done in sends])
            except Exception as exc:  # a store's bug must not end the writer for every stream
                if not isinstance(exc, StoreUnavailable):
                    log.exception("the stream store's write failed")
                self._write_failed(batch, str(exc))
                await asyncio.sleep(_RETRY_S)
                continue
            finally:
                self._writing = False
            self._answering = True
            if self._failing:
                log.info("the stream store answers again")
                self._failing = False
            for mirrored in batch:
                mirrored.unsent = []
                mirrored.failing_since = None
            for (mirrored, done), still_live in zip(sends, live, strict=True):
                mirrored.written = done.start + len(done.events)
                if done.closed or not still_live:
                    self._stop_mirroring(mirrored)

    def _write_failed(self, batch: list[_Mirrored], reason: str) -> None:
        """Retry each stream's writes (they stay in ``unsent``), for up to ``lease_s`` each;
        past that the stream goes on for its readers here only."""
        now = time.monotonic()
        self._answering = False
        if not self._failing:
            self._failing = True
            log.warning("writing to the stream store failed (%s); retrying", reason)
        for mirrored in batch:
            mirrored.failing_since = mirrored.failing_since or now
            if now - mirrored.failing_since >= self.lease_s:
                self._abandoned[mirrored.stream.id] = mirrored.written
                self._stop_mirroring(mirrored)
                log.error(
                    "stream %s: the store failed for %gs; it goes on for its readers on this "
                    "instance only (readers elsewhere will get stream_lost)",
                    mirrored.stream.id,
                    self.lease_s,
                )
            elif not mirrored.dirty:
                mirrored.dirty = True
                self._dirty.append(mirrored)
        if self._dirty:
            self._wake.set()

    def _stop_mirroring(self, mirrored: _Mirrored) -> None:
        """The stream ended in the store (or cannot be kept there): stop writing it."""
        if self._mirrored.pop(mirrored.stream.id, None) is None:
            return
        mirrored.pending = []
        mirrored.unsent = []
        if mirrored.dirty and not mirrored.lazy_due:
            with contextlib.suppress(ValueError):  # a batch may have taken it already
                self._dirty.remove(mirrored)
        self._unlazy(mirrored)
        mirrored.dirty = False
        if mirrored.reader is not None and not mirrored.closed:
            mirrored.stream.log.unwatch(mirrored.reader)
        mirrored.stream.remote_readers = None

    async def _renew_loop(self) -> None:
        failing = False
        while True:
            owned = list(self._mirrored)
            reading = [s.id for s in self.registry.streams.values() if s.replica and s.log.readers]
            try:
                await self.store.renew(owned, reading)
                for stream_id, end in list(self._abandoned.items()):
                    await self.store.mark_lost(stream_id, end)
                    del self._abandoned[stream_id]
            except StoreUnavailable as exc:
                if not failing:
                    log.warning("renewing this instance's lease failed (%s)", exc)
                failing = True
            else:
                failing = False
            await asyncio.sleep(self.lease_s / 3)

    def _notice(self, notice: Notice, stream_id: str) -> None:
        """Another instance asked to cancel a stream, or follows it: if this one runs it, it
        cancels it, or writes its events as they come from now on."""
        if notice == "follow":
            mirrored = self._mirrored.get(stream_id)
            if mirrored is not None and not mirrored.eager:
                mirrored.eager = True
                self._unlazy(mirrored)  # what waits goes out now
                if mirrored.pending and not mirrored.dirty:
                    mirrored.dirty = True
                    self.queue(mirrored)
            return
        stream = self.registry.get(stream_id)
        if stream is not None and not stream.replica:
            stream.cancel("cancelled")

    # any instance's side

    async def started_with(self, caller: str, idempotency_key: str) -> str | None:
        try:
            return await self.store.started_with(caller, idempotency_key)
        except StoreUnavailable as exc:
            raise store_unavailable(exc, "stream") from None

    async def cancel(self, stream_id: str) -> bool:
        """Ask the owner of ``stream_id``, wherever it runs, to cancel it; False if the stream
        has ended already (as the store knows it: a replica may not have read its end yet)."""
        try:
            state = await self.store.state(stream_id)
            if state is None or state.closed:
                return False
            await self.store.notify("cancel", stream_id)
        except StoreUnavailable as exc:
            raise store_unavailable(exc, "stream") from None
        return True

    async def find(self, stream_id: str, key_id: str | None = None) -> Stream | None:
        """A replica of a stream another instance runs (``replicas.py``), or ``None``."""
        return await self.replicas.find(stream_id, key_id)

    def _spawn(self, coroutine: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task
