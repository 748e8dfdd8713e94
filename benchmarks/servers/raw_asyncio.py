"""Baseline 3, the floor: a bare ``asyncio.Protocol`` writing pre-encoded events.

No framework at all: the request is taken as soon as its head is complete, every token event is
encoded once at start-up (only the ``id:`` line is formatted per event), and each event is one
HTTP/1.1 chunk written straight to the transport. It still does what a real SSE server must: one
write per token as it is produced, pacing, keep-alive pings, flow control, and stopping when the
client goes away. That makes it the practical floor of one Python process for this workload.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from . import workload

_HEAD = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: text/event-stream\r\n"
    b"Cache-Control: no-cache\r\n"
    b"Connection: keep-alive\r\n"
    b"X-Accel-Buffering: no\r\n"
    b"Transfer-Encoding: chunked\r\n"
    b"X-Stream-ID: %b\r\n\r\n"
)
_NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
_PING = b"9\r\n: ping\n\n\n\r\n"  # ": ping\n\n" as one chunk


class StreamProtocol(asyncio.Protocol):
    """One connection: read one request head, then stream the answer."""

    def __init__(self, tails: list[bytes], pace: float, yield_mask: int = 63) -> None:
        self.tails = tails
        self.pace = pace
        self.yield_mask = yield_mask
        self.head = b""
        self.transport: asyncio.Transport | None = None
        self.task: asyncio.Task[None] | None = None
        self.ping: asyncio.TimerHandle | None = None
        self.writable: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.task is not None:
            return  # one request per connection is all the load generator sends
        self.head += data
        if b"\r\n\r\n" not in self.head:
            return
        assert self.transport is not None
        if not self.head.startswith(b"GET /v1/stream"):
            self.transport.write(_NOT_FOUND)
            self.transport.close()
            return
        self.task = asyncio.get_running_loop().create_task(self.stream())

    def connection_lost(self, exc: Exception | None) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
        if self.ping is not None:
            self.ping.cancel()
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)

    def pause_writing(self) -> None:
        self.writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)
        self.writable = None

    def send_ping(self) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(_PING)
            self.ping = asyncio.get_running_loop().call_later(
                workload.PING_INTERVAL_S, self.send_ping
            )

    async def stream(self) -> None:
        transport = self.transport
        assert transport is not None
        write = transport.write
        loop = asyncio.get_running_loop()
        clock = loop.time
        stream_id = workload.new_stream_id()
        sid = stream_id.encode()
        started = time.monotonic()
        write(_HEAD % sid)
        self.ping = loop.call_later(workload.PING_INTERVAL_S, self.send_ping)
        first = f"id: {stream_id}:0\nevent: stream_start\ndata: {workload.start_data(stream_id)}"
        _write_event(write, f"{first}\nretry: {workload.RETRY_MS}\n\n".encode())
        tails = self.tails
        gap = 1.0 / self.pace if self.pace > 0 else 0.0
        due = clock()
        n = len(tails)
        mask = self.yield_mask
        for i in range(n):
            if gap:
                delay = due - clock()
                if delay > 0:
                    await asyncio.sleep(delay)
                due += gap
            elif not i & mask:
                await asyncio.sleep(0)
            if transport.is_closing():
                return
            # The hot path: one %-format for the id, one chunk, one write.
            event = b"id: %b:%d%b" % (sid, i + 1, tails[i])
            write(b"%x\r\n%b\r\n" % (len(event), event))
            if self.writable is not None:
                await self.writable
        end = workload.end_data(stream_id, n, time.monotonic() - started)
        _write_event(write, f"id: {stream_id}:{n + 1}\nevent: stream_end\ndata: {end}\n\n".encode())
        write(b"0\r\n\r\n")
        if self.ping is not None:
            self.ping.cancel()
            self.ping = None
        self.head = b""
        self.task = None


def _write_event(write: Callable[[bytes], object], event: bytes) -> None:
    write(b"%x\r\n%b\r\n" % (len(event), event))


def token_tails(n: int) -> list[bytes]:
    """Every token event after its ``id:`` value, encoded once."""
    return [
        f"\nevent: token\ndata: {workload.token_data(workload.token_text(i), i)}\n\n".encode()
        for i in range(n)
    ]


async def serve(host: str, port: int, n: int, pace: float, yield_every: int = 64) -> None:
    """Serve until cancelled; unpaced, yield to the loop every ``yield_every`` tokens (a power of
    two: 1 is the ``raw-yield`` floor, fair to a new stream; 64 the ``raw`` floor)."""
    tails = token_tails(n)
    mask = yield_every - 1
    assert yield_every > 0 and not yield_every & mask, "--yield-every must be a power of two"
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: StreamProtocol(tails, pace, mask), host, port, backlog=2048, reuse_address=True
    )
    async with server:
        await server.serve_forever()


def main() -> None:
    """``python -m benchmarks.servers.raw_asyncio --port P --tokens N --pace R [--yield-every K]
    [--loop uvloop]``."""
    args = workload.parse_args(__doc__ or "")
    workload.raise_file_limit()
    with contextlib.suppress(KeyboardInterrupt):
        workload.run(
            serve(args.host, args.port, args.tokens, args.pace, args.yield_every), args.loop
        )


if __name__ == "__main__":
    main()
