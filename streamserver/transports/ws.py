"""WebSocket: one socket, one stream at a time, read from the same event log as SSE.

The client sends a JSON object per message: a prompt (the route decides its fields),
``{"type": "cancel"}``, or ``{"type": "resume", "stream_id": ..., "received": n}`` after a dropped
connection (the stream's messages from the ``n``-th on are sent again, then it goes on live); a
route may take other types (the chat route's ``tool_result``), which go to its ``start``. The
server sends the formatter's WebSocket form. Bad input (bad JSON, a
binary frame, an unknown field, a message over ``max_message_bytes``) gets ``{"type": "error", ...}``
and the socket stays usable; only abuse closes it: repeated violations or a flood (close code 1008),
or a message so large it cannot be read (1009). A closed socket leaves its stream, which is then
cancelled, at once or after ``resume.grace_s`` unless a resume message reaches it first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import WSCloseCode, WSMsgType, web

from ..errors import StreamRejected
from ..event_log import Reader
from ..request_input import parse_json_object
from ..server_log import note_served
from ..streams import Stream
from .batching import BATCH_BYTES, Batch, Writers
from .tcp import reset_connection, watch_peer

logger = logging.getLogger("streamserver.ws")

STRIKES_TO_CLOSE = 20
"""Consecutive refused messages after which the socket is closed as abuse."""
_HARD_LIMIT_FACTOR = 4
"""Messages up to this multiple of ``max_message_bytes`` are read and refused; larger ones close."""


@dataclass(frozen=True, slots=True)
class ResumeRequest:
    """``{"type": "resume", "stream_id": ..., "received": n}``: send this stream's messages from the
    ``n``-th on (the first is 0: ``received`` counts the messages the client already has)."""

    stream_id: str | None
    received: int

    @classmethod
    def parse(cls, fields: dict[str, Any]) -> ResumeRequest:
        """Check a resume message's fields (``type`` already taken out)."""
        unknown = set(fields) - {"stream_id", "received"}
        if unknown:
            raise StreamRejected(
                400,
                "unknown_field",
                f"a resume message takes stream_id and received, not {sorted(unknown)}",
            )
        stream_id = fields.get("stream_id")
        received = fields.get("received", 0)
        if stream_id is not None and not isinstance(stream_id, str):
            raise StreamRejected(400, "invalid_resume", "'stream_id' must be a string")
        if not isinstance(received, int) or isinstance(received, bool) or received < 0:
            raise StreamRejected(
                400,
                "invalid_resume",
                "'received' must be how many of the stream's messages you have (0 or more)",
            )
        return cls(stream_id, received)


StartStream = Callable[[dict[str, Any]], Awaitable[Stream | dict[str, Any]]]
"""Starts a stream for a message; or answers it with one message of its own and starts none
(the chat route's acknowledgement of a tool result while others are still awaited)."""
"""Starts a stream for a prompt message's fields (raises ``StreamRejected`` to refuse it)."""
ResumeStream = Callable[[ResumeRequest], Awaitable[Stream]]
"""Finds the stream a ``resume`` message names and checks it may be read from ``received``."""


def error_message(code: str, message: str) -> dict[str, str]:
    """The WebSocket error shape: ``{"type": "error", "error": message, "code": code}``."""
    return {"type": "error", "error": message, "code": code}


