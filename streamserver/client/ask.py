"""``streamserver ask``: print an answer as it streams from a running server.

Ctrl-C cancels the stream on the server; a dropped connection is resumed without a trace in the
output. The API key, when the server wants one, comes from ``--api-key`` or, by default, from
``STREAMSERVER_API_KEY``.
"""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import asdict
from typing import Any

from .session import StreamFailed
from .sse import End, Error, StreamClient, Token
from .ws import WebSocketStream


async def ask(
    prompt: str,
    url: str,
    *,
    api_key: str | None,
    ws: bool,
    raw: bool,
    options: dict[str, Any],
) -> int:
    """Stream one answer to stdout; returns the exit status (130 when interrupted)."""
    options = {k: v for k, v in options.items() if v is not None}
    try:
        if ws:
            return await _over_websocket(prompt, url, api_key, raw, options)
        return await _over_sse(prompt, url, api_key, raw, options)
    except StreamFailed as exc:
        print(f"\nstreamserver ask: {exc}", file=sys.stderr)
        if exc.status == 401:
            print(
                "streamserver ask: give the key with --api-key or STREAMSERVER_API_KEY",
                file=sys.stderr,
            )
        return 1


async def _over_sse(
    prompt: str, url: str, api_key: str | None, raw: bool, options: dict[str, Any]
) -> int:
    async with StreamClient(url, api_key=api_key) as client:
        try:
            async for event in client.stream(prompt, **options):
                if raw:
                    print(
                        json.dumps({"event": type(event).__name__.lower(), **asdict(event)}),
                        flush=True,
                    )
                elif isinstance(event, Token):
                    print(event.content, end="", flush=True)
                elif isinstance(event, Error):
                    print(f"\n[error {event.code}: {event.message}]", file=sys.stderr)
                elif isinstance(event, End) and not raw:
                    print(flush=True)
            return 0
        except asyncio.CancelledError:
            state = client.last
            if state is not None and state.stream_id is not None:
                await client.cancel(state.stream_id)
            print("\n[cancelled]", file=sys.stderr)
            return 130


async def _over_websocket(
    prompt: str, url: str, api_key: str | None, raw: bool, options: dict[str, Any]
) -> int:
    async with WebSocketStream(url, api_key=api_key) as socket:
        try:
            async for message in socket.stream(prompt, **options):
                if raw:
                    print(json.dumps(message), flush=True)
                elif message.get("type") == "token":
                    print(message["content"], end="", flush=True)
                elif message.get("type") == "error":
                    print(
                        f"\n[error {message.get('code')}: {message.get('error')}]", file=sys.stderr
                    )
                elif message.get("type") == "done":
                    print(flush=True)
            return 0
        except asyncio.CancelledError:
            await socket.cancel()
            print("\n[cancelled]", file=sys.stderr)
            return 130
