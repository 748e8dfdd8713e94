"""A client that stays connected but stops reading (a stuck tab, a frozen proxy) is dropped once a
write to it has made no progress for ``server.send_timeout_s``, and its stream is cancelled.

The client is a raw socket with a tiny receive buffer that never reads: its TCP window closes, the
server's socket buffer fills, and the server's write blocks; the timeout applies to that write."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from urllib.parse import urlsplit

from conftest import base_config, wait_until

import streamserver
from streamserver.web.keys import SERVICE

SEND_TIMEOUT_S = 0.5
ENDLESS = {"ttft_ms": 0, "tokens_per_second": 0, "answer_tokens": 1_000_000}


async def open_stalled_reader(base_url: str, path: str) -> socket.socket:
    """Send ``GET path`` from a socket with a tiny receive buffer; the caller never reads it."""
    url = urlsplit(base_url)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)  # before connect: a tiny window
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, (url.hostname, url.port))
    await loop.sock_sendall(sock, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    return sock


async def read_until_closed(sock: socket.socket) -> bytes:
    """Everything left in the socket, up to the server's reset or end of stream."""
    # What the server's kernel still holds for us comes faster through a wider window.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    loop = asyncio.get_running_loop()
    received = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := await loop.sock_recv(sock, 65536):
            received += chunk
    return received


async def test_a_reader_that_stops_reading_is_dropped_after_send_timeout_and_its_stream_cancelled(
    serve,
):
    config = base_config(
        server={"send_timeout_s": SEND_TIMEOUT_S},
        limits={"max_tokens": 1_000_000},
        resume={"grace_s": 0},
        providers={"simulated": ENDLESS},
    )
    app = streamserver.create_app(config)
    client = await serve(app=app)
    streams = app[SERVICE].streams
    loop = asyncio.get_running_loop()

    sock = await open_stalled_reader(client.base_url, "/v1/stream?prompt=go&max_tokens=1000000")
    try:
        sent = loop.time()
        await wait_until(lambda: streams.active == 1)
        (stream,) = streams.live()
        await wait_until(lambda: streams.active == 0, timeout=SEND_TIMEOUT_S + 3)
        dropped_after = loop.time() - sent
        metrics = (await client.http.get("/v1/stream/metrics")).json()
        async with asyncio.timeout(2):
            received = await read_until_closed(sock)  # ends: the server closed the connection
    finally:
        sock.close()
    health = await client.http.get("/health")
    after = await client.sse("/v1/stream", params={"prompt": "still serving", "model": "echo"})

    assert received.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"stream_end" not in received  # cut off mid-stream, not ended
    assert SEND_TIMEOUT_S <= dropped_after < SEND_TIMEOUT_S + 1.5
    assert stream.summary is not None
    assert stream.summary.outcome == "client_gone"
    assert 0 < stream.summary.tokens < 1_000_000  # cancelled mid-stream, not run to the end
    assert metrics["active_streams"] == 0
    assert metrics["outcomes"] == {"client_gone": 1}
    assert health.json() == {"status": "healthy", "active_streams": 0}
    text = "".join(e["content"] for e in after.json() if "content" in e)
    assert text == "still serving"
