"""A client that sends a request and resets the connection at once, before any answer can arrive
(as when a mobile network drops just after a request went out)."""

from __future__ import annotations

import asyncio
import socket
import struct
from urllib.parse import urlsplit


async def send_then_reset(base_url: str, request: bytes) -> None:
    """Send ``request`` (raw HTTP) to the server at ``base_url``, then close with an RST."""
    url = urlsplit(base_url)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, (url.hostname, url.port))
    await loop.sock_sendall(sock, request)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()  # a zero linger time: the kernel answers with an RST instead of a FIN
