"""Server-Sent Events: encode events once into the log, and write a stream's log to one client.

Headers go out (and keep-alive pings start) the moment a request is accepted, so a long time to
first token never trips a proxy's idle timeout. A reader that is behind writes everything
available in one ``write``: batching comes for free from the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import struct
from abc import ABC, abstractmethod
from typing import Protocol

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp_sse import EventSourceResponse

from ..request_input import parse_count
from ..server_log import note_served
from ..settings import ServerSettings
from ..streams import Stream
from ..types import Event

logger = logging.getLogger("streamserver.sse")

BATCH_BYTES = 65536
"""A tap takes at most this much in one loop iteration; then its reader takes the ordinary path,
with flow control and the send timeout (and the producer can be held back)."""

_LINE_BREAK = re.compile(r"\r\n|\r|\n")


class SSEEncoder:
    """Encodes one stream's events as SSE bytes with ``id: <stream_id>:<seq>``."""

    __slots__ = ("_id_prefix", "_retry", "_token_event", "_token_head")

    def __init__(self, stream_id: str, token_event: str | None, retry_ms: int) -> None:
        self._id_prefix = f"id: {stream_id}:"
        self._token_event = token_event
        self._token_head = f"\nevent: {token_event}\ndata: " if token_event else "\ndata: "
        self._retry = retry_ms

    def segment(self, seq: int, data: str) -> bytes:
        """One token event. Hot path: a single f-string and encode when ``data`` is one line."""
        if seq == 0 or "\n" in data or "\r" in data:
            return self.event(seq, Event(self._token_event, data))
        # backslashreplace: a lone surrogate (half an emoji from a broken upstream) becomes the
        # JSON escape it came from instead of an exception; valid text is untouched.
        return f"{self._id_prefix}{seq}{self._token_head}{data}\n\n".encode(
            "utf-8", "backslashreplace"
        )

    def event(self, seq: int, event: Event) -> bytes:
        """Any event; multi-line data becomes several ``data:`` lines, as the spec rebuilds it."""
        lines = [f"{self._id_prefix}{seq}"]
        if event.name:
            lines.append(f"event: {event.name}")
        lines.extend(f"data: {line}" for line in _LINE_BREAK.split(event.data))
        if seq == 0 and self._retry:
            lines.append(f"retry: {self._retry}")
        lines.append("\n")
        return "\n".join(lines).encode("utf-8", "backslashreplace")


class Flushable(Protocol):
    """Something that collected writes during this loop iteration and writes them at once."""

    def flush(self) -> None:
        """Write what was collected."""
        ...


_PING = b": ping\n"
"""A comment line: ignored by every SSE parser. No blank line after it, so a parser that
dispatches on any blank line (httpx-sse 0.4, florimondmanca/httpx-sse#35) sees no empty event."""


