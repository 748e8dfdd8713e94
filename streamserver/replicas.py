"""Replicas: the streams of other instances, read here (``[resume] store`` distributed).

A reader here of a stream another instance runs (a resume, ``GET /v1/streams/{id}``, a WebSocket
``resume``, an idempotent retry) gets a *replica*: a local ``Stream`` whose log is filled from
the store and followed live by one task, so the transports read it exactly as an owned stream's.
Its readers are marked in the store (the owner's grace period counts them); it stops following
``LINGER_S`` after its last reader leaves. When the owner's lease lapses (it died), the replica
that notices marks the stream lost and ends it with the route's own ``stream_lost`` error; so does
every other replica after it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from .encoding import encoder_for
from .event_log import StreamLog
from .record import StreamRecord
from .stores import StoreUnavailable, StreamState, StreamStore, store_unavailable
from .streams import Stream, StreamRegistry, minted_at
from .types import StreamEnd, StreamFailure, StreamStart

if TYPE_CHECKING:
    from .config import Config

log = logging.getLogger("streamserver.shared")

LINGER_S = 2.0
"""A replica whose last reader left follows its stream this much longer, for a reader that
reconnects; then it stops (the next reader makes a new one from the store)."""
POLL_S = 2.0
"""The longest a replica waits for its next events before it checks the owner's lease."""
RETRY_S = 0.5
"""Between attempts at a read that failed."""
PUBLISH_POLL_S = 0.005
"""The first wait before asking the store again for a young stream it does not hold yet."""
SKEW_S = 5.0
"""An id minted further ahead of this instance's clock than this is not a young stream's."""
YOUNG_S = 2.0
"""How long (at most ``lease_s``) a replica waits for a young id the store does not hold: its
owner publishes it in one round trip of its writer, well within this."""
MAX_YOUNG_WAITS = 256
"""Young ids waited for at once, at most; beyond, an unknown id is a 404 at once."""
LOST = StreamFailure(
    "stream_lost",
    "the instance that ran this stream stopped before it ended; start the request again",
    retryable=True,
)
EXPIRED = StreamFailure(
    "events_expired",
    "this reader fell behind what is kept of the stream (resume.max_bytes_per_stream)",
)

Spawn = Callable[[Coroutine[Any, Any, Any], str], "asyncio.Task[Any]"]


async def quietly(call: Coroutine[Any, Any, Any]) -> None:
    """Await a store call whose failure only needs a log line."""
    try:
        await call
    except StoreUnavailable as exc:
        log.warning("stream store: %s", exc)


