"""A client that stays connected but stops reading (a stuck tab, a frozen proxy) is dropped once a
write to it has made no progress for ``server.send_timeout_s``, and its stream is cancelled.

The client is a raw socket with a tiny receive buffer that never reads: its TCP window closes, the
server's socket buffer fills, and the server's write blocks; the timeout applies to that write."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
from urllib.parse import urlsplit

from aiohttp import web
from conftest import base_config, wait_until

import streamserver
from streamserver.web.keys import CONNECTIONS, SERVICE

SEND_TIMEOUT_S = 0.5
ENDLESS = {"ttft_ms": 0, "tokens_per_second": 0, "answer_tokens": 1_000_000}


async def connect_with_a_tiny_window(base_url: str) -> socket.socket:
    """A non-blocking socket connected to the server with a 1 KiB receive buffer (set before the
    connect, so the window it advertises is tiny)."""
    url = urlsplit(base_url)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (url.hostname, url.port))
    return sock


async def open_stalled_reader(base_url: str, path: str) -> socket.socket:
    """Send ``GET path`` from a socket with a tiny receive buffer; the caller never reads it."""
    sock = await connect_with_a_tiny_window(base_url)
    loop = asyncio.get_running_loop()
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


def endless_app(**server: float) -> web.Application:
    """An app whose streams never end on their own (the simulated model, no token cap), that
    drops a reader making no progress for ``SEND_TIMEOUT_S`` and keeps no stream for resume."""
    config = base_config(
        server={"send_timeout_s": SEND_TIMEOUT_S, **server},
        limits={"max_tokens": 1_000_000},
        resume={"grace_s": 0},
        providers={"simulated": ENDLESS},
    )
    return streamserver.create_app(config)


async def test_a_reader_that_stops_reading_is_dropped_after_send_timeout_and_its_stream_cancelled(
    serve,
):
    app = endless_app()
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


async def open_stalled_websocket(base_url: str, path: str, prompt: dict) -> socket.socket:
    """Open a WebSocket from a socket with a tiny receive buffer, send ``prompt`` as one text frame,
    then read nothing more: not the stream's messages, not the server's pings."""
    sock = await connect_with_a_tiny_window(base_url)
    loop = asyncio.get_running_loop()
    key = base64.b64encode(os.urandom(16)).decode()
    await loop.sock_sendall(
        sock,
        f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode(),
    )
    handshake = b""
    while b"\r\n\r\n" not in handshake:  # the 101 only: the frames after it stay unread
        handshake += await loop.sock_recv(sock, 1)
    assert handshake.startswith(b"HTTP/1.1 101")
    payload = json.dumps(prompt).encode()
    mask = os.urandom(4)
    masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    assert len(payload) < 126
    await loop.sock_sendall(sock, bytes((0x81, 0x80 | len(payload))) + mask + masked)
    return sock


def held_by_the_server(server_port: int, client: socket.socket) -> bool:
    """Whether the server's kernel still has its end of this connection (open, or closed by the
    process but still holding unsent bytes), from ``/proc/net/tcp``."""
    server_end = f"0100007F:{server_port:04X}"  # 127.0.0.1 as the kernel prints it
    client_end = f"0100007F:{client.getsockname()[1]:04X}"
    with open("/proc/net/tcp", encoding="ascii") as table:
        rows = [line.split() for line in table.readlines()[1:]]
    return any(row[1] == server_end and row[2] == client_end for row in rows)


async def test_a_websocket_reader_that_stops_reading_is_aborted_after_send_timeout_whatever_the_heartbeat(
    serve,
):
    # The heartbeat's missing pong comes first and closes the socket the polite way, which waits
    # for the full buffer to drain; the send timeout must still abort it.
    app = endless_app(ws_heartbeat_s=0.2)
    client = await serve(app=app)
    streams = app[SERVICE].streams
    loop = asyncio.get_running_loop()

    prompt = {"prompt": "go", "max_tokens": 1_000_000}
    server_port = urlsplit(client.base_url).port
    sock = await open_stalled_websocket(client.base_url, "/ws/stream", prompt)
    try:
        sent = loop.time()
        await wait_until(lambda: streams.active == 1)
        await wait_until(
            lambda: not held_by_the_server(server_port, sock), timeout=SEND_TIMEOUT_S + 3
        )
        aborted_after = loop.time() - sent
    finally:
        sock.close()
    health = await client.http.get("/health")

    assert aborted_after < SEND_TIMEOUT_S + 1.5
    assert streams.active == 0
    assert not app[CONNECTIONS].sockets
    assert health.json() == {"status": "healthy", "active_streams": 0}
