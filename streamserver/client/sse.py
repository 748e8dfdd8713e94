"""``StreamClient``: streams over SSE, resumed with ``Last-Event-ID`` after a dropped connection
(exponential backoff with jitter, bounded attempts), so the caller sees every token exactly once
and the server generates the answer once; ``stream_sync`` for scripts without asyncio."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import aiohttp

from ..blocking import iterate_blocking
from ..sse_decoder import SSEDecoder
from .session import SessionOwner, StreamFailed, reconnect_backoff


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


@dataclass(frozen=True, slots=True)
class ObjectUpdate:
    """``format="object"``: the JSON value the text holds so far, sent when it changed."""

    object: Any


@dataclass(frozen=True, slots=True)
class ObjectEnd:
    """``format="object"``: the whole value and whether it satisfies the request's schema
    (``errors``: ``{"path", "message"}`` each, the best match first); an ``End`` follows."""

    object: Any
    valid: bool
    errors: list[dict[str, str]]


StreamEvent: TypeAlias = Start | Token | ObjectUpdate | ObjectEnd | End | Error


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


class StreamClient(SessionOwner):
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
        format: str | None = None,
        **parameters: Any,
    ) -> AsyncGenerator[StreamEvent, None]:
        """Start a stream and yield its events, resuming silently if the connection drops.

        ``parameters`` are the request parameters the route takes (``response_format``,
        ``seed``, ``temperature``, ...), sent as they are; ``format="object"`` with a
        ``response_format`` adds ``ObjectUpdate`` and ``ObjectEnd`` events."""
        body: dict[str, Any] = (
            {"messages": messages} if messages is not None else {"prompt": prompt}
        )
        chosen = {"model": model, "buffer": buffer, "max_tokens": max_tokens, "format": format}
        body.update({k: v for k, v in chosen.items() if v})
        body.update({k: v for k, v in parameters.items() if v is not None})
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
            await reconnect_backoff(attempt, self.backoff_s, self.max_backoff_s)

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
    if name == "object":
        return ObjectUpdate(payload["object"])
    if name == "object_end":
        return ObjectEnd(payload["object"], payload["valid"], payload["errors"])
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
