"""The store interfaces beyond one process: where live streams are shared (``StreamStore``) and
where the limits count (``LimitStore``). The conversation store's is in ``conversations.py``.

Each is a plugin kind (``register_stream_stores``, ``register_limit_stores``): ``memory`` is the
embedded default (one process, nothing shared), ``redis`` serves several instances. What crosses
these interfaces is plain data: events as the bytes or text of the log, ids, numbers, and
``SharedStream``, a stream's description as JSON-able fields.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeAlias

from .errors import StreamRejected
from .types import MessageForm

if TYPE_CHECKING:
    from .config import Config


Notice: TypeAlias = Literal["cancel", "follow"]
"""What one instance tells the owner of a stream: cancel it, or someone elsewhere follows it
(write its events as they come, not every ``LAZY_S``)."""


class StoreUnavailable(Exception):
    """A store could not be reached (or answered too late): a new stream gets a 503, running
    ones go on for their local readers."""


def store_unavailable(exc: StoreUnavailable, store: str) -> StreamRejected:
    """A store failure, as the 503 a request gets before its stream starts (``store``: which
    one, "stream" or "limit")."""
    return StreamRejected(
        503,
        "store_unavailable",
        f"the {store} store is not answering ({exc}); retry shortly",
        headers={"Retry-After": "2"},
    )


@dataclass(frozen=True, slots=True)
class SharedStream:
    """What another instance needs to serve a stream it does not run (JSON-able fields only)."""

    id: str
    route: str
    form: MessageForm
    owner: str
    """The id of the instance that runs the generation."""
    key_id: str
    """The caller that started it (``addr:...`` without auth): who may resume or cancel it."""
    formatter: str
    """The name of its formatter part: another instance makes one to end the stream itself
    (``stream_lost``) in the route's own shape."""
    formatter_options: Mapping[str, Any] = field(default_factory=dict)
    """The per-stream overrides of the formatter's configured options."""
    headers: Mapping[str, str] = field(default_factory=dict)
    """Extra response headers its formatter asked for."""
    provider: str = ""
    model: str = ""
    created: float = 0.0
    grace_s: float = 0.0
    idempotency: tuple[str, str] | None = None
    """``(Idempotency-Key, fingerprint of the request)`` for a stream started with one."""


@dataclass(frozen=True, slots=True)
class StreamState:
    """A shared stream as the store holds it now."""

    stream: SharedStream
    base: int
    """The first position still kept (above 0 once the oldest events were trimmed)."""
    end: int
    """The position after the last event stored so far."""
    closed: bool
    """The stream has ended (completed, failed, or lost) and ``end`` is final."""
    record: Mapping[str, Any] | None = None
    """What it said (``Appended.record``), once it ended, if its owner kept a record."""


@dataclass(frozen=True, slots=True)
class Entries:
    """Events read from a shared stream: those from ``start`` on, and whether it ended after them."""

    start: int
    events: Sequence[bytes | str]
    closed: bool = False
    lost: bool = False
    """It ended because its owner was lost (the reader that found out marked it): the reader
    adds the route's ``stream_lost`` error itself."""

    @property
    def end(self) -> int:
        return self.start + len(self.events)


@dataclass(slots=True)
class Appended:
    """The events one stream logged since its last write, for ``StreamStore.write``."""

    stream_id: str
    start: int
    events: list[bytes | str]
    closed: bool = False
    """The stream ended with these (its log is closed)."""
    record: Mapping[str, Any] | None = None
    """With ``closed``: what the stream said (``StreamRecord.to_data``), for a stream whose
    consumer reads it back (a retried non-streamed completion on another instance)."""
    publish: SharedStream | None = None
    """A stream's first write, when it was not published before it started (``create`` is
    skipped while the store answers): publish it first, then store the events, in order. A
    retry publishes it again: a store must take a stream it has already as published."""


