"""Live streams: each owns its generation task and its event log (``event_log.py``), a grace period
for a reader to come back, and the registry that finds, retains and evicts them.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import time
from array import array
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Literal, TypeAlias

from .event_log import Reader, StreamLog
from .record import StreamRecord
from .types import MessageForm, StreamEnd, StreamStart

if TYPE_CHECKING:
    from .stores import SharedStream

CancelReason: TypeAlias = Literal["cancelled", "client_gone", "shutdown", "limit", "upstream_idle"]

_ID_PREFIX = "st_"
_ID_CHARS = 24
"""The characters after the prefix: 18 bytes in URL-safe base64 (no padding)."""


def new_stream_id() -> str:
    """A fresh stream id: the time it was made (milliseconds, 6 bytes) then 12 random bytes (96
    bits: unguessable), URL- and SSE-id-safe. The time lets another instance tell an id it has
    not seen yet from one that never was (``minted_at``)."""
    stamp = int(time.time() * 1000).to_bytes(6, "big")
    return _ID_PREFIX + base64.urlsafe_b64encode(stamp + secrets.token_bytes(12)).decode()


def minted_at(stream_id: str) -> float | None:
    """When ``new_stream_id`` made ``stream_id`` (seconds since the epoch); ``None`` if it is not
    of that shape."""
    if len(stream_id) != len(_ID_PREFIX) + _ID_CHARS or not stream_id.startswith(_ID_PREFIX):
        return None
    try:
        raw = base64.urlsafe_b64decode(stream_id[len(_ID_PREFIX) :])
    except ValueError:  # binascii.Error, or a character outside ASCII
        return None
    return int.from_bytes(raw[:6], "big") / 1000


DeliveryReport: TypeAlias = Callable[["Stream", int, int], None]
"""Told ``(stream, tokens newly delivered, tokens replayed)`` when a reader leaves or resumes."""


class Stream:
    """One generation and its event log, addressable by id while live and for ``retain_s`` after."""

    __slots__ = (
        "_attached",
        "_delivered",
        "_grace_check",
        "_grace_timer",
        "_registry",
        "_reported",
        "cancel_reason",
        "ending",
        "form",
        "grace_s",
        "headers",
        "id",
        "idempotency",
        "info",
        "key_id",
        "log",
        "on_delivery",
        "record",
        "remote_cancel",
        "remote_readers",
        "replica",
        "route",
        "shared",
        "summary",
        "task",
        "tokens_at",
        "watch",
    )

    def __init__(
        self,
        stream_id: str,
        route: str,
        log: StreamLog,
        *,
        grace_s: float,
        key_id: str | None = None,
        form: MessageForm = "sse",
    ) -> None:
        self.id = stream_id
        self.route = route
        self.form = form
        """The message form of its log's items (``"sse"`` bytes, ``"json"`` text messages)."""
        self.log = log
        self.key_id = key_id
        self.grace_s = grace_s
        self.task: asyncio.Task[None] | None = None
        self.info: StreamStart | None = None
        self.summary: StreamEnd | None = None
        self.cancel_reason: CancelReason | None = None
        self.idempotency: tuple[str, str, str] | None = None
        """(caller, ``Idempotency-Key``, fingerprint of the request) for a stream started with one."""
        self.headers: dict[str, str] = {}
        """Extra response headers the formatter asks for (e.g. the AI SDK's protocol header)."""
        self.record: StreamRecord | None = None
        """What the stream said (``record.py``), when a consumer asked for it; else None."""
        self._delivered = 0
        """The furthest a reader that has left wrote (see ``delivered``)."""
        self.tokens_at = array("I")
        """The tokens the provider had produced when each log event was appended (by position):
        what a position delivered or replayed is worth, for usage (``on_delivery``)."""
        self.on_delivery: DeliveryReport | None = None
        self._reported = 0
        """The delivered position already reported to ``on_delivery``."""
        self._attached = False
        """A reader has attached before: a later one from before the end is a replay."""
        self.ending = False
        """Set while the stream's epilogue runs: the generation is over, a cancel is a no-op."""
        self._grace_timer: asyncio.TimerHandle | None = None
        self._grace_check: asyncio.Task[None] | None = None
        self._registry: StreamRegistry | None = None
        self.replica = False
        """A copy of a stream another instance runs, filled from the stream store
        (``shared_streams.py``): its task follows the store, not a provider."""
        self.shared: SharedStream | None = None
        """A replica's description, as the store holds it."""
        self.remote_readers: Callable[[], Awaitable[int]] | None = None
        """A shared stream's owner: how many other instances have readers of it (the grace
        period runs on while any has)."""
        self.remote_cancel: Callable[[], object] | None = None
        """A replica: asks the owner to cancel (``cancel`` calls it instead)."""
        self.watch: Callable[[Stream], None] | None = None
        """A replica: told when a reader attaches and when the last one leaves."""

    @property
    def finished(self) -> bool:
        """True once the generation has ended and its last event is in the log."""
        return self.log.closed

    @property
    def delivered(self) -> int:
        """The log position every event before which some reader wrote to its client: the
        furthest of each reader's ``delivered``, those that have left included."""
        return max(self._delivered, self.log.delivered)

    def tokens_below(self, pos: int) -> int:
        """The tokens the events before log position ``pos`` carry between them."""
        counts = self.tokens_at
        return counts[min(pos, len(counts)) - 1] if pos > 0 and counts else 0

    def attach(self, pos: int) -> Reader:
        """A transport starts reading at ``pos``; a pending grace-period cancel is called off.
        The events already logged past ``pos`` are a replay (a resume, a second reader)."""
        if self._grace_timer is not None:
            self._grace_timer.cancel()
            self._grace_timer = None
        end = self.log.end
        # The first reader is not a replay, even when events were logged before it attached
        # (the chat route stores the prompt first).
        if pos < end and self._attached and self.on_delivery is not None:
            replayed = self.tokens_below(end) - self.tokens_below(pos)
            if replayed:
                self.on_delivery(self, 0, replayed)
        self._attached = True
        reader = self.log.attach(pos)
        if self.watch is not None:
            self.watch(self)
        return reader

    def detach(self, reader: Reader) -> None:
        """A transport stopped reading. With no reader left, the generation is cancelled now
        (``grace_s == 0``) or after ``grace_s`` unless a reader resumes it first."""
        if reader.delivered > self._delivered:
            self._delivered = reader.delivered
        furthest = self.delivered
        if furthest > self._reported and self.on_delivery is not None:
            delivered = self.tokens_below(furthest) - self.tokens_below(self._reported)
            self._reported = furthest
            self.on_delivery(self, delivered, 0)
        if not self.log.detach(reader) or self.log.readers or self.finished:
            return
        if self.watch is not None:
            self.watch(self)
            return  # a replica follows its stream to the end; the owner decides
        if self.grace_s <= 0 and self.remote_readers is not None:
            self._grace_over()  # none here: go on only while readers elsewhere
        elif self.grace_s <= 0:
            self.cancel("client_gone")
        elif self._grace_timer is None:
            loop = asyncio.get_running_loop()
            self._grace_timer = loop.call_later(self.grace_s, self._grace_over)

    def _grace_over(self) -> None:
        self._grace_timer = None
        if self.remote_readers is None or self.finished:
            self.cancel("client_gone")
        elif self._grace_check is None:
            self._grace_check = asyncio.get_running_loop().create_task(self._check_elsewhere())

    async def _check_elsewhere(self) -> None:
        """The grace period is over here: go on while another instance has readers."""
        assert self.remote_readers is not None
        try:
            elsewhere = await self.remote_readers()
        except Exception:  # the store is not answering: nobody can read it elsewhere either
            elsewhere = 0
        finally:
            self._grace_check = None
        if self.log.readers or self.finished:
            return
        if elsewhere:
            loop = asyncio.get_running_loop()
            again = max(min(self.grace_s, 1.0), 0.25)
            self._grace_timer = loop.call_later(again, self._grace_over)
        else:
            self.cancel("client_gone")

    def when_unread(self, delay_s: float, then: Callable[[], None]) -> None:
        """Call ``then`` in ``delay_s`` unless a reader attaches first (a replica lingers a
        moment after its last reader, for one that reconnects)."""
        if self._grace_timer is not None:
            self._grace_timer.cancel()
        self._grace_timer = asyncio.get_running_loop().call_later(delay_s, then)

    def _task_done(self, _task: asyncio.Task[None]) -> None:
        # A task cancelled before it first ran never closed its log: close it, so readers end
        # and the registry can forget the stream.
        if not self.log.closed:
            self.log.close()
        if self._registry is not None:
            self._registry._finished(self)

    def cancel(self, reason: CancelReason) -> None:
        """Stop the generation (closing the upstream); the log gets the route's end events."""
        self._grace_timer = None
        if self.ending:
            return
        if self.remote_cancel is not None:
            if not self.finished:
                self.remote_cancel()
            return
        if self.task is not None and not self.task.done() and self.cancel_reason is None:
            self.cancel_reason = reason
            self.task.cancel()


