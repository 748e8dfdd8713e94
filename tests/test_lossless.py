"""Every stream is lossless: whatever the buffer, formatter or transport, the client rebuilds
exactly the text the provider produced, read through real connections by independent parsers
(httpx-sse for SSE, the ``websockets`` library for WebSocket)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import websockets
from conftest import SCRIPTED, Client, base_config, script
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

BUFFERS = ["raw", "delimiter", "word", "sentence"]
FORMATTERS = ["simple", "events", "progress", "production", "openai", "ai-sdk", "text"]

DANGEROUS = [
    "", "\n", "\r\n", "\r", "\n\n", "\r\r", " ", "  ", "data: ", "event: done", "id: 1", "retry: 0",
    ":", "[DONE]", "\\", '"', "🙂", "👨‍👩‍👧", "é", "\u2028", "\x00", "e.g. ", "Mr. ", "3.14", ". ",
    "! ", "? ", "…", "。", "```", "`", "[a](b)",
]  # fmt: skip
deltas = st.lists(st.one_of(st.sampled_from(DANGEROUS), st.text(max_size=12)), max_size=24)


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
    if obj.get("type") == "text-delta":
        return obj["delta"]
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
            if message.get("type") in ("done", "complete", "stream_end"):
                break
            text.append(text_of_object(message))
        return "".join(text)


@pytest.fixture
async def scripted_client(serve) -> Client:
    return await serve(base_config(buffers={"word": {"min_words": 2}}, **SCRIPTED))


@pytest.mark.parametrize("buffer", BUFFERS)
@pytest.mark.parametrize("fmt", FORMATTERS)
@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(parts=deltas)
async def test_sse_delivers_exactly_the_provider_text(scripted_client, fmt, buffer, parts):
    expected = "".join(parts)
    if fmt == "text":  # the one shape that normalises line ends (documented)
        expected = expected.replace("\r\n", "\n").replace("\r", "\n")

    assert await sse_text(scripted_client, fmt, buffer, parts) == expected


@pytest.mark.parametrize("buffer", BUFFERS)
@pytest.mark.parametrize("fmt", FORMATTERS)
@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(parts=deltas)
async def test_websocket_delivers_exactly_the_provider_text(scripted_client, fmt, buffer, parts):
    assert await ws_text(scripted_client, fmt, buffer, parts) == "".join(parts)


async def test_text_format_keeps_a_crlf_split_across_two_raw_segments_one_line_end(
    scripted_client,
):
    # "\r" then "\n" as separate events would otherwise read as two line ends.
    assert await sse_text(scripted_client, "text", "raw", ["a\r", "\nb", "\r", "\n"]) == "a\nb\n"
