"""The clients of a running server: ``StreamClient`` over SSE and ``WebSocketStream``.

A dropped connection is resumed with ``Last-Event-ID`` (exponential backoff with jitter, bounded
attempts), so the caller sees every token exactly once and the server generates the answer once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import aiohttp

from ..blocking import iterate_blocking
from ..sse_decoder import SSEDecoder


@dataclass(frozen=True, slots=True)
class Start:
    """The stream was accepted."""

    stream_id: str
    model: str


@dataclass(frozen=True, slots=True)
class Token:
    """One segment of text."""

    content: str
    index: int


@dataclass(frozen=True, slots=True)
class End:
    """The stream ended (``finish_reason`` is ``cancelled`` when it was stopped)."""

    stream_id: str
    finish_reason: str
    tokens_generated: int
    duration_ms: float
    tokens_per_second: float


@dataclass(frozen=True, slots=True)
class Error:
    """The stream failed on the server; an ``End`` follows."""

    code: str
    message: str


StreamEvent: TypeAlias = Start | Token | End | Error


class StreamFailed(Exception):
    """The stream could not be started or resumed (a 4xx/5xx answer, or no reconnect succeeded)."""

    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


@dataclass
class StreamState:
    """What a ``stream()`` call has seen so far."""

    stream_id: str | None = None
    last_event_id: str | None = None
    text_parts: list[str] = field(default_factory=list)
    reconnects: int = 0

    @property
    def text(self) -> str:
        """The text so far."""
        return "".join(self.text_parts)


class _SessionOwner:
    """A client that opens an aiohttp session when its ``async with`` begins and closes it when
    the block ends (or by ``close()``)."""

    _session: aiohttp.ClientSession | None = None

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        """The open HTTP session (use the client as ``async with``)."""
        if self._session is None:
            name = type(self).__name__
            raise RuntimeError(f"use {name} as 'async with {name}(...) as client'")
        return self._session


class StreamClient(_SessionOwner):
    """An async client for streamserver's production SSE route (``/v1/stream``), with resume."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        path: str = "/v1/stream",
        max_reconnects: int = 8,
        backoff_s: float = 0.2,
        max_backoff_s: float = 5.0,
        connect_timeout_s: float = 10.0,
        read_timeout_s: float = 60.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.path = path
        self.max_reconnects = max_reconnects
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._timeout = aiohttp.ClientTimeout(
            sock_connect=connect_timeout_s, sock_read=read_timeout_s
        )
        self._session: aiohttp.ClientSession | None = None
        self.last: StreamState | None = None
        """The state of the most recent ``stream()`` call (its text, reconnect count)."""

    async def __aenter__(self) -> StreamClient:
        self._session = aiohttp.ClientSession(timeout=self._timeout, headers=self._headers)
        return self

    async def stream(
        self,
        prompt: str | None = None,
        *,
        messages: list[dict[str, str]] | None = None,
        model: str | None = None,
        buffer: str | None = None,
        max_tokens: int | None = None,
    ) -> AsyncGenerator[StreamEvent, None]:
        """Start a stream and yield its events, resuming silently if the connection drops."""
        body: dict[str, Any] = (
            {"messages": messages} if messages is not None else {"prompt": prompt}
        )
        body.update(
            {
                k: v
                for k, v in (("model", model), ("buffer", buffer), ("max_tokens", max_tokens))
                if v
            }
        )
        state = StreamState()
        self.last = state
        seen = -1
        attempt = 0
        while True:
            try:
                async with self._open(body, state) as response:
                    if response.status == 204:
                        return
                    await _raise_for_error(response)
                    attempt = 0
                    decoder = SSEDecoder()
                    async for chunk in response.content.iter_any():
                        for raw in decoder.feed(chunk):
                            seq = _seq(raw.id)
                            if seq is not None and seq <= seen:
                                continue  # replayed after a reconnect: already delivered
                            if seq is not None:
                                seen = seq
                                state.last_event_id = raw.id
                            event = _event(raw.event, raw.data)
                            if isinstance(event, Start):
                                state.stream_id = event.stream_id
                            elif isinstance(event, Token):
                                state.text_parts.append(event.content)
                            if event is not None:
                                yield event
                            if isinstance(event, End):
                                return
            except (TimeoutError, aiohttp.ClientConnectionError, aiohttp.ClientPayloadError):
                pass
            if state.stream_id is None or attempt >= self.max_reconnects:
                raise StreamFailed(
                    "disconnected", "the connection dropped and could not be resumed"
                )
            attempt += 1
            state.reconnects += 1
            await _backoff(attempt, self.backoff_s, self.max_backoff_s)

    def _open(self, body: dict[str, Any], state: StreamState) -> Any:
        if state.stream_id is None:
            return self.session.post(self.base_url + self.path, json=body)
        headers = {"Last-Event-ID": state.last_event_id} if state.last_event_id else {}
        return self.session.get(f"{self.base_url}/v1/streams/{state.stream_id}", headers=headers)

    async def cancel(self, stream_id: str) -> bool:
        """Cancel a stream on the server (``DELETE /v1/streams/{id}``); False if already finished."""
        async with self.session.delete(f"{self.base_url}/v1/streams/{stream_id}") as response:
            return response.status == 200

    async def text(self, prompt: str, **options: Any) -> str:
        """Stream a whole answer and return its text."""
        parts = [
            event.content
            async for event in self.stream(prompt, **options)
            if isinstance(event, Token)
        ]
        return "".join(parts)