class StreamRegistry:
    """Every live or recently finished stream of one app, by id."""

    def __init__(self, *, retain_s: float, max_streams: int) -> None:
        self.retain_s = retain_s
        self.max_streams = max_streams
        self.streams: dict[str, Stream] = {}
        self.active = 0
        """Streams generating here now (/health, metrics; the limits count in the limit store)."""
        self.total = 0
        self.evicted = 0
        self.trimmed_events = 0
        self._idempotent: dict[tuple[str, str], Stream] = {}
        """(caller, ``Idempotency-Key``) -> the stream it started, while that is kept."""
        self.on_finished: Callable[[Stream], None] | None = None
        """Told when an owned stream's generation task has ended (the service releases its slot
        under the limits): one callback for every stream, not a closure and a task callback
        each."""

    def new_id(self) -> str:
        """A fresh, unguessable stream id (``new_stream_id``)."""
        return new_stream_id()

    def add(self, stream: Stream, run: Callable[[], asyncio.Task[None]]) -> None:
        """Track ``stream`` and start its generation task (made by ``run``)."""
        self._make_room()
        self.streams[stream.id] = stream
        self.active += 1
        self.total += 1
        if stream.idempotency is not None:
            self._idempotent[stream.idempotency[:2]] = stream
        stream._registry = self
        stream.task = run()
        stream.task.add_done_callback(stream._task_done)

    def add_replica(self, stream: Stream, run: Callable[[], asyncio.Task[None]]) -> None:
        """Track a replica (``Stream.replica``) and start the task that follows it: found by id
        like an owned stream until it ends, never counted as generating here."""
        self.streams[stream.id] = stream
        stream._registry = self
        stream.task = run()
        stream.task.add_done_callback(stream._task_done)

    def get(self, stream_id: str) -> Stream | None:
        """The live or retained stream with this id, if any."""
        return self.streams.get(stream_id)

    def started_with(self, caller: str, idempotency_key: str) -> Stream | None:
        """The live or retained stream a request with this ``Idempotency-Key`` started."""
        return self._idempotent.get((caller, idempotency_key))

    def live(self) -> list[Stream]:
        """Streams whose generation is still running here (replicas are not)."""
        return [s for s in self.streams.values() if not s.finished and not s.replica]

    def replicas(self) -> list[Stream]:
        """Replicas still following their stream."""
        return [s for s in self.streams.values() if s.replica and not s.finished]

    def _finished(self, stream: Stream) -> None:
        if stream.replica:  # the store keeps it; a later reader makes a new replica
            if self.streams.get(stream.id) is stream:
                del self.streams[stream.id]
            return
        self.active -= 1
        if self.on_finished is not None:
            self.on_finished(stream)
        if self.retain_s > 0:
            asyncio.get_running_loop().call_later(self.retain_s, self._forget, stream.id)
        else:
            self._forget(stream.id)

    @property
    def trimmed(self) -> int:
        """Events dropped from retained logs to honour their byte budget, since start."""
        return self.trimmed_events + sum(s.log.trimmed for s in self.streams.values())

    def _forget(self, stream_id: str) -> None:
        stream = self.streams.get(stream_id)
        if stream is not None and stream.finished:
            del self.streams[stream_id]
            self.trimmed_events += stream.log.trimmed
            self._unkey(stream)

    def _unkey(self, stream: Stream) -> None:
        if stream.idempotency is not None:
            self._idempotent.pop(stream.idempotency[:2], None)

    def _make_room(self) -> None:
        # Oldest finished streams go first; live ones are never evicted (limits bound those).
        if len(self.streams) < self.max_streams:
            return
        for stream_id, stream in list(self.streams.items()):
            if stream.finished:
                del self.streams[stream_id]
                self.evicted += 1
                self.trimmed_events += stream.log.trimmed
                self._unkey(stream)
                if len(self.streams) < self.max_streams:
                    return
