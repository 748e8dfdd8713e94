"""Server-Sent Events: encode events once into the log, and write a stream's log to one client.

Headers go out (and keep-alive pings start) the moment a request is accepted, so a long time to
first token never trips a proxy's idle timeout. A reader that is behind writes everything
available in one ``write``: batching comes for free from the log.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp_sse import EventSourceResponse

from ..event_log import Reader
from ..server_log import note_served
from ..streams import Stream
from .batching import Batch, Writers
from .tcp import reset_connection, watch_peer

logger = logging.getLogger("streamserver.sse")

_PING = b": ping\n"
"""A comment line: ignored by every SSE parser. No blank line after it, so a parser that
dispatches on any blank line (httpx-sse 0.4, florimondmanca/httpx-sse#35) sees no empty event."""


class Connection(Batch):
    """One client's socket while it reads a stream: the log's tap, a flush and a ping target.

    Writes go straight to the transport, framed as the response's body is (HTTP/1.1 chunks, or
    raw bytes for HTTP/1.0), and only while the socket's buffer is empty; a client that falls
    behind is written to through aiohttp, with drain and the send timeout.
    """

    __slots__ = ("chunked", "quiet", "reader", "transport")

    def __init__(
        self, transport: asyncio.Transport, chunked: bool, writers: Writers, reader: Reader
    ) -> None:
        super().__init__(writers)
        self.transport = transport
        self.reader = reader
        """Its position in the log; ``reader.delivered`` is raised as each write goes out."""
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
        """Write the collected events as one chunk (the tap advanced the reader past them)."""
        if self._send(self.take()):
            self.reader.delivered = self.reader.pos

    def ping_if_quiet(self) -> None:
        """Send a keep-alive comment if nothing went out since the last tick."""
        if self.quiet and not self._pending and not self.transport.get_write_buffer_size():
            self._send(_PING)
        self.quiet = True

    def _send(self, data: bytes) -> bool:
        self.quiet = False
        transport = self.transport
        if transport.is_closing():
            return False
        transport.write(b"%x\r\n%b\r\n" % (len(data), data) if self.chunked else data)
        return True


class SSEResponse(EventSourceResponse):
    """aiohttp-sse's response (its headers, ``send``, ``last_event_id``) without its ping task:
    ``Writers`` pings every connection from one timer. A task, its frame and a sleep
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


async def send_stream(
    request: web.Request,
    stream: Stream,
    start: int,
    writers: Writers,
) -> web.StreamResponse:
    """Send ``stream``'s events from ``start`` to this client until the stream ends.

    If the client goes away, the reader detaches and the stream decides (cancel now, or wait
    ``grace_s`` for a resume).
    """
    response = SSEResponse(
        headers={"X-Stream-ID": stream.id, **stream.headers}, sep="\n", allow_all_methods=True
    )
    settings = writers.settings
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
        conn = Connection(transport, chunked, writers, reader)
        writers.add(conn)
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
            reader.delivered = reader.pos
        await response.write_eof()
    except (ConnectionError, TimeoutError, RuntimeError):
        # The client went away (reset, stalled past send_timeout, or closed under us).
        if request.transport is not None and not request.transport.is_closing():
            reset_connection(request.transport)  # a stalled peer never drains: do not wait for it
    finally:
        if conn is not None:
            writers.discard(conn)
        stream.detach(reader)
    return response