def stream_sync(base_url: str, prompt: str, **options: Any) -> Iterator[StreamEvent]:
    """The same stream for scripts without asyncio: ``for event in stream_sync(url, "hi"): ...``."""
    client_options = {
        k: options.pop(k) for k in ("api_key", "path", "max_reconnects") if k in options
    }
    loop = asyncio.new_event_loop()
    client = StreamClient(base_url, **client_options)
    loop.run_until_complete(client.__aenter__())
    yield from iterate_blocking(loop, client.stream(prompt, **options), client.close)


RESUME_REFUSED = frozenset(
    {"stream_not_found", "invalid_resume", "events_expired", "stream_finished"}
)
"""Error codes a server answers a WebSocket resume with when it cannot serve it."""


class WebSocketStream(_SessionOwner):
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
            await _backoff(attempt, self.backoff_s, self.max_backoff_s)
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


async def _backoff(attempt: int, base_s: float, cap_s: float) -> None:
    """Wait before reconnect ``attempt`` (1, 2, ...): exponential, capped, with jitter."""
    delay = min(cap_s, base_s * 2 ** (attempt - 1))
    await asyncio.sleep(delay * (0.5 + random.random() / 2))


def _seq(event_id: str | None) -> int | None:
    if not event_id:
        return None
    _, _, seq = event_id.rpartition(":")
    return int(seq) if seq.isdigit() else None


def _event(name: str, data: str) -> StreamEvent | None:
    payload = json.loads(data)
    if name == "token":
        return Token(payload["content"], payload["index"])
    if name == "stream_start":
        return Start(payload["stream_id"], payload["model"])
    if name == "stream_end":
        return End(
            payload["stream_id"],
            payload["finish_reason"],
            payload["tokens_generated"],
            payload["duration_ms"],
            payload["tokens_per_second"],
        )
    if name == "error":
        return Error(payload["code"], payload["error"])
    return None


async def _raise_for_error(response: aiohttp.ClientResponse) -> None:
    if response.status < 400:
        return
    try:
        error = (await response.json())["error"]
        raise StreamFailed(error["code"], error["message"], response.status)
    except (ValueError, KeyError, TypeError, aiohttp.ContentTypeError):
        raise StreamFailed("http_error", f"HTTP {response.status}", response.status) from None
