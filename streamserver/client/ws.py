"""``WebSocketStream``: one WebSocket to a stream route; a connection that drops mid-stream is
replaced and the stream resumed with a ``resume`` message."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from .session import SessionOwner, StreamFailed, reconnect_backoff

RESUME_REFUSED = frozenset(
    {"stream_not_found", "invalid_resume", "events_expired", "stream_finished"}
)
"""Error codes a server answers a WebSocket resume with when it cannot serve it."""


class WebSocketStream(SessionOwner):
    """A ``/ws/stream`` connection: send prompts, read messages, ``cancel()`` the current one.

    It takes the server's base URL, as ``StreamClient`` does (``http://127.0.0.1:8000``, or
    ``https://…``, ``ws://…``, ``wss://…``; a mounted app's prefix included), and connects to
    ``path`` under it. A connection that drops mid-stream is replaced and the stream resumed
    (``{"type": "resume", "stream_id", "received"}``, exponential backoff with jitter, bounded
    attempts): the caller sees every message once, and the server generates the answer once."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        path: str = "/ws/stream",
        max_reconnects: int = 8,
        backoff_s: float = 0.2,
        max_backoff_s: float = 5.0,
    ) -> None:
        self.url = _websocket_url(base_url, path)
        """The WebSocket URL connected to: ``path`` under the base URL, in ``ws``/``wss``."""
        self.max_reconnects = max_reconnects
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.reconnects = 0
        """Connections replaced (and streams resumed) since this object was opened."""
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._session: aiohttp.ClientSession | None = None
        self._socket: aiohttp.ClientWebSocketResponse | None = None

    async def __aenter__(self) -> WebSocketStream:
        self._session = aiohttp.ClientSession(headers=self._headers)
        try:
            self._socket = await self._session.ws_connect(self.url)
        except aiohttp.WSServerHandshakeError as exc:
            await self.close()  # ``__aexit__`` does not run when ``__aenter__`` fails
            raise _handshake_refused(self.url, exc.status) from None
        except BaseException:
            await self.close()
            raise
        return self

    async def close(self) -> None:
        """Close the socket and the HTTP session it runs on."""
        if self._socket is not None:
            await self._socket.close()
            self._socket = None
        await super().close()

    async def stream(self, prompt: str, **fields: Any) -> AsyncIterator[dict[str, Any]]:
        """Send a prompt and yield the server's messages up to and including ``done``.

        A refused prompt raises ``StreamFailed``; a stream that fails on the server yields its
        ``error`` message, then ``done``."""
        assert self._socket is not None, "use WebSocketStream as 'async with'"
        hello: dict[str, Any] = {"prompt": prompt, **fields}
        stream_id: str | None = None
        received = 0  # messages of this stream so far: where a resume picks up
        attempt = 0
        while True:
            try:
                await self._socket.send_json(hello)
                resuming = hello.get("type") == "resume"
                while True:
                    message = await self._receive()
                    attempt = 0
                    kind = message.get("type")
                    # Before the stream names itself an error is a refusal; so is a resume's.
                    if kind == "error" and (
                        stream_id is None or (resuming and message.get("code") in RESUME_REFUSED)
                    ):
                        raise StreamFailed(message.get("code", "error"), message.get("error", ""))
                    resuming = False
                    received += 1
                    if stream_id is None and isinstance(message.get("stream_id"), str):
                        stream_id = message["stream_id"]  # "start" (or "stream_start")
                    yield message
                    if kind == "done" or kind == "stream_end":
                        return
            except (ConnectionError, aiohttp.ClientError):
                pass
            if stream_id is None or attempt >= self.max_reconnects:
                raise StreamFailed(
                    "disconnected", "the connection dropped and could not be resumed"
                )
            attempt += 1
            self.reconnects += 1
            await reconnect_backoff(attempt, self.backoff_s, self.max_backoff_s)
            hello = {"type": "resume", "stream_id": stream_id, "received": received}
            await self._reconnect()

    async def _receive(self) -> dict[str, Any]:
        assert self._socket is not None
        message = await self._socket.receive()
        if message.type == aiohttp.WSMsgType.TEXT:
            data: dict[str, Any] = json.loads(message.data)
            return data
        raise ConnectionError(f"the WebSocket closed ({message.type.name})")

    async def _reconnect(self) -> None:
        assert self._session is not None
        if self._socket is not None and not self._socket.closed:
            await self._socket.close()
        # If this fails, the next send fails too, and counts as another attempt.
        with contextlib.suppress(aiohttp.ClientError):
            self._socket = await self._session.ws_connect(self.url)

    async def cancel(self) -> None:
        """Stop the current stream; its ``done`` message (with ``cancelled``) still arrives."""
        assert self._socket is not None
        await self._socket.send_json({"type": "cancel"})


def _websocket_url(base_url: str, path: str) -> str:
    """``path`` under a server's base URL, with the scheme a WebSocket uses (``http`` → ``ws``)."""
    scheme, sep, rest = base_url.partition("://")
    ws_scheme = _WEBSOCKET_SCHEMES.get(scheme.lower()) if sep else None
    if ws_scheme is None:
        raise ValueError(
            f"expected the server's base URL, like http://127.0.0.1:8000, got {base_url!r}"
        )
    return f"{ws_scheme}://{rest.rstrip('/')}{path}"


_WEBSOCKET_SCHEMES = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}


def _handshake_refused(url: str, status: int) -> StreamFailed:
    if status == 401:
        return StreamFailed("unauthorized", f"{url} wants an API key (api_key=...)", status)
    if status == 403:
        return StreamFailed("forbidden", f"{url} refused the handshake (HTTP 403)", status)
    # Anything else is most often the wrong URL: a page (200) or no route (404) there.
    return StreamFailed(
        "handshake_failed",
        f"{url} answered HTTP {status}, not a WebSocket: WebSocketStream takes the server's base "
        "URL, like StreamClient (http://127.0.0.1:8000), and connects to path (/ws/stream) under it",
        status,
    )
