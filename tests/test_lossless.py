"""Every stream is lossless: whatever the buffer, formatter or transport, the client rebuilds
exactly the text the provider produced, read through real connections by independent parsers
(httpx-sse for SSE, the ``websockets`` library for WebSocket)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import websockets
from conftest import SCRIPTED, Client, base_config, script, wait_until
from hypothesis import HealthCheck, given, settings

import streamserver
from streamserver.testing.strategies import text_deltas
from streamserver.web.keys import SERVICE

BUFFERS = ["raw", "delimiter", "word", "sentence"]
FORMATTERS = ["simple", "events", "progress", "production", "openai", "responses", "ai-sdk",
              "anthropic", "text"]  # fmt: skip

ENDS = ("done", "complete", "stream_end", "message_stop", "response.completed")
"""The ``type`` of the last WebSocket message of a stream, in every built-in shape."""


def text_of_sse_event(fmt: str, name: str, data: str) -> str:
    """The text one SSE event carries, in a given wire shape ("" for non-text events)."""
    if fmt == "text":
        return data if name == "message" else ""
    if data == "[DONE]":
        return ""
    return text_of_object(json.loads(data), name)


def text_of_object(obj: dict[str, Any], name: str = "") -> str:
    """The text one JSON event or WebSocket message carries, in any built-in shape."""
    if "token" in obj:
        return obj["token"]
    if obj.get("type") in ("text-delta", "response.output_text.delta"):
        return obj["delta"]
    if obj.get("type") == "content_block_delta" and obj["delta"]["type"] == "text_delta":
        return obj["delta"]["text"]
    if obj.get("object") == "chat.completion.chunk":
        return "".join(c["delta"].get("content") or "" for c in obj["choices"])
    if name == "token" or obj.get("type") == "token":
        return obj["content"]
    return ""


async def sse_text(client: Client, fmt: str, buffer: str, parts: list[str]) -> str:
    got = await client.sse(
        "/v1/stream",
        method="POST",
        json_body={"prompt": script(parts), "model": "scripted", "format": fmt, "buffer": buffer},
    )
    assert got.status == 200, got.events
    return "".join(text_of_sse_event(fmt, e.event, e.data) for e in got.events)


async def ws_text(client: Client, fmt: str, buffer: str, parts: list[str]) -> str:
    url = client.base_url.replace("http://", "ws://") + "/ws/stream"
    async with websockets.connect(url) as socket:
        await socket.send(
            json.dumps(
                {"prompt": script(parts), "model": "scripted", "format": fmt, "buffer": buffer}
            )
        )
        text = []
        while True:
            message = json.loads(await socket.recv())
            if message.get("type") in ENDS:
                break
            text.append(text_of_object(message))
        return "".join(text)


@pytest.fixture
async def scripted_client(serve) -> Client:
    return await serve(base_config(buffers={"word": {"min_words": 2}}, **SCRIPTED))


@pytest.mark.parametrize("transport", ["sse", "ws"])
@pytest.mark.parametrize("buffer", BUFFERS)
@pytest.mark.parametrize("fmt", FORMATTERS)
@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(parts=text_deltas)
async def test_the_client_gets_exactly_the_provider_text(
    scripted_client, transport, fmt, buffer, parts
):
    expected = "".join(parts)
    if transport == "sse" and fmt == "text":  # the one shape that normalises line ends (documented)
        expected = expected.replace("\r\n", "\n").replace("\r", "\n")
    read = sse_text if transport == "sse" else ws_text

    assert await read(scripted_client, fmt, buffer, parts) == expected


async def test_text_format_keeps_a_crlf_split_across_two_raw_segments_one_line_end(
    scripted_client,
):
    # "\r" then "\n" as separate events would otherwise read as two line ends.
    assert await sse_text(scripted_client, "text", "raw", ["a\r", "\nb", "\r", "\n"]) == "a\nb\n"


# --- cancel: the text a buffer holds still goes out, before the end event -----------------------

HELD = [
    ("word", ["Every whole word ", "and half"], "half"),
    ("sentence", ["A whole sentence. ", "And half of the next"], "And half of the next"),
]
"""(buffer, deltas, the text the buffer still holds after the last delta)."""


async def held_stream_app(serve, buffer: str):
    """A server whose ``buffer`` never flushes on a timer (``max_delay_ms = 0``): only the end of
    the stream (here: its cancel) can deliver what it holds. Returns the app and a client."""
    app = streamserver.create_app(base_config(buffers={buffer: {"max_delay_ms": 0}}, **SCRIPTED))
    return app, await serve(app=app)


@pytest.mark.parametrize(("buffer", "parts", "held"), HELD, ids=[h[0] for h in HELD])
async def test_delete_delivers_what_the_buffer_holds_before_the_end_event(
    serve, buffer, parts, held
):
    app, client = await held_stream_app(serve, buffer)
    provider = app[SERVICE].providers["scripted"]
    params = {"prompt": script(parts, then="hang"), "model": "scripted", "buffer": buffer}

    reader = asyncio.create_task(client.sse("/v1/stream", params=params))
    await wait_until(lambda: provider.yielded == len(parts))  # the partial text is in the buffer
    (stream,) = app[SERVICE].streams.live()
    deleted = await client.http.delete(f"/v1/streams/{stream.id}")
    got = await reader

    assert deleted.json() == {"id": stream.id, "cancelled": True}
    assert got.names()[-2:] == ["token", "stream_end"]
    assert got.json()[-2]["content"] == held
    assert got.json()[-1]["finish_reason"] == "cancelled"
    assert "".join(e["content"] for e in got.json() if "content" in e) == "".join(parts)


@pytest.mark.parametrize(("buffer", "parts", "held"), HELD, ids=[h[0] for h in HELD])
async def test_websocket_cancel_delivers_what_the_buffer_holds_before_done(
    serve, buffer, parts, held
):
    app, client = await held_stream_app(serve, buffer)
    provider = app[SERVICE].providers["scripted"]
    url = client.base_url.replace("http://", "ws://") + "/ws/stream"

    async with websockets.connect(url) as socket:
        await socket.send(
            json.dumps(
                {"prompt": script(parts, then="hang"), "model": "scripted", "buffer": buffer}
            )
        )
        await wait_until(lambda: provider.yielded == len(parts))
        await socket.send(json.dumps({"type": "cancel"}))
        messages = [json.loads(await socket.recv())]
        while messages[-1]["type"] != "done":
            messages.append(json.loads(await socket.recv()))

    assert messages[-2] == {"type": "token", "content": held}
    assert messages[-1] == {"type": "done", "full_response": "".join(parts), "cancelled": True}
    assert "".join(m.get("content", "") for m in messages) == "".join(parts)


# --- a broken upstream: half an emoji (a lone surrogate) -----------------------------------------


@pytest.mark.parametrize("fmt", ["simple", "production", "openai", "ai-sdk"])
async def test_a_lone_surrogate_arrives_as_its_json_escape_over_both_transports(
    scripted_client, fmt
):
    parts = ["half an emoji: ", "\ud83d", " then more"]
    # Valid UTF-8 on the wire; a JSON parser gives back the very code unit the provider sent.
    assert await sse_text(scripted_client, fmt, "raw", parts) == "".join(parts)
    received = await asyncio.wait_for(ws_text(scripted_client, fmt, "raw", parts), timeout=10)
    assert received == "".join(parts)


async def test_the_text_format_writes_a_lone_surrogate_as_its_six_character_escape(
    scripted_client,
):
    # Plain text has no escape of its own and UTF-8 cannot carry the code unit: the text format
    # writes the same \ud83d the JSON formats do, visibly, instead of dropping it or failing.
    parts = ["half an emoji: ", "\ud83d", " then more"]
    text = await sse_text(scripted_client, "text", "raw", parts)

    assert text == "half an emoji: \\ud83d then more"
