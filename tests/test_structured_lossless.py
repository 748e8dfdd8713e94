"""Structured streams are lossless and chunk-invariant: for any mix of text, reasoning and tool
calls, cut anywhere (arguments JSON cut at any character, a call's fragments interleaved with text),
every built-in format, over both transports and through every buffer, gives the client the same
text, reasoning and tool calls, in the order the provider produced them.

The client side is rebuilt here from each shape's documented events, read through real connections
by independent parsers (httpx-sse, ``websockets``); the openai SDK and the AI SDK's own parser read
the same shapes in their own tests.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest
import websockets
from conftest import SCRIPTED, Client, base_config, script
from hypothesis import HealthCheck, given, settings
from test_lossless import BUFFERS, ENDS, FORMATTERS

from streamserver.testing.strategies import scripts

TEXT_ONLY = {"progress", "text"}
"""Shapes with no place for structure (and ``simple``'s SSE form): text only, as documented."""


# --- what the client rebuilds, from each shape's events ------------------------------------------


@dataclass
class Rebuilt:
    text: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    calls: dict[str, list[str]] = field(default_factory=dict)
    """Call id -> [name, arguments so far]."""
    ids: dict[int, str] = field(default_factory=dict)
    whole: dict[str, Any] = field(default_factory=dict)
    """Call id -> the arguments the shape's "call is whole" event carried."""
    summary_calls: list[dict[str, Any]] | None = None
    kinds: list[str] = field(default_factory=list)

    def add(self, kind: str, piece: str) -> None:
        getattr(self, kind).append(piece)
        self._kind(kind)

    def _kind(self, kind: str) -> None:
        if not self.kinds or self.kinds[-1] != kind:
            self.kinds.append(kind)

    def start_call(self, index: int, call_id: str, name: str) -> None:
        self.ids[index] = call_id
        self.calls[call_id] = [name, ""]
        self._kind("tool_call")

    def arguments(self, call_id: str, fragment: str) -> None:
        self.calls[call_id][1] += fragment
        self._kind("tool_call")

    def read(self, obj: dict[str, Any], name: str) -> None:
        """One event of any built-in shape (``name``: the SSE event name, or the ``type``)."""
        kind = obj.get("type", name)
        if obj.get("object") == "chat.completion.chunk":
            for choice in obj["choices"]:
                delta = choice["delta"]
                if delta.get("content"):
                    self.add("text", delta["content"])
                if delta.get("reasoning_content"):
                    self.add("reasoning", delta["reasoning_content"])
                for call in delta.get("tool_calls") or ():
                    if "id" in call:
                        self.start_call(call["index"], call["id"], call["function"]["name"])
                    fragment = call["function"].get("arguments")
                    if fragment:
                        self.arguments(self.ids[call["index"]], fragment)
        elif "token" in obj:
            self.add("text", obj["token"])
        elif kind == "token":
            self.add("text", obj["content"])
        elif kind == "reasoning":
            self.add("reasoning", obj["content"])
        elif kind == "tool_call_start":
            self.start_call(obj["index"], obj["id"], obj["name"])
        elif kind == "tool_call_delta":
            self.arguments(self.ids[obj["index"]], obj["arguments"])
        elif kind == "tool_call":
            self.whole[obj["id"]] = obj["arguments"]
        elif kind in ("stream_end", "done") and "tool_calls" in obj:
            self.summary_calls = obj["tool_calls"]
        elif kind == "content_block_start" and obj["content_block"]["type"] == "tool_use":
            block = obj["content_block"]
            self.start_call(obj["index"], block["id"], block["name"])
        elif kind == "content_block_delta":
            delta = obj["delta"]
            if delta["type"] == "text_delta":
                self.add("text", delta["text"])
            elif delta["type"] == "thinking_delta":
                self.add("reasoning", delta["thinking"])
            else:
                self.arguments(self.ids[obj["index"]], delta["partial_json"])
        elif kind == "text-delta":
            self.add("text", obj["delta"])
        elif kind == "reasoning-delta":
            self.add("reasoning", obj["delta"])
        elif kind == "tool-input-start":
            self.start_call(len(self.ids), obj["toolCallId"], obj["toolName"])
        elif kind == "tool-input-delta":
            self.arguments(obj["toolCallId"], obj["inputTextDelta"])
        elif kind == "tool-input-available":
            self.whole[obj["toolCallId"]] = json.dumps(obj["input"])
        elif kind.startswith("response."):
            self._response_event(kind, obj)

    def _response_event(self, kind: str, obj: dict[str, Any]) -> None:
        """The Responses API's events: calls are output items, found by their ``output_index``."""
        item = obj.get("item", {})
        if kind == "response.output_text.delta":
            self.add("text", obj["delta"])
        elif kind == "response.reasoning_summary_text.delta":
            self.add("reasoning", obj["delta"])
        elif kind == "response.output_item.added" and item["type"] == "function_call":
            self.start_call(obj["output_index"], item["call_id"], item["name"])
        elif kind == "response.function_call_arguments.delta":
            self.arguments(self.ids[obj["output_index"]], obj["delta"])
        elif kind == "response.output_item.done" and item["type"] == "function_call":
            self.whole[item["call_id"]] = item["arguments"]


async def read_sse(client: Client, fmt: str, buffer: str, deltas: list[Any]) -> Rebuilt:
    body = {"prompt": script(deltas), "model": "scripted", "format": fmt, "buffer": buffer}
    got = await client.sse("/v1/stream", method="POST", json_body=body)
    assert got.status == 200, got.events
    rebuilt = Rebuilt()
    for event in got.events:
        if fmt == "text":
            if event.event == "message":
                rebuilt.add("text", event.data)
        elif event.data != "[DONE]":
            rebuilt.read(json.loads(event.data), event.event)
    return rebuilt


async def read_ws(client: Client, fmt: str, buffer: str, deltas: list[Any]) -> Rebuilt:
    url = client.base_url.replace("http://", "ws://") + "/ws/stream"
    body = {"prompt": script(deltas), "model": "scripted", "format": fmt, "buffer": buffer}
    rebuilt = Rebuilt()
    async with websockets.connect(url) as socket:
        await socket.send(json.dumps(body))
        while True:
            message = json.loads(await socket.recv())
            rebuilt.read(message, "")
            if message.get("type") in ENDS:
                return rebuilt


@pytest.fixture
async def scripted_client(serve) -> Client:
    return await serve(base_config(buffers={"word": {"min_words": 2}}, **SCRIPTED))


def carries_structure(fmt: str, transport: str) -> bool:
    return fmt not in TEXT_ONLY and not (fmt == "simple" and transport == "sse")


@pytest.mark.parametrize("transport", ["sse", "ws"])
@pytest.mark.parametrize("buffer", BUFFERS)
@pytest.mark.parametrize("fmt", FORMATTERS)
@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(wanted=scripts())
async def test_every_format_rebuilds_the_same_text_reasoning_and_tool_calls(
    scripted_client, transport, fmt, buffer, wanted
):
    read = read_sse if transport == "sse" else read_ws
    got = await read(scripted_client, fmt, buffer, wanted.deltas)

    expected_text = wanted.text
    if transport == "sse" and fmt == "text":  # the one shape that normalises line ends
        expected_text = expected_text.replace("\r\n", "\n").replace("\r", "\n")
    assert "".join(got.text) == expected_text
    if not carries_structure(fmt, transport):
        assert got.reasoning == [] and got.calls == {}
        return
    assert "".join(got.reasoning) == wanted.reasoning
    assert {i: tuple(c) for i, c in got.calls.items()} == wanted.calls
    assert got.kinds == wanted.kinds  # every part in the order the provider produced it
    for call_id, arguments in got.whole.items():  # the whole call, where the shape sends one
        assert json.loads(arguments) == json.loads(wanted.calls[call_id][1])
    if got.summary_calls is not None:
        assert {c["id"]: (c["name"], c["arguments"]) for c in got.summary_calls} == wanted.calls


async def test_a_tool_call_is_never_held_by_a_buffer(scripted_client):
    # The sentence buffer holds "no full stop yet"; the call's start and fragments go out at once,
    # after that text (flushed first, so the order holds), not at the next sentence's end.
    deltas = [
        "no full stop yet",
        {"tool": 0, "id": "call_a", "name": "f", "arguments": '{"a": '},
        {"tool": 0, "arguments": "1}"},
        " then text. ",
    ]
    got = await read_sse(scripted_client, "production", "sentence", deltas)

    assert got.kinds == ["text", "tool_call", "text"]
    assert got.text == ["no full stop yet", " then text. "]
    assert got.calls == {"call_a": ["f", '{"a": 1}']}
