"""Server-Sent Events: encode events once into the log, and write a stream's log to one client.

Headers go out (and keep-alive pings start) the moment a request is accepted, so a long time to
first token never trips a proxy's idle timeout. A reader that is behind writes everything
available in one ``write``: batching comes for free from the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket

from aiohttp import web
from aiohttp_sse import EventSourceResponse

from ..config import ServerSettings
from ..streams import Stream
from ..types import Event

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


def _detect_dead_peer(request: web.Request, timeout_s: float) -> None:
    """Make the kernel drop a connection whose peer vanished without FIN or RST (Wi-Fi off).

    ``TCP_USER_TIMEOUT``: data (our pings) unacknowledged this long aborts the connection;
    keepalive probes cover a connection with nothing to send. Linux only; elsewhere a no-op.
    """
    sock = request.transport.get_extra_info("socket") if request.transport else None
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, int(timeout_s * 1000))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, max(1, int(timeout_s / 2)))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, max(1, int(timeout_s / 6)))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)


def parse_event_id(value: str) -> tuple[str, int] | None:
    """``"<stream_id>:<seq>"`` to its parts, or ``None`` if it is not one of ours."""
    stream_id, sep, seq = value.rpartition(":")
    if not sep or not stream_id or not seq.isdigit():
        return None
    return stream_id, int(seq)


async def send_stream(
    request: web.Request,
    stream: Stream,
    start: int,
    settings: ServerSettings,
) -> EventSourceResponse:
    """Send ``stream``'s events from ``start`` to this client until the stream ends.

    If the client goes away, the reader detaches and the stream decides (cancel now, or wait
    ``grace_s`` for a resume).
    """
    response = EventSourceResponse(
        headers={"X-Stream-ID": stream.id, **stream.headers},
        sep="\n",
        allow_all_methods=True,
        ping_interval=settings.ping_interval_s,
        send_timeout=settings.send_timeout_s,
    )
    await response.prepare(request)
    if settings.dead_peer_timeout_s > 0:
        _detect_dead_peer(request, settings.dead_peer_timeout_s)
    log = stream.log
    reader = stream.attach(start)
    transport = request.transport
    # While this reader keeps up, new events are written to the socket the moment they are
    # appended (``follow``): no task switch, no future, no timer per token. That needs the
    # framing on the wire to be plain HTTP/1.1 chunks we can write ourselves (no compression),
    # and the headers flushed by aiohttp's own first write.
    direct = (
        transport is not None
        and not response.compression
        and response.headers.get("Transfer-Encoding") == "chunked"
    )

    def write_now(item: bytes | str) -> bool:
        # Only into an empty socket buffer: a reader that falls behind goes back to the
        # ordinary path, with batching, drain and the send timeout.
        if transport is None or transport.is_closing() or transport.get_write_buffer_size():
            return False
        transport.write(b"%x\r\n%b\r\n" % (len(item), item))  # type: ignore[str-format]
        return True

    wrote = False
    try:
        async with response:
            while True:
                if reader.pos >= log.end:
                    if log.closed:
                        break
                    if wrote and direct:
                        await log.follow(reader, write_now)
                        log.advance(reader, reader.pos)
                    else:
                        await log.wait(reader.pos)
                    continue
                items = log.read(reader.pos)
                data = items[0] if len(items) == 1 else b"".join(items)  # type: ignore[arg-type]
                if len(data) < 32768 and transport and not transport.get_write_buffer_size():
                    await response.write(data)  # type: ignore[arg-type]  # cannot block
                else:
                    async with asyncio.timeout(settings.send_timeout_s):
                        await response.write(data)  # type: ignore[arg-type]
                wrote = True
                log.advance(reader, reader.pos + len(items))
    except (ConnectionError, TimeoutError, RuntimeError):
        # The client went away (reset, stalled past send_timeout, or closed under us).
        pass
    finally:
        stream.detach(reader)
    return response
