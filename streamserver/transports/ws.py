"""WebSocket: one socket, one stream at a time, read from the same event log as SSE.

The client sends a JSON object per message: a prompt (the route decides its fields) or
``{"type": "cancel"}``. The server sends the formatter's WebSocket form. Bad input (bad JSON, a
binary frame, an unknown field, a message over ``max_message_bytes``) gets ``{"type": "error", ...}``
and the socket stays usable; only abuse closes it: repeated violations or a flood (close code 1008),
or a message so large it cannot be read (1009). A closed socket cancels its stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import WSCloseCode, WSMsgType, web

from ..errors import StreamRejected
from ..streams import Stream
from ..types import Event

STRIKES_TO_CLOSE = 20
"""Consecutive refused messages after which the socket is closed as abuse."""
_HARD_LIMIT_FACTOR = 4
"""Messages up to this multiple of ``max_message_bytes`` are read and refused; larger ones close."""


class WSEncoder:
    """WebSocket log items are the text frames themselves."""

    __slots__ = ()

    def segment(self, seq: int, data: str) -> str:
        """A token message as the formatter wrote it."""
        return data

    def event(self, seq: int, event: Event) -> str:
        """Any other message as the formatter wrote it."""
        return event.data


After = Callable[[list[str], bool], Awaitable[Sequence[dict[str, Any]]]]
"""Called once a stream has ended with the messages delivered and whether the socket is still open;
returns messages to send after them (e.g. the chat route's ``done`` with ``message_count``)."""


@dataclass(frozen=True, slots=True)
class Started:
    """A stream started for a prompt message, and what to do when it ends."""

    stream: Stream
    after: After | None = None


StartStream = Callable[[dict[str, Any]], Awaitable[Started]]


def error_message(code: str, message: str) -> dict[str, str]:
    """The WebSocket error shape: ``{"type": "error", "error": message, "code": code}``."""
    return {"type": "error", "error": message, "code": code}


class _Flood:
    """Token bucket on incoming messages: ``rate`` per second, bursts of twice that."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.tokens = 2 * rate
        self.at = time.monotonic()

    def allow(self) -> bool:
        now = time.monotonic()
        self.tokens = min(2 * self.rate, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


async def serve_socket(
    request: web.Request,
    start: StartStream,
    *,
    heartbeat_s: float,
    max_message_bytes: int,
    send_timeout_s: float,
    busy: Literal["reject", "replace"] = "reject",
    messages_per_s: float = 20.0,
) -> web.WebSocketResponse:
    """Run one WebSocket connection: each prompt message starts a stream via ``start``."""
    ws = web.WebSocketResponse(
        heartbeat=heartbeat_s or None, max_msg_size=max_message_bytes * _HARD_LIMIT_FACTOR
    )
    await ws.prepare(request)
    current: Started | None = None
    pump: asyncio.Task[None] | None = None
    strikes = 0
    flood = _Flood(messages_per_s)
    try:
        async for message in ws:
            if message.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                continue
            fields, problem = _decode(message, max_message_bytes)
            if not flood.allow():
                problem = error_message(
                    "too_many_messages", f"send at most {messages_per_s:g} messages a second"
                )
            elif fields is not None and fields.get("type") == "cancel":
                if current is not None and not current.stream.finished:
                    current.stream.cancel("cancelled")
                continue
            elif fields is not None:
                if current is not None and not current.stream.finished:
                    if busy == "reject":
                        problem = error_message(
                            "stream_in_progress",
                            "a stream is already running on this socket; cancel it first",
                        )
                    else:
                        current.stream.cancel("cancelled")
                        assert pump is not None
                        await pump
                if problem is None:
                    try:
                        current = await start(fields)
                    except StreamRejected as exc:
                        problem = error_message(exc.code, exc.message)
                        if exc.code == "missing_prompt":
                            problem["error"] = "No prompt provided"
                    else:
                        strikes = 0
                        pump = asyncio.get_running_loop().create_task(
                            _pump(ws, current, send_timeout_s, request.transport)
                        )
                        continue
            strikes += 1
            await ws.send_json(problem)
            if strikes >= STRIKES_TO_CLOSE:
                await ws.close(
                    code=WSCloseCode.POLICY_VIOLATION, message=b"too many invalid messages"
                )
                break
    finally:
        # The socket is gone: stop the generation (no reader is left), and let the pump finish so
        # whatever the route does after a stream (storing the reply) still happens.
        if current is not None and not current.stream.finished:
            current.stream.cancel("client_gone")
        if pump is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(pump), timeout=5)
    return ws


def _decode(message: Any, max_bytes: int) -> tuple[dict[str, Any] | None, dict[str, str] | None]:
    if message.type == WSMsgType.BINARY:
        return None, error_message("binary_not_supported", "send JSON text messages")
    data: str = message.data
    if len(data) > max_bytes and len(data.encode()) > max_bytes:
        return None, error_message(
            "message_too_large", f"messages may be at most {max_bytes} bytes"
        )
    try:
        fields = json.loads(data)
    except ValueError as exc:
        return None, error_message("invalid_json", f"the message is not valid JSON: {exc}")
    if not isinstance(fields, dict):
        return None, error_message("invalid_json", "the message must be a JSON object")
    kind = fields.pop("type", "prompt")
    if kind == "cancel":
        return {"type": "cancel"}, None
    if kind != "prompt":
        return None, error_message(
            "unknown_type", f"unknown message type {kind!r}; send a prompt or a cancel"
        )
    return fields, None


async def _pump(
    ws: web.WebSocketResponse,
    started: Started,
    send_timeout_s: float,
    transport: asyncio.Transport | None,
) -> None:
    """Send the stream's messages in order until it ends, then whatever ``after`` returns.

    A peer that accepts nothing for ``send_timeout_s`` is dropped (the connection is aborted: a
    close frame could not reach it either), which ends the socket and cancels its stream."""
    stream = started.stream
    log = stream.log
    reader = stream.attach(0)
    delivered: list[str] = []
    pos = 0
    open_ = True
    try:
        while True:
            if pos >= log.end:
                if log.closed:
                    break
                await log.wait(pos)
                continue
            items = log.read(pos)
            pos += len(items)
            async with asyncio.timeout(send_timeout_s):
                for item in items:
                    await ws.send_str(item)  # type: ignore[arg-type]
                    if started.after is not None:
                        delivered.append(item)  # type: ignore[arg-type]
            log.advance(reader, pos)
    except TimeoutError:
        open_ = False
        if transport is not None:
            transport.abort()
    except (ConnectionError, RuntimeError):
        open_ = False
    finally:
        stream.detach(reader)
    if started.after is not None:
        await stream.log.wait(log.end)  # the stream's summary is set once its log closes
        open_ = open_ and not ws.closed
        extra = await started.after(delivered, open_)
        if open_:
            with contextlib.suppress(ConnectionError, RuntimeError):
                for message in extra:
                    await ws.send_json(message)
