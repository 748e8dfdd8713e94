"""TCP-level care of a client's connection, for SSE and WebSocket alike: the kernel drops a peer
that vanished or takes nothing, and a connection we drop is reset, not left draining."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import weakref

from aiohttp import web

from ..settings import ServerSettings


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


_watched: weakref.WeakSet[asyncio.BaseTransport] = weakref.WeakSet()
"""The connections whose socket ``watch_peer`` set (until each is gone)."""


def watch_peer(request: web.Request, settings: ServerSettings) -> None:
    """Make the kernel drop a connection whose peer vanished without FIN or RST (Wi-Fi off), or
    takes nothing (a zero window), even for the bytes it holds after the server let go.

    ``TCP_USER_TIMEOUT``: data unacknowledged, or a zero window, this long resets the connection:
    the shorter of ``dead_peer_timeout_s`` (our pings go unanswered) and ``send_timeout_s`` (the
    send timeout only sees the bytes still in our buffers; a socket closed with the kernel's send
    queue full would otherwise linger as long as the peer keeps its window shut). Keepalive probes
    cover a connection with nothing to send. Linux only; elsewhere a no-op. Once per
    connection: the next streams of a kept-alive one find its socket set (five system calls
    fewer per request).
    """
    transport = request.transport
    if transport is None or transport in _watched:
        return
    sock = transport.get_extra_info("socket")
    if sock is None:
        return
    _watched.add(transport)
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
