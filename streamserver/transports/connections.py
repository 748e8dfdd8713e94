"""The open streaming connections of one app: the write batcher and keep-alive ticker they share,
and the WebSockets to close (1001, going away) when the server stops. One per app, opened and
closed with it; the runtime knows nothing of it."""

from __future__ import annotations

import asyncio
import logging

from ..settings import ServerSettings
from .batching import Writers
from .ws import Socket

log = logging.getLogger("streamserver")


class OpenConnections:
    """What the transports keep for the app's lifetime."""

    def __init__(self, settings: ServerSettings) -> None:
        self.writers = Writers(settings)
        """The once-per-loop-iteration flush and the ping ticker every connection shares."""
        self.sockets: set[Socket] = set()
        """Open WebSockets: closed with 1001 (going away) at shutdown, once their streams end."""

    async def close_sockets(self) -> None:
        """Close every open WebSocket with 1001 once its pump has sent what its stream ended with."""
        if self.sockets:
            log.info("closing %d WebSockets (1001 going away)", len(self.sockets))
            await asyncio.gather(*(socket.close_going_away() for socket in list(self.sockets)))

    def close(self) -> None:
        """Stop the ping ticker (the app is stopping)."""
        self.writers.close()
