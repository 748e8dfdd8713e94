"""Python clients of a running streamserver: over HTTP (SSE, with resume) and over WebSocket,
and the ``streamserver ask`` command built on them.

::

    async with StreamClient("http://127.0.0.1:8000") as client:
        async for event in client.stream("Tell me a story"):
            if isinstance(event, Token):
                print(event.content, end="", flush=True)
"""

from .session import StreamFailed
from .sse import End, Error, ObjectEnd, ObjectUpdate, Start, StreamClient, Token, stream_sync
from .ws import WebSocketStream

__all__ = [
    "End",
    "Error",
    "ObjectEnd",
    "ObjectUpdate",
    "Start",
    "StreamClient",
    "StreamFailed",
    "Token",
    "WebSocketStream",
    "stream_sync",
]
