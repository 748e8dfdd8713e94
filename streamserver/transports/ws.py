"""WebSocket: one socket, one stream at a time, read from the same event log as SSE.

The client sends ``{"prompt": ...}`` (plus the overrides its route allows) or ``{"type": "cancel"}``;
the server sends the formatter's WebSocket form. Bad input gets ``{"type": "error", ...}`` and the
socket stays open; a closed socket cancels its stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any

from aiohttp import WSMsgType, web

from ..errors import StreamRejected
from ..streams import Stream
from ..types import Event

_ERROR_CLOSE_AFTER = 20
"""Consecutive bad messages after which the socket is closed as abuse (1008, policy violation)."""


class WSEncoder:
    """WebSocket log items are the text frames themselves."""

    __slots__ = ()

    def segment(self, seq: int, data: str) -> str:
        """A token message as the formatter wrote it."""
        return data

    def event(self, seq: int, event: Event) -> str:
        """Any other message as the formatter wrote it."""
        return event.data


def error_message(code: str, message: str) -> dict[str, str]:
    """The WebSocket error shape: ``{"type": "error", "error": message, "code": code}``."""
    return {"type": "error", "error": message, "code": code}


async def serve_socket(
    request: web.Request,
    start: Callable[[dict[str, Any]], Stream],
    *,
    heartbeat_s: float,
    max_message_bytes: int,
    send_timeout_s: float,
) -> web.WebSocketResponse:
    """Run one WebSocket connection: each prompt message starts a stream via ``start``."""
    ws = web.WebSocketResponse(heartbeat=heartbeat_s or None, max_msg_size=max_message_bytes)
    await ws.prepare(request)
    current: Stream | None = None
    pump: asyncio.Task[None] | None = None
    strikes = 0
    try:
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                fields, problem = _decode(message.data)
            elif message.type == WSMsgType.BINARY:
                fields, problem = (
                    None,
                    error_message("binary_not_supported", "send JSON text messages"),
                )
            else:
                continue
            if fields is not None and fields.get("type") == "cancel":
                if current is not None and not current.finished:
                    current.cancel("cancelled")
                continue
            if problem is None and fields is not None:
                if current is not None and not current.finished:
                    problem = error_message(
                        "stream_in_progress",
                        "a stream is already running on this socket; cancel it first",
                    )
                else:
                    try:
                        current = start(fields)
                    except StreamRejected as exc:
                        problem = error_message(exc.code, exc.message)
                        if exc.code == "missing_prompt":
                            problem["error"] = "No prompt provided"
                    else:
                        strikes = 0
                        pump = asyncio.get_running_loop().create_task(
                            _pump(ws, current, send_timeout_s)
                        )
                        continue
            strikes += 1
            await ws.send_json(problem)
            if strikes >= _ERROR_CLOSE_AFTER:
                await ws.close(code=1008, message=b"too many invalid messages")
                break
    finally:
        if pump is not None:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
    return ws


def _decode(data: str) -> tuple[dict[str, Any] | None, dict[str, str] | None]:
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


async def _pump(ws: web.WebSocketResponse, stream: Stream, send_timeout_s: float) -> None:
    """Send the stream's messages in order until it ends; detaching lets the stream decide."""
    log = stream.log
    reader = stream.attach(0)
    pos = 0
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
            log.advance(reader, pos)
    except (ConnectionError, TimeoutError, RuntimeError):
        pass
    finally:
        stream.detach(reader)
