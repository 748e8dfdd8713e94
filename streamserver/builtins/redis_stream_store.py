"""The ``redis`` stream store (``[resume] store = "redis"``): every instance's streams shared
through Redis, so any instance serves a resume, a cancel or an idempotent retry.

Keys (``P`` is ``[redis] key_prefix``; one stream's keys share the hash tag ``{<id>}``, so on
Redis Cluster a stream lives on one slot):

- ``P:{id}:m`` hash: ``meta`` (the ``SharedStream`` as JSON), ``base`` (the first position still
  kept), ``state`` (``live``, ``done`` or ``lost``), ``end`` once it ended;
- ``P:{id}:l`` stream: the log. One entry per write of the owner (all the events it logged since
  its last write, one loop iteration's worth or more), with the id ``<first position + 1>-0``;
  fields ``n`` (how many), ``z`` (their byte lengths, uint32 array), ``d`` (the events, joined),
  ``c`` (present on the last entry: the stream ended), ``x`` (it ended because its owner was lost);
- ``P:{id}:r`` sorted set: instances with readers of it, scored by the time (ms) until which they
  count (renewed while they read; ``grace_s`` ahead once their last reader left);
- ``P:i:<instance>``: the instance's lease (expires ``lease_s`` after its last renewal);
- ``P:idem:<sha256 of caller and key>``: ``<stream id>`` of an idempotent start;
- ``P:done`` sorted set: finished streams by end time, to keep at most ``max_streams``;
- channel ``P:notices``: ``cancel <id>`` (its owner cancels it), ``follow <id>`` (a reader on
  another instance follows it: its owner writes its events as they come).

Why Redis Streams: the log maps onto ``XADD`` with our own ids (a position is an entry id, so a
resume is one ``XRANGE`` from it), ``XREAD BLOCK`` follows live with no polling, ``XTRIM MINID``
enforces the byte budget, and one pipeline carries every stream's new events per loop iteration.
Pub/sub carries only notices, which need no history.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import logging
import time
from array import array
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

import redis.asyncio as redis
from redis.exceptions import NoScriptError, RedisError

from ..stores import Appended, Entries, Notice, SharedStream, StoreUnavailable, StreamState
from . import redis_connection
from .redis_connection import RedisConnection, as_text, describe
from .redis_packed import PackedCommands, bulk, bulk_int
from .redis_scripts import APPEND, CREATE, EVICT, MARK_LOST, RENEW

if TYPE_CHECKING:
    from ..config import Config

log = logging.getLogger("streamserver.redis")

_POLL_S = 2.0
"""The longest one blocking read waits (a follower checks its owner's lease between reads)."""
_READ_COUNT = 512
"""Entries one read returns at most."""
_PACK_SLICE = 128
"""Streams packed into one batch (a write, a renewal) between yields to the loop: the batch of
a thousand streams is still one round trip, but never one long stall of every stream here."""
_OPEN, _CLOSED, _EMPTY = bulk(b"0"), bulk(b"1"), bulk(b"")
_compact_json = json.JSONEncoder(separators=(",", ":")).encode
"""``json.dumps`` with compact separators, without a new encoder per call."""
_APPEND = b"*19\r\n%b$%d\r\n%b\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n%b%b%b%b%b"
"""``APPEND`` in RESP, one ``%`` for a write: its head (``_Packed.append``), the start, the count,
the sizes and the events as bulk strings, then closed, the limits, the record, the stream's id and
the time, packed."""


class _Packed:
    """What one running stream's writes and renewals send that never changes, packed once: each
    write then formats only its events (a write of a thousand streams took 35 ms of packing)."""

    __slots__ = ("append", "renew", "stream_id")

    def __init__(self, store: RedisStreams, stream_id: str) -> None:
        keys = b"".join(
            bulk(key.encode())
            for key in (
                store._meta(stream_id),
                store._log(stream_id),
                store._sizes(stream_id),
                store._readers(stream_id),
            )
        )
        self.append = b"%b%b%b%b%b" % (  # the rest: _APPEND
            bulk(b"EVALSHA"),
            bulk(store._scripts["append"].sha.encode()),
            bulk(b"5"),
            keys,
            bulk(store.connection.key("done").encode()),
        )
        """``APPEND``'s name, script and keys: its first 8 arguments."""
        self.renew = b"*8\r\n%b%b%b%b%b" % (
            bulk(b"EVALSHA"),
            bulk(store._scripts["renew"].sha.encode()),
            bulk(b"4"),
            keys,
            bulk_int(store._live_ms),
        )
        """The whole ``RENEW`` command."""
        self.stream_id = bulk(stream_id.encode())


class RedisStreams:
    """``StreamStore`` on Redis: owners write, any instance reads, cancels and attaches."""

    distributed = True

    def __init__(self) -> None:
        self._connection: RedisConnection | None = None
        self._blocking: redis.Redis | None = None
        self._loop_id = 0
        self.instance_id = ""
        self._retain_ms = 60_000
        self._live_ms = 60_000
        self._lease_ms = 10_000
        self._max_streams = 10_000
        self._max_bytes = 0
        self._claims: dict[str, str] = {}
        """The idempotency key each stream this instance runs claimed: renewed while it runs."""
        self._packed: dict[str, _Packed] = {}
        """The streams this instance runs (as of its last write or renewal), packed."""
        self._limits = b""
        """``APPEND``'s live_ms, retain_ms and max_bytes, packed."""
        self._create_head = self._create_tail = b""
        """``CREATE``'s arguments before its keys, and after the meta, packed."""
        self._on_notice: Callable[[Notice, str], None] = lambda _notice, _id: None
        self._listener: asyncio.Task[None] | None = None
        self._scripts: dict[str, Any] = {}

    @property
    def connection(self) -> RedisConnection:
        assert self._connection is not None, "RedisStreams.open was not awaited"
        return self._connection

    async def open(
        self, config: Config, instance_id: str, on_notice: Callable[[Notice, str], None]
    ) -> None:
        self._loop_id = id(asyncio.get_running_loop())
        self._connection = redis_connection.acquire(config.redis, self._loop_id)
        settings = config.redis
        # Blocking reads hold a connection each for up to _POLL_S: their own pool, so they never
        # starve the writes (one per stream another instance runs and this one follows).
        self._blocking = redis_connection.client_for(
            settings, 10_000, _POLL_S + settings.timeout_s, "streamserver-follow"
        )
        self.instance_id = instance_id
        resume = config.resume
        self._retain_ms = max(1, int(resume.retain_s * 1000))
        self._lease_ms = int(settings.lease_s * 1000)
        # A live stream's keys outlive its owner long enough for a reader to find it lost.
        self._live_ms = max(self._retain_ms, 6 * self._lease_ms)
        self._max_streams = resume.max_streams
        self._max_bytes = resume.max_bytes_per_stream
        self._on_notice = on_notice
        client = self.connection.client
        self._scripts = {
            name: client.register_script(script)
            for name, script in (
                ("append", APPEND),
                ("create", CREATE),
                ("evict", EVICT),
                ("lost", MARK_LOST),
                ("renew", RENEW),
            )
        }
        self._limits = b"".join(map(bulk_int, (self._live_ms, self._retain_ms, self._max_bytes)))
        create = self._scripts["create"].sha.encode()
        self._create_head = bulk(b"EVALSHA") + bulk(create) + bulk(b"2")
        self._create_tail = (
            bulk_int(self._live_ms) + bulk(b"0") + bulk(self.connection.prefix.encode())
        )
        self._listener = asyncio.get_running_loop().create_task(
            self._listen(), name="redis stream notices"
        )
        try:  # the lease now, so a stream started at once has a live owner
            await self.renew((), ())
        except StoreUnavailable as exc:
            log.warning("redis is not answering yet (%s); streams wait for it", exc)

    async def aclose(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
        if self._connection is not None:
            with contextlib.suppress(StoreUnavailable):  # else it lapses by itself
                await self._connection.call(
                    lambda: self.connection.client.delete(self._instance_key(self.instance_id))
                )
            await redis_connection.release(self._connection, self._loop_id)
        if self._blocking is not None:
            await self._blocking.aclose()

    async def health(self) -> str | None:
        return await self.connection.health()

    # keys

    def _meta(self, stream_id: str) -> str:
        return self.connection.tagged(stream_id, "m")

    def _log(self, stream_id: str) -> str:
        return self.connection.tagged(stream_id, "l")

    def _readers(self, stream_id: str) -> str:
        return self.connection.tagged(stream_id, "r")

    def _sizes(self, stream_id: str) -> str:
        return self.connection.tagged(stream_id, "z")

    def _instance_key(self, instance_id: str) -> str:
        return self.connection.key("i", instance_id)

    def _idempotency_key(self, caller: str, key: str) -> str:
        digest = hashlib.sha256(f"{caller}\n{key}".encode()).hexdigest()
        return self.connection.key("idem", digest)

    # the owner's side

    async def create(self, streams: Sequence[tuple[SharedStream, str]]) -> list[str | None]:
        """One ``CREATE`` script per stream (claim its idempotency key, publish its meta), all
        in one round trip."""
        packed = PackedCommands()
        claims = [self._add_create(packed, stream, caller) for stream, caller in streams]
        earlier: list[str | None] = []
        for (stream, _), claim, answer in zip(streams, claims, await self._exchange(packed),
                                              strict=True):  # fmt: skip
            if isinstance(answer, Exception):
                raise StoreUnavailable(describe(answer))
            if answer is not None:
                earlier.append(as_text(answer))
                continue
            if claim is not None:
                self._claims[stream.id] = claim
            earlier.append(None)
        return earlier

    def _add_create(self, packed: PackedCommands, stream: SharedStream, caller: str) -> str | None:
        """Pack ``stream``'s ``CREATE``; the key of its idempotency claim, if it has one."""
        claim = (
            None
            if stream.idempotency is None
            else self._idempotency_key(caller, stream.idempotency[0])
        )
        meta = _compact_json(_meta_fields(stream)).encode()
        packed.add_packed(b"*10\r\n%b%b%b%b%b%b" % (
            self._create_head, bulk(self._meta(stream.id).encode()),
            bulk((claim or self.connection.key("idem", "-")).encode()),  # unused without a key
            bulk(stream.id.encode()) if claim else _EMPTY, bulk(meta), self._create_tail,
        ))  # fmt: skip
        return claim

    async def started_with(self, caller: str, idempotency_key: str) -> str | None:
        claim = self._idempotency_key(caller, idempotency_key)
        found = await self.connection.call(lambda: self.connection.client.get(claim))
        return None if found is None else as_text(found)

    async def write(self, appended: Sequence[Appended]) -> list[bool]:
        """One ``APPEND`` per entry, all in one round trip; for each ``Appended``, whether the
        stream is still live in Redis (False: it ended or was marked lost there; stop writing
        it). A retried write is safe: what Redis already has is skipped."""
        packed = PackedCommands()
        per_batch: list[int] = []
        now = bulk_int(int(time.time() * 1000))
        limits = self._limits
        for done, batch in enumerate(appended, 1):
            if not done % _PACK_SLICE:
                await asyncio.sleep(0)
            stream_id = batch.stream_id
            events = batch.events
            if events and isinstance(events[0], str):  # a WebSocket log's (a log is one type)
                events = [e.encode() if isinstance(e, str) else e for e in events]
            heads = self._packed.get(stream_id) or self._packed.setdefault(
                stream_id, _Packed(self, stream_id)
            )
            published = 0
            if batch.publish is not None:  # its first write: publish it first, in order
                self._add_create(packed, batch.publish, "")
                published = 1
            chunks = self._log_entries(batch.start, cast(list[bytes], events), batch.closed)
            for start, chunk, data, last in chunks:
                closed = last and batch.closed
                record = (
                    bulk(_compact_json(batch.record).encode())
                    if closed and batch.record is not None
                    else _EMPTY
                )
                first, many = b"%d" % start, b"%d" % len(chunk)
                sizes = array("I", map(len, chunk)).tobytes()
                packed.add_packed(_APPEND % (
                    heads.append, len(first), first, len(many), many, len(sizes), sizes,
                    len(data), data, _CLOSED if closed else _OPEN, limits, record,
                    heads.stream_id, now,
                ))  # fmt: skip
            claim = self._claims.pop(stream_id, None) if batch.closed else None
            if claim is not None:
                packed.add(b"PEXPIRE", claim, self._retain_ms)
            if batch.closed:
                self._packed.pop(stream_id, None)
            per_batch.append(published + len(chunks) + (claim is not None))
        results = await self._exchange(packed)
        live: list[bool] = []
        at = 0
        for batch, count in zip(appended, per_batch, strict=True):
            answers = results[at : at + count]
            at += count
            failed = [r for r in answers if isinstance(r, Exception)]
            if failed:
                raise StoreUnavailable(describe(failed[0]))
            if -2 in answers:
                log.error(
                    "stream %s: a write would leave a gap in Redis; not shared any more",
                    batch.stream_id,
                )
            live.append(-1 not in answers and -2 not in answers)
        return live

    async def _exchange(self, packed: PackedCommands) -> list[Any]:
        """``packed``'s replies; the scripts are loaded again if Redis lost them (a restart)
        and the commands sent once more (safe: an append Redis has is skipped)."""
        results = await self.connection.call(lambda: packed.exchange(self.connection))
        if any(isinstance(r, NoScriptError) for r in results):
            client = self.connection.client
            for script in (APPEND, CREATE, RENEW):
                await self.connection.call(functools.partial(client.script_load, script))
            results = await self.connection.call(lambda: packed.exchange(self.connection))
        return results

    def _log_entries(
        self, start: int, events: list[bytes], closed: bool
    ) -> Sequence[tuple[int, list[bytes], bytes, bool]]:
        """``events`` in log entries of at most a sixteenth of the byte budget (so trimming to
        it drops little more than it must) and ``_READ_COUNT`` events, each with its events
        joined and whether it is the last; an empty write is no entry, or one empty entry for
        a stream that ended with nothing new."""
        if not events and not closed:
            return ()
        limit = max(1, self._max_bytes // 16) if self._max_bytes else 1 << 62
        data = b"".join(events)
        if len(data) <= limit and len(events) <= _READ_COUNT:  # one loop iteration's: the rule
            return ((start, events, data, True),)
        entries = []
        first, size = 0, 0
        for i, event in enumerate(events):
            if i > first and (size + len(event) > limit or i - first >= _READ_COUNT):
                entries.append((start + first, events[first:i], False))
                first, size = i, 0
            size += len(event)
        entries.append((start + first, events[first:], True))
        return [(at, chunk, b"".join(chunk), last) for at, chunk, last in entries]

    async def evict(self) -> None:
        """Keep at most ``max_streams`` finished streams (the oldest go first)."""
        evict = self._scripts["evict"]
        taken = await self.connection.call(
            lambda: evict(keys=[self.connection.key("done")], args=[self._max_streams])
        )
        if not taken:
            return
        pipe = self.connection.client.pipeline(transaction=False)
        for stream_id in map(as_text, taken[::2]):  # member, score, member, score...
            pipe.delete(
                self._meta(stream_id),
                self._log(stream_id),
                self._sizes(stream_id),
                self._readers(stream_id),
            )
        await self.connection.call(pipe.execute)

    async def renew(self, owned: Sequence[str], reading: Sequence[str]) -> None:
        packed = PackedCommands()
        packed.add(b"SET", self._instance_key(self.instance_id), 1, b"PX", self._lease_ms)
        known, self._packed = self._packed, {}  # streams no longer owned are forgotten
        for done, stream_id in enumerate(owned, 1):
            if not done % _PACK_SLICE:
                await asyncio.sleep(0)
            heads = self._packed[stream_id] = known.get(stream_id) or _Packed(self, stream_id)
            packed.add_packed(heads.renew)
            claim = self._claims.get(stream_id)
            if claim is not None:
                packed.add(b"PEXPIRE", claim, self._live_ms)
        until = int((time.time() + self._lease_ms / 1000) * 1000)
        for stream_id in reading:
            packed.add(b"ZADD", self._readers(stream_id), until, self.instance_id)
        for answer in await self._exchange(packed):
            if isinstance(answer, Exception):
                raise StoreUnavailable(describe(answer))
        await self.evict()

    async def _listen(self) -> None:
        """Follow the notices channel for the app's lifetime, subscribing again after a failure."""
        channel = self.connection.key("notices")
        while True:
            pubsub: Any = self.connection.client.pubsub()
            try:
                await pubsub.subscribe(channel)
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if redis_connection.cancelling():  # a cancel redis-py lost (3.11)
                        raise asyncio.CancelledError
                    if message is not None and message.get("type") == "message":
                        data = message["data"]
                        text = (
                            data.decode(errors="replace") if isinstance(data, bytes) else str(data)
                        )
                        notice, _, stream_id = text.partition(" ")
                        if notice in ("cancel", "follow"):
                            self._on_notice(notice, stream_id)  # type: ignore[arg-type]
            except asyncio.CancelledError:
                await _quietly(pubsub.aclose())
                raise
            except (RedisError, OSError) as exc:
                log.warning("redis notices channel: %s; subscribing again in 1 s", describe(exc))
                await _quietly(pubsub.aclose())
                await asyncio.sleep(1.0)

    # any instance's side

    async def state(self, stream_id: str) -> StreamState | None:
        client = self.connection.client
        pipe = client.pipeline(transaction=False)
        pipe.hgetall(self._meta(stream_id))
        pipe.xrevrange(self._log(stream_id), count=1)
        found, last = await self.connection.call(pipe.execute)
        if not found or b"meta" not in found:
            return None
        stream = _stream_of(json.loads(found[b"meta"]))
        base = int(found.get(b"base", 0))
        state = as_text(found.get(b"state", b"live"))
        if b"end" in found:
            end = int(found[b"end"])
        elif last:
            entry_id, fields = last[0]
            end = _start_of(entry_id) + int(fields[b"n"])
        else:
            end = 0
        record = found.get(b"record")
        return StreamState(
            stream, base, end, state != "live", None if record is None else json.loads(record)
        )

    async def read(self, stream_id: str, start: int, wait_s: float) -> Entries:
        client = self.connection.client
        log_key = self._log(stream_id)
        if wait_s > 0:
            # Following: ``start`` is where the last entry read ended, so the next entry's id is
            # above ``<start>-0``. Wait for it; on a timeout, say whether the stream ended.
            assert self._blocking is not None
            blocking = self._blocking
            wait_ms = max(1, int(min(wait_s, _POLL_S) * 1000))
            found: Any = await self.connection.call(
                lambda: blocking.xread({log_key: f"{start}-0"}, count=_READ_COUNT, block=wait_ms)
            )
            if found:
                return self._entries(start, found[0][1], stream_id)
            state = await self.connection.call(lambda: client.hget(self._meta(stream_id), "state"))
            if state is None:
                raise LookupError(stream_id)
            if state == b"live":
                return Entries(start, ())
            # It ended while this read waited: its last entries (the one that says so among
            # them) came in after the wait; read them.
            wait_s = 0
        # Anywhere (or after a wait that ended with the stream): the entry holding ``start`` is
        # the last one whose first position is <= it.
        pipe = client.pipeline(transaction=False)
        pipe.xrevrange(log_key, max=f"{start + 1}-0", count=1)
        pipe.xrange(log_key, min=f"({start + 1}-0", count=_READ_COUNT)
        pipe.exists(self._meta(stream_id))
        before, after, exists = await self.connection.call(pipe.execute)
        if not exists:
            raise LookupError(stream_id)
        entries = [*before, *after]
        if not entries:
            if start > 0:
                raise LookupError(stream_id)
            return Entries(start, ())
        return self._entries(start, entries, stream_id)

    def _entries(self, start: int, entries: list[Any], stream_id: str) -> Entries:
        """The events from ``start`` in consecutive log entries (a gap ends the read there)."""
        events: list[bytes] = []
        pos = start
        closed = lost = False
        for entry_id, fields in entries:
            first = _start_of(entry_id)
            count = int(fields[b"n"])
            if first > pos:
                if not events:  # trimmed away under this reader
                    raise LookupError(stream_id)
                break
            if first + count > pos:
                sizes = array("I")
                sizes.frombytes(fields[b"z"])
                data = fields[b"d"]
                offset = 0
                for i, size in enumerate(sizes):
                    if first + i >= pos:
                        events.append(data[offset : offset + size])
                    offset += size
                pos = first + count
            if b"c" in fields:
                closed, lost = True, b"x" in fields
                break
        return Entries(start, events, closed, lost)

    async def owner_alive(self, owner: str) -> bool:
        key = self._instance_key(owner)
        return bool(await self.connection.call(lambda: self.connection.client.exists(key)))

    async def mark_lost(self, stream_id: str, end: int) -> bool:
        self._claims.pop(stream_id, None)
        keys = [self._meta(stream_id), self._log(stream_id)]
        lost = self._scripts["lost"]
        marked = await self.connection.call(lambda: lost(keys=keys, args=[self._retain_ms]))
        return bool(marked)

    async def notify(self, notice: Notice, stream_id: str) -> None:
        channel = self.connection.key("notices")
        message = f"{notice} {stream_id}"
        await self.connection.call(lambda: self.connection.client.publish(channel, message))

    async def reading(self, stream_id: str, until: float) -> None:
        key = self._readers(stream_id)
        score = int(until * 1000)
        pipe = self.connection.client.pipeline(transaction=False)
        pipe.zadd(key, {self.instance_id: score})
        pipe.pexpire(key, self._live_ms)
        await self.connection.call(pipe.execute)

    async def readers_elsewhere(self, stream_id: str) -> int:
        key = self._readers(stream_id)
        now_ms = int(time.time() * 1000)
        found = await self.connection.call(
            lambda: self.connection.client.zrangebyscore(key, f"({now_ms}", "+inf")
        )
        return sum(1 for member in found if as_text(member) != self.instance_id)


def _start_of(entry_id: bytes | str) -> int:
    """The first position an entry holds (its id is ``<position + 1>-0``)."""
    return int(as_text(entry_id).partition("-")[0]) - 1


def _meta_fields(stream: SharedStream) -> dict[str, Any]:
    return {
        "id": stream.id,
        "route": stream.route,
        "form": stream.form,
        "owner": stream.owner,
        "key_id": stream.key_id,
        "formatter": stream.formatter,
        "formatter_options": dict(stream.formatter_options),
        "headers": dict(stream.headers),
        "provider": stream.provider,
        "model": stream.model,
        "created": stream.created,
        "grace_s": stream.grace_s,
        "idempotency": list(stream.idempotency) if stream.idempotency else None,
    }


def _stream_of(fields: dict[str, Any]) -> SharedStream:
    idempotency = fields.get("idempotency")
    return SharedStream(
        id=fields["id"],
        route=fields["route"],
        form=fields["form"],
        owner=fields["owner"],
        key_id=fields["key_id"],
        formatter=fields["formatter"],
        formatter_options=fields.get("formatter_options") or {},
        headers=fields.get("headers") or {},
        provider=fields.get("provider", ""),
        model=fields.get("model", ""),
        created=fields.get("created", 0.0),
        grace_s=fields.get("grace_s", 0.0),
        idempotency=(idempotency[0], idempotency[1]) if idempotency else None,
    )


async def _quietly(closing: Any) -> None:
    with contextlib.suppress(RedisError, OSError):
        await closing