class SSEConnections:
    """The open SSE connections of one app, written to directly while their readers keep up.

    Two jobs done once for all connections instead of once per connection or per token:

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
        self._open: set[Connection] = set()
        self._flushes: list[Flushable] = []
        self._ticker: asyncio.TimerHandle | None = None

    def add(self, conn: Connection) -> None:
        """Ping ``conn`` while it is open."""
        self._open.add(conn)
        if self._ticker is None:
            self._schedule()

    def discard(self, conn: Connection) -> None:
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
    """Writes a tap collected during one loop iteration, written at once when ``SSEConnections``
    flushes (at most ``BATCH_BYTES`` of them): the batching SSE and WebSocket taps share."""

    __slots__ = ("_bytes", "_flusher", "_pending")

    def __init__(self, flusher: SSEConnections) -> None:
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


class Connection(Batch):
    """One client's socket while it reads a stream: the log's tap, a flush and a ping target.

    Writes go straight to the transport, framed as the response's body is (HTTP/1.1 chunks, or
    raw bytes for HTTP/1.0), and only while the socket's buffer is empty; a client that falls
    behind is written to through aiohttp, with drain and the send timeout.
    """

    __slots__ = ("chunked", "quiet", "transport")

    def __init__(
        self, transport: asyncio.Transport, chunked: bool, connections: SSEConnections
    ) -> None:
        super().__init__(connections)
        self.transport = transport
        self.chunked = chunked
        self.quiet = False
        """Nothing sent since the last ping tick."""

    def tap(self, item: bytes | str) -> bool:
        """Take one new event for writing at the end of this loop iteration (``StreamLog.follow``);
        False when the socket is backed up or a whole batch is collected, so the reader takes the
        ordinary path."""
        transport = self.transport
        if self.full or transport.is_closing() or transport.get_write_buffer_size():
            return False
        self.collect(item)  # type: ignore[arg-type]
        return True

    def flush(self) -> None:
        """Write the collected events as one chunk."""
        self._send(self.take())

    def ping_if_quiet(self) -> None:
        """Send a keep-alive comment if nothing went out since the last tick."""
        if self.quiet and not self._pending and not self.transport.get_write_buffer_size():
            self._send(_PING)
        self.quiet = True

    def _send(self, data: bytes) -> None:
        self.quiet = False
        transport = self.transport
        if not transport.is_closing():
            transport.write(b"%x\r\n%b\r\n" % (len(data), data) if self.chunked else data)


class SSEResponse(EventSourceResponse):
    """aiohttp-sse's response (its headers, ``send``, ``last_event_id``) without its ping task:
    ``SSEConnections`` pings every connection from one timer. A task, its frame and a sleep
    timer per open stream were about 1 KiB of what each of 10,000 idle streams cost."""

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        """Send the headers now (aiohttp's ``StreamResponse`` does not hold them back)."""
        if self.prepared:
            return await super().prepare(request)
        writer = await web.StreamResponse.prepare(self, request)
        self.enable_chunked_encoding()
        return writer

    async def write_eof(self, data: bytes = b"") -> None:
        """End the body (aiohttp-sse's version also restores a socket option we never set)."""
        await web.StreamResponse.write_eof(self, data)


def reset_connection(transport: asyncio.Transport) -> None:
    """Drop a connection whose peer takes nothing: a reset (``SO_LINGER`` 0), not a close.

    A plain close of a socket with unsent output leaves the kernel probing a zero window with
    those bytes for minutes; a reset frees them now and tells the peer at once."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_NONE)
    transport.abort()


_LINGER_NONE = struct.pack("ii", 1, 0)
"""``struct linger`` on, 0 s: ``close`` resets the connection and discards what is unsent."""


def watch_peer(request: web.Request, settings: ServerSettings) -> None:
    """Make the kernel drop a connection whose peer vanished without FIN or RST (Wi-Fi off), or
    takes nothing (a zero window), even for the bytes it holds after the server let go.

    ``TCP_USER_TIMEOUT``: data unacknowledged, or a zero window, this long resets the connection:
    the shorter of ``dead_peer_timeout_s`` (our pings go unanswered) and ``send_timeout_s`` (the
    send timeout only sees the bytes still in our buffers; a socket closed with the kernel's send
    queue full would otherwise linger as long as the peer keeps its window shut). Keepalive probes
    cover a connection with nothing to send. Linux only; elsewhere a no-op.
    """
    sock = request.transport.get_extra_info("socket") if request.transport else None
    if sock is None:
        return
    dead_peer_s = settings.dead_peer_timeout_s
    user_timeout_s = min((t for t in (dead_peer_s, settings.send_timeout_s) if t > 0), default=0)
    # Not a TCP socket (a Unix socket): the first option fails and the rest are skipped. Asking
    # ``sock.family`` first would build an IntEnum per connection.
    with contextlib.suppress(OSError, AttributeError):
        if user_timeout_s:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, int(user_timeout_s * 1000))
        if dead_peer_s > 0:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, max(1, int(dead_peer_s / 2)))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, max(1, int(dead_peer_s / 6)))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)


def parse_event_id(value: str) -> tuple[str, int] | None:
    """``"<stream_id>:<seq>"`` to its parts, or ``None`` if it is not one of ours."""
    stream_id, sep, seq = value.rpartition(":")
    number = parse_count(seq)
    if not sep or not stream_id or number is None:
        return None
    return stream_id, number


async def send_stream(
    request: web.Request,
    stream: Stream,
    start: int,
    connections: SSEConnections,
) -> web.StreamResponse:
    """Send ``stream``'s events from ``start`` to this client until the stream ends.

    If the client goes away, the reader detaches and the stream decides (cancel now, or wait
    ``grace_s`` for a resume).
    """
    response = SSEResponse(
        headers={"X-Stream-ID": stream.id, **stream.headers}, sep="\n", allow_all_methods=True
    )
    settings = connections.settings
    log = stream.log
    # Attached before the headers go out: a client already gone then leaves the stream as any
    # reader does (parked for a resume, or cancelled) instead of leaving it generating unread.
    reader = stream.attach(start)
    note_served(request, stream)
    conn: Connection | None = None
    try:
        await response.prepare(request)
        transport = request.transport
        if transport is None:  # gone before the headers went out
            return response
        watch_peer(request, settings)
        chunked = response.headers.get("Transfer-Encoding") == "chunked"
        conn = Connection(transport, chunked, connections)
        connections.add(conn)
        while True:
            if reader.pos >= log.end:
                if log.closed:
                    break
                # Caught up: each new event goes to the socket from the producer's own step.
                await log.follow(reader, conn.tap)
                continue
            # Behind (a resume, a slow socket): everything available in one write.
            items = log.read(reader.pos)
            data = items[0] if len(items) == 1 else b"".join(items)  # type: ignore[arg-type]
            conn.quiet = False
            if len(data) < 32768 and not transport.get_write_buffer_size():
                await response.write(data)  # type: ignore[arg-type]  # cannot block
            else:
                async with asyncio.timeout(settings.send_timeout_s):
                    await response.write(data)  # type: ignore[arg-type]
            log.advance(reader, reader.pos + len(items))
        await response.write_eof()
    except (ConnectionError, TimeoutError, RuntimeError):
        # The client went away (reset, stalled past send_timeout, or closed under us).
        if request.transport is not None and not request.transport.is_closing():
            reset_connection(request.transport)  # a stalled peer never drains: do not wait for it
    finally:
        if conn is not None:
            connections.discard(conn)
        stream.detach(reader)
    return response