class _Flood:
    """Token bucket on incoming messages: ``rate`` per second, bursts of twice that."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.tokens = 2 * rate
        self.at = time.monotonic()

    def allow(self) -> bool:
        now = time.monotonic()
        self.tokens = min(2 * self.rate, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class Socket:
    """One open WebSocket and the pump sending its current stream, for closing it at shutdown.

    Whatever ends it (the peer's close, a missing pong, shutdown), a peer that takes nothing for
    ``send_timeout_s`` is reset: aiohttp's own closes wait for the output to drain, which a peer
    with a zero window never lets happen."""

    __slots__ = ("pump", "send_timeout_s", "transport", "write_deadline", "ws")

    def __init__(
        self,
        ws: web.WebSocketResponse,
        transport: asyncio.Transport | None,
        send_timeout_s: float,
    ) -> None:
        self.ws = ws
        self.transport = transport
        self.send_timeout_s = send_timeout_s
        self.pump: asyncio.Task[None] | None = None
        self.write_deadline: float | None = None
        """When the write the pump is waiting on times out (``None``: no write waiting)."""

    async def close_going_away(self, timeout_s: float = 5.0) -> None:
        """Let the pump send what its stream has left (its end), then close with 1001: the
        client learns the server is going away instead of waiting on a silent socket."""
        if self.pump is not None and not self.pump.done():
            await asyncio.wait([self.pump], timeout=timeout_s)
        try:
            async with asyncio.timeout(self.send_timeout_s):
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await self.ws.close(
                        code=WSCloseCode.GOING_AWAY, message=b"server shutting down"
                    )
        except TimeoutError:  # the close frame waits behind output the peer does not take
            self.reset()

    def reset(self) -> None:
        """Drop the connection now (the peer takes nothing)."""
        if self.transport is not None:
            reset_connection(self.transport)

    def reset_if_stuck(self) -> None:
        """The socket is over but may still hold output the peer has not taken (aiohttp then
        closes the transport once it drains: maybe never). Reset it unless it drains by the
        deadline of the write that was waiting, or within ``send_timeout_s`` from now."""
        transport = self.transport
        if transport is None or not transport.get_write_buffer_size():
            return
        loop = asyncio.get_running_loop()
        deadline = self.write_deadline or loop.time() + self.send_timeout_s
        loop.call_at(deadline, self._reset_unless_drained)

    def _reset_unless_drained(self) -> None:
        if self.transport is not None and self.transport.get_write_buffer_size():
            self.reset()


async def serve_socket(
    request: web.Request,
    start: StartStream,
    resume: ResumeStream,
    *,
    sockets: set[Socket],
    batcher: Writers,
    heartbeat_s: float,
    max_message_bytes: int,
    send_timeout_s: float,
    busy: Literal["reject", "replace"] = "reject",
    messages_per_s: float = 20.0,
    kinds: Sequence[str] = (),
) -> web.StreamResponse:
    """Run one WebSocket connection: a prompt message starts a stream via ``start``, a resume
    message attaches to one already running (or retained) via ``resume``. Messages of the other
    ``kinds`` the route takes go to ``start`` too, with their ``type``."""
    # No permessage-deflate: deflating each small token message is per-token CPU for a few bytes
    # saved, and uncompressed frames can be written several at a time (_pump).
    ws = web.WebSocketResponse(
        heartbeat=heartbeat_s or None,
        max_msg_size=max_message_bytes * _HARD_LIMIT_FACTOR,
        compress=False,
    )
    try:
        await ws.prepare(request)
    except ConnectionError:
        # Gone during the handshake: nothing started. Raised from a handler, aiohttp logs this
        # as an error; an answer it cannot send is taken as the disconnect it is.
        return web.Response(status=499, reason="Client Closed Request")
    watch_peer(request, batcher.settings)
    socket = Socket(ws, request.transport, send_timeout_s)
    sockets.add(socket)
    current: Stream | None = None
    reader: Reader | None = None
    pump: asyncio.Task[None] | None = None
    strikes = 0
    flood = _Flood(messages_per_s)
    try:
        async for message in ws:
            if message.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                continue
            kind, fields, problem = _decode(message, max_message_bytes, kinds)
            if not flood.allow():
                problem = error_message(
                    "too_many_messages", f"send at most {messages_per_s:g} messages a second"
                )
            elif kind == "cancel":
                if current is not None and not current.finished:
                    current.cancel("cancelled")
                continue
            elif problem is None:
                if current is not None and not current.finished:
                    if busy == "reject":
                        problem = error_message(
                            "stream_in_progress",
                            "a stream is already running on this socket; cancel it first",
                        )
                    else:
                        current.cancel("cancelled")
                        assert pump is not None
                        await pump
                if problem is None:
                    try:
                        if kind == "resume":
                            current, position = await _resumed(resume, fields)
                        else:
                            if kind != "prompt":
                                fields["type"] = kind
                            started = await start(fields)
                            if isinstance(started, dict):  # answered, nothing to stream
                                await ws.send_json(started)
                                strikes = 0
                                continue
                            current, position = started, 0
                    except StreamRejected as exc:
                        problem = error_message(exc.code, exc.message)
                        if exc.code == "missing_prompt":
                            problem["error"] = "No prompt provided"
                    else:
                        strikes = 0
                        # Attached now, not when the pump first runs: the stream's epilogue waits
                        # for attached readers to write what they have (the chat route's reply).
                        reader = current.attach(position)
                        note_served(request, current)
                        pump = socket.pump = asyncio.get_running_loop().create_task(
                            _pump(socket, current, reader, batcher)
                        )
                        continue
            strikes += 1
            await ws.send_json(problem)
            if strikes >= STRIKES_TO_CLOSE:
                await ws.close(
                    code=WSCloseCode.POLICY_VIOLATION, message=b"too many invalid messages"
                )
                break
    finally:
        sockets.discard(socket)
        # The socket is gone: this reader leaves its stream, which then ends now or after
        # resume.grace_s (a client that reconnects in time resumes it).
        if pump is not None and not pump.done():
            pump.cancel()
            await asyncio.wait([pump])
        if current is not None and reader is not None:
            current.detach(reader)  # in case the pump was cancelled before it first ran
        socket.reset_if_stuck()
    return ws


async def _resumed(resume: ResumeStream, fields: dict[str, Any]) -> tuple[Stream, int]:
    request = ResumeRequest.parse(fields)
    stream = await resume(request)
    if stream.finished and request.received >= stream.log.end:
        raise StreamRejected(
            409, "stream_finished", "that stream has ended and you have all of its messages"
        )
    return stream, request.received


def _decode(
    message: Any, max_bytes: int, kinds: Sequence[str] = ()
) -> tuple[str, dict[str, Any], dict[str, str] | None]:
    """The message's type (prompt, cancel, resume or one of the route's ``kinds``) and its other
    fields, or the problem."""
    if message.type == WSMsgType.BINARY:
        return "", {}, error_message("binary_not_supported", "send JSON text messages")
    data: str = message.data
    if len(data) > max_bytes and len(data.encode()) > max_bytes:
        return (
            "",
            {},
            error_message("message_too_large", f"messages may be at most {max_bytes} bytes"),
        )
    try:
        fields = parse_json_object(data, "the message")
    except StreamRejected as exc:
        return "", {}, error_message(exc.code, exc.message)
    kind = fields.pop("type", "prompt")
    if kind not in ("prompt", "cancel", "resume", *kinds):
        *others, last = ("a prompt", "cancel", "resume", *kinds)
        known = f"{', '.join(others)} or {last}"
        return "", {}, error_message("unknown_type", f"unknown message type {kind!r}; send {known}")
    return kind, fields, None


def _writable_now(ws: web.WebSocketResponse, transport: asyncio.Transport) -> bool:
    """Open in both directions (no close frame sent or received) and nothing waiting to go out."""
    return (
        not ws.closed
        and ws.close_code is None
        and not transport.is_closing()
        and not transport.get_write_buffer_size()
    )


def _text_frames(items: Sequence[bytes | str]) -> bytes:
    """The messages as final, unmasked, uncompressed text frames (RFC 6455 section 5.2)."""
    parts: list[bytes] = []
    for item in items:
        payload = item.encode("utf-8", "backslashreplace")  # type: ignore[union-attr]
        size = len(payload)
        if size < 126:
            parts.append(bytes((0x81, size)))
        elif size < 1 << 16:
            parts.append(_HEAD16.pack(0x81, 126, size))
        else:
            parts.append(_HEAD64.pack(0x81, 127, size))
        parts.append(payload)
    return b"".join(parts)


_HEAD16 = struct.Struct("!BBH")
_HEAD64 = struct.Struct("!BBQ")


class _Tap(Batch):
    """A caught-up reader's tap (``StreamLog.follow``): each new message becomes a frame collected
    for one write at the end of this loop iteration, batched as SSE's are. No task switch per
    message; declined when the socket is backed up or closing, or a whole batch is collected (the
    reader then goes through aiohttp's writer, with flow control, and the producer can be held)."""

    __slots__ = ("_upto", "reader", "transport", "ws")

    def __init__(
        self,
        ws: web.WebSocketResponse,
        transport: asyncio.Transport,
        batcher: Writers,
        reader: Reader,
    ) -> None:
        super().__init__(batcher)
        self.ws = ws
        self.transport = transport
        self.reader = reader
        self._upto = 0
        """The position after the last collected message: ``reader.delivered`` once written."""

    def tap(self, item: bytes | str) -> bool:
        """Take one new message (``reader.pos`` is its position), or decline it."""
        if self.full or not _writable_now(self.ws, self.transport):
            return False
        self.collect(_text_frames((item,)))  # framed here: a bad item fails in the producer
        self._upto = self.reader.pos + 1
        return True

    def flush(self) -> None:
        """Write the collected frames at once; the reader has delivered them."""
        frames = self.take()
        ws = self.ws
        # A close frame may have gone out since the tap (the peer's close answered, a policy
        # close): nothing may follow it, and what is dropped here never reached the client.
        if ws.closed or ws.close_code is not None or self.transport.is_closing():
            return
        self.transport.write(frames)
        self.reader.delivered = self._upto


async def _pump(
    socket: Socket,
    stream: Stream,
    reader: Reader,
    batcher: Writers,
) -> None:
    """Send the stream's messages from the reader's position in order until it ends.

    A peer that accepts nothing for ``send_timeout_s`` is dropped (the connection is reset: a
    close frame could not reach it either), which ends the socket and detaches its reader. If the
    socket ends first (a missing pong), its deadline stays (``Socket.reset_if_stuck``)."""
    ws, transport, send_timeout_s = socket.ws, socket.transport, socket.send_timeout_s
    loop = asyncio.get_running_loop()
    log = stream.log
    pos = reader.pos
    tap = _Tap(ws, transport, batcher, reader).tap if transport is not None else None
    try:
        while True:
            if pos >= log.end:
                if log.closed:
                    break
                if tap is None:
                    await log.wait(pos)
                else:
                    # Caught up: each new message is framed from the producer's own step.
                    await log.follow(reader, tap)
                    pos = reader.pos
                continue
            items = log.read(pos)
            if len(items) > 1 and transport is not None and _writable_now(ws, transport):
                # Several messages ready and nothing queued: one write for all of them.
                frames = _text_frames(items)
                if len(frames) <= BATCH_BYTES:  # into an empty buffer: bounded
                    transport.write(frames)
                    pos += len(items)
                    reader.delivered = pos
                    log.advance(reader, pos)
                    continue
            socket.write_deadline = deadline = loop.time() + send_timeout_s
            async with asyncio.timeout_at(deadline):
                for item in items:
                    # backslashreplace: a lone surrogate (half an emoji from a broken upstream)
                    # goes as the JSON escape it came from; strict UTF-8 would kill the socket.
                    data = item.encode("utf-8", "backslashreplace")  # type: ignore[union-attr]
                    await ws.send_frame(data, WSMsgType.TEXT)
                    pos += 1
                    reader.delivered = pos
            socket.write_deadline = None
            log.advance(reader, pos)
    except TimeoutError:
        socket.reset()
    except (ConnectionError, RuntimeError):
        pass
    except Exception:
        # A bug, not the peer: say so with 1011 rather than leave the client waiting.
        logger.exception("sending stream %s over a WebSocket failed", stream.id)
        with contextlib.suppress(ConnectionError, RuntimeError):
            await ws.close(code=WSCloseCode.INTERNAL_ERROR, message=b"internal error")
    finally:
        stream.detach(reader)