class StreamStore(Protocol):
    """Where the streams of every instance are shared (``[resume] store``)."""

    distributed: bool
    """False for a store that shares nothing (``memory``): the service then skips every call."""

    async def open(
        self, config: Config, instance_id: str, on_notice: Callable[[Notice, str], None]
    ) -> None:
        """Connect. ``on_notice(notice, stream_id)`` is called (on the loop) when any instance
        sends a notice about a stream (``notify``); the service ignores ids it does not run."""
        ...

    async def aclose(self) -> None:
        """Release connections and stop renewing leases."""
        ...

    async def health(self) -> str | None:
        """``None`` when the store answers; else why not, for ``/health``."""
        ...

    async def create(self, streams: Sequence[tuple[SharedStream, str]]) -> list[str | None]:
        """Publish streams about to start (each with its caller's key id), in one round trip
        where the store can: the streams that start in one loop iteration come together. For
        each, ``None``; or, for a stream with ``idempotency`` whose key an earlier request of the
        same caller claimed, that stream's id (this one is not published; its caller attaches to
        that one). Raises ``StoreUnavailable``: none of them may start."""
        ...

    async def started_with(self, caller: str, idempotency_key: str) -> str | None:
        """The id of the stream a request with this key started, while it is kept."""
        ...

    async def write(self, appended: Sequence[Appended]) -> list[bool]:
        """Store what several streams logged (publishing those whose ``publish`` is set first),
        in order, in one round trip where the store can;
        for each, whether its stream is still live in the store (False: it ended or was marked
        lost there, so stop writing it). Safe to repeat after a failure (``StoreUnavailable``):
        a store skips what it already has (each ``Appended`` says where it starts)."""
        ...

    async def state(self, stream_id: str) -> StreamState | None:
        """The stream's description and extent, or ``None`` if it is not (or no longer) kept."""
        ...

    async def read(self, stream_id: str, start: int, wait_s: float) -> Entries:
        """Events from ``start`` on; waits up to ``wait_s`` for one when there is none yet (an
        empty ``Entries`` then). ``start`` below the kept range raises ``LookupError``."""
        ...

    async def owner_alive(self, owner: str) -> bool:
        """Whether the instance ``owner`` still holds its lease."""
        ...

    async def mark_lost(self, stream_id: str, end: int) -> bool:
        """Mark a stream whose owner is gone as ended at ``end`` (once; False if it had ended)."""
        ...

    async def notify(self, notice: Notice, stream_id: str) -> None:
        """Tell the stream's owner, wherever it runs: cancel it, or it has a follower."""
        ...

    async def reading(self, stream_id: str, until: float) -> None:
        """This instance has readers of a stream another runs, until ``until`` (a wall-clock time
        it renews while they read, and sets ``grace_s`` ahead when the last one leaves)."""
        ...

    async def readers_elsewhere(self, stream_id: str) -> int:
        """How many other instances have (or may soon again have) readers of this stream."""
        ...

    async def renew(self, owned: Sequence[str], reading: Sequence[str]) -> None:
        """Renew this instance's lease, those of the streams it runs, and its reader marks (and
        whatever housekeeping the store does now and then, e.g. evicting past ``max_streams``)."""
        ...


class LimitStore(Protocol):
    """Where the limits count (``[limits] store``): requests per minute and concurrent streams,
    per caller and in all.

    An identity is a caller's (an API key id, ``addr:<client address>`` without auth, or ``""``
    in process). The store reads the limits from ``config.limits`` when it opens; the caller
    turns its answers into the 429s and ``StoreUnavailable`` into a 503. A store that counts
    across instances holds a lease on each stream it counts and renews the leases itself, so the
    streams of an instance that dies stop counting once their leases run out.
    """

    distributed: bool
    """True when the counts are shared with other instances (a call may then wait on the
    network and raise ``StoreUnavailable``)."""

    async def open(self, config: Config, instance_id: str) -> None:
        """Read the limits and connect (the server need not answer yet: calls fail until it
        does); start renewing leases, where the store has them."""
        ...

    async def aclose(self) -> None:
        """Finish the releases under way, stop renewing, release connections. Streams still
        counted stop counting once their leases run out, as a crashed instance's would."""
        ...

    async def health(self) -> str | None:
        """``None`` when the store answers; else why not, for ``/health``."""
        ...

    async def charge(self, identity: str) -> float:
        """Take one request from ``identity``'s token bucket (``requests_per_minute`` tokens,
        refilled continuously at that rate): 0 when allowed, else the seconds until a token is
        back (nothing taken). Raises ``StoreUnavailable``."""
        ...

    async def acquire(self, stream_id: str, identity: str) -> str | None:
        """Count a new stream (its generation) against ``max_concurrent_streams`` and
        ``max_concurrent_streams_per_key``: ``None`` when it may start (it now counts), else
        which limit it would pass, ``"total"`` or ``"key"`` (it does not count). Raises
        ``StoreUnavailable``."""
        ...

    def release(self, stream_id: str, identity: str) -> None:
        """The stream's generation ended: it no longer counts. Called once per acquired stream,
        from a task's done callback, so it never waits: a shared store completes it in the
        background (if that fails, the stream's lease runs out instead)."""
        ...
