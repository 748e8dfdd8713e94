"""``send_stream``: a client that is gone before its response's headers go out leaves its stream
as any reader does (parked for ``resume.grace_s``, or cancelled), and nothing is logged as an
error: a connection reset is an ordinary event for a streaming server."""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from urllib.parse import quote, urlsplit

from conftest import SCRIPTED, base_config, script, wait_until

import streamserver
from streamserver.app import SERVICE


async def send_and_reset(base_url: str, path: str) -> None:
    """Send ``GET path`` and reset the connection at once, before any answer can arrive."""
    url = urlsplit(base_url)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, (url.hostname, url.port))
    await loop.sock_sendall(sock, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()  # with a zero linger: an RST, as when a mobile network drops


async def test_a_client_gone_before_the_headers_went_out_has_its_stream_cancelled(serve, caplog):
    app = streamserver.create_app(base_config(resume={"grace_s": 0}, **SCRIPTED))
    client = await serve(app=app)
    streams = app[SERVICE].streams
    prompt = quote(script(["a "], then="hang"))

    await send_and_reset(client.base_url, f"/v1/stream?model=scripted&prompt={prompt}")

    await wait_until(lambda: streams.total == 1)
    # Cancelled, not left generating (a real upstream, billed) for a reader that never comes.
    await wait_until(lambda: streams.active == 0)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