class Replicas:
    """The replicas of one instance, made on demand and shared by its readers."""

    def __init__(
        self, store: StreamStore, config: Config, registry: StreamRegistry, spawn: Spawn
    ) -> None:
        self.store = store
        self.config = config
        self.registry = registry
        self.lease_s = config.redis.lease_s
        self._spawn = spawn
        self._opening: dict[tuple[str, str | None], asyncio.Future[Stream | None]] = {}
        """Replicas being made, by stream id (and the caller they are checked for)."""
        self.opened = 0
        """Replicas made since start."""
        self._young = 0
        """Requests waiting for a young id to appear in the store (``_state``)."""

    async def find(self, stream_id: str, key_id: str | None = None) -> Stream | None:
        """A replica of a stream another instance runs (or ran), or ``None`` if the store has
        no such stream (or, with ``key_id``, none that caller started: no replica is made for
        another caller). Concurrent requests for one id share one replica (and one whose client
        goes away meanwhile does not cancel it for the others)."""
        opening = self._opening.get((stream_id, key_id))
        if opening is None:
            opening = asyncio.ensure_future(self._open_replica(stream_id, key_id))
            self._opening[stream_id, key_id] = opening
            opening.add_done_callback(lambda _: self._opening.pop((stream_id, key_id), None))
        return await asyncio.shield(opening)

    async def _open_replica(self, stream_id: str, key_id: str | None) -> Stream | None:
        found = self.registry.get(stream_id)
        if found is not None:
            return found
        try:
            state = await self._state(stream_id)
            if state is None or (key_id is not None and state.stream.key_id != key_id):
                return None
            replica = self._replica(state)
            pos, closed, lost = await self._fill(replica, state.base)
            self.opened += 1
        except StoreUnavailable as exc:
            raise store_unavailable(exc, "stream") from None
        except LookupError:
            return None
        if not closed:  # from now on its owner writes its events as they come
            self._spawn(quietly(self.store.notify("follow", stream_id)), "follow")
        if closed:
            if lost:
                self._end_lost(replica)
            elif state.record is not None:
                replica.record = StreamRecord.from_data(dict(state.record))
            replica.log.close()
            replica.watch = None  # nothing to follow: its readers need no mark
            return replica
        self.registry.add_replica(
            replica,
            lambda: asyncio.get_running_loop().create_task(
                self._follow(replica, pos), name=f"replica {stream_id}"
            ),
        )
        return replica

    async def _state(self, stream_id: str) -> StreamState | None:
        """The stream's state in the store. An id made less than ``YOUNG_S`` ago that the store
        does not hold yet may be a stream whose owner has not published it (it does with its
        first write, in its writer's next round trip): a client that got the id and came here
        at once waits for it (store polls, backing off), not a 404. Any other unknown id is
        ``None`` at once, and so is a young one beyond ``MAX_YOUNG_WAITS`` waiting already: the
        id's time is not a secret, so a made-up young id costs a bounded wait, never more."""
        state = await self.store.state(stream_id)
        made = minted_at(stream_id)
        if state is not None or made is None or self._young >= MAX_YOUNG_WAITS:
            return state
        now = time.time()
        if made > now + SKEW_S:
            return None
        until = min(made, now) + min(self.lease_s, YOUNG_S)
        self._young += 1
        try:
            pause = PUBLISH_POLL_S
            while (remaining := until - time.time()) > 0:
                await asyncio.sleep(min(pause, remaining))
                pause = min(pause * 2, POLL_S / 8)
                state = await self.store.state(stream_id)
                if state is not None:
                    return state
        finally:
            self._young -= 1
        return None

    def _replica(self, state: StreamState) -> Stream:
        shared = state.stream
        resume = self.config.resume
        replica = Stream(
            shared.id,
            shared.route,
            StreamLog(
                self.config.limits.high_water_events,
                retain=True,
                max_bytes=resume.max_bytes_per_stream,
                compress=shared.form == "sse",
                base=state.base,
            ),
            grace_s=0.0,
            key_id=shared.key_id,
            form=shared.form,
        )
        replica.replica = True
        replica.shared = shared
        identity = None if shared.key_id.startswith("addr:") else shared.key_id or None
        replica.info = StreamStart(
            shared.id, shared.route, shared.provider, shared.model, shared.created, key_id=identity
        )
        replica.headers.update(shared.headers)
        if shared.idempotency is not None:
            replica.idempotency = (shared.key_id, *shared.idempotency)
        replica.watch = self._watch
        replica.remote_cancel = lambda: self._spawn(
            quietly(self.store.notify("cancel", shared.id)), f"cancel {shared.id}"
        )
        return replica

    async def _fill(self, replica: Stream, pos: int) -> tuple[int, bool, bool]:
        """Copy what the store has of the stream into the replica's log."""
        decode = replica.form != "sse"
        append = replica.log.append
        while True:
            entries = await self.store.read(replica.id, pos, 0)
            for event in entries.events:
                append(event.decode() if decode and isinstance(event, bytes) else event)
            pos = entries.end
            if entries.closed or not entries.events:
                return pos, entries.closed, entries.lost

    async def _follow(self, replica: Stream, pos: int) -> None:
        """Follow the stream live until it ends, is lost, or this instance stops."""
        shared = replica.shared
        assert shared is not None
        stream_log = replica.log
        failing_since: float | None = None
        decode = replica.form != "sse"
        while True:
            await stream_log.writable()
            asked = time.monotonic()
            try:
                entries = await self.store.read(replica.id, pos, POLL_S)
                if not entries.events and not entries.closed:
                    owner_gone = not await self.store.owner_alive(shared.owner)
                    if owner_gone and await self.store.mark_lost(replica.id, pos):
                        self._end_lost(replica)
                        return
                    continue
            except LookupError:  # trimmed past this reader, or its keys are gone
                self._end_lost(replica, await self._why_gone(replica))
                return
            except StoreUnavailable as exc:
                now = time.monotonic()
                failing_since = failing_since or asked
                if now - failing_since > self.lease_s:
                    log.warning(
                        "replica %s: the store failed for %gs (%s)",
                        replica.id,
                        now - failing_since,
                        exc,
                    )
                    self._end_lost(replica)
                    return
                await asyncio.sleep(RETRY_S)
                continue
            failing_since = None
            for event in entries.events:
                stream_log.append(event.decode() if decode and isinstance(event, bytes) else event)
            pos = entries.end
            if entries.closed:
                if entries.lost:
                    self._end_lost(replica)
                else:
                    await self._read_record(replica)
                return

    async def _read_record(self, replica: Stream) -> None:
        """The record its owner kept, if any, before the replica's log closes."""
        try:
            state = await self.store.state(replica.id)
        except StoreUnavailable as exc:
            log.warning("replica %s: its record could not be read (%s)", replica.id, exc)
            return
        if state is not None and state.record is not None:
            replica.record = StreamRecord.from_data(dict(state.record))

    async def _why_gone(self, replica: Stream) -> StreamFailure:
        """Why the store has no more events for a replica: trimmed past it (it fell behind
        ``max_bytes_per_stream``), or the stream is gone (evicted, or expired with its owner)."""
        try:
            kept = await self.store.state(replica.id) is not None
        except StoreUnavailable:
            kept = False
        return EXPIRED if kept else LOST

    def _end_lost(self, replica: Stream, why: StreamFailure | None = None) -> None:
        """Close a replica of a lost stream with the route's own error events."""
        shared = replica.shared
        assert shared is not None and replica.info is not None
        part = self.config.formatters.get(shared.formatter)
        if part is None:
            log.warning(
                "stream %s lost; formatter %r is not configured here", replica.id, shared.formatter
            )
            return
        try:
            settings = part.options
            known = {f.name for f in dataclasses.fields(settings)}
            overrides = {k: v for k, v in shared.formatter_options.items() if k in known}
            formatter = part.registration.factory(
                dataclasses.replace(settings, **overrides), replica.form
            )
            formatter.start(replica.info)
            failure = dataclasses.replace(why or LOST, stream_id=replica.id)
            summary = StreamEnd(
                replica.id, shared.model, "error", "error", 0, 0, 0, 0.0, None, error=failure
            )
            encoder = encoder_for(
                replica.form, replica.id, formatter.token_event, self.config.server.retry_ms
            )
            for event in formatter.error(failure, summary):
                replica.log.append(encoder.event(replica.log.end, event))
        except Exception:
            log.exception("stream %s lost; its formatter failed to end it", replica.id)

    def _watch(self, replica: Stream) -> None:
        """A replica's readers changed: mark them in the store (the owner's grace counts them);
        after the last one, linger a moment, then stop following."""
        shared = replica.shared
        assert shared is not None
        ahead = self.lease_s if replica.log.readers else shared.grace_s
        self._spawn(quietly(self.store.reading(replica.id, time.time() + ahead)), "reading")
        if not replica.log.readers:
            replica.when_unread(LINGER_S, lambda: self._retire(replica))

    def _retire(self, replica: Stream) -> None:
        """A replica nobody read for ``LINGER_S``: forget it and stop following."""
        if replica.log.readers:
            return
        if self.registry.streams.get(replica.id) is replica:
            del self.registry.streams[replica.id]
        if replica.task is not None:
            replica.task.cancel()
