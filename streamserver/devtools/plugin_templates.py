"""What ``streamserver new-plugin`` writes for each kind: a small plugin that works, and its tests.

Each is a ``string.Template`` (``$name``: the plugin's name, which is also its package's import
name and the name it registers; the classes are named for what they are, whatever the name). A generated package passes
its own tests and ``ruff`` as written: ``tests/test_new_plugin.py`` proves it for every kind.
"""

from __future__ import annotations

from dataclasses import dataclass
from string import Template


@dataclass(frozen=True, slots=True)
class PluginKind:
    """One kind of plugin ``new-plugin`` can write."""

    summary: str
    """What the generated plugin does, for its README."""
    module: Template
    tests: Template


BUFFER = PluginKind(
    summary="a buffer that sends whole lines, at least `min_lines` at a time",
    module=Template('''"""$name: a streamserver buffer that sends whole lines.

A segment ends at a newline, so a client that renders line by line (a terminal, a log view)
never shows half a line. When the core's flush timer fires (``max_delay_ms``) the buffer gives
up the held text through its last whitespace, so a long line still streams word by word.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated

from streamserver import hookimpl
from streamserver.hookspecs import Register
from streamserver.schema import AT_LEAST_ONE


@dataclass(frozen=True, slots=True)
class LineOptions:
    """``[buffers.$name]`` options."""

    min_lines: Annotated[int, AT_LEAST_ONE] = 1
    """The fewest whole lines one segment holds."""


class LineBuffer:
    """Whole lines, at least ``min_lines`` per segment; lossless (the core relies on it)."""

    def __init__(self, options: LineOptions) -> None:
        self.min_lines = options.min_lines
        self.text = ""
        self.held = 0
        self.lines = 0  # newlines in ``text``, counted in each delta once

    def push(self, text: str) -> Sequence[str]:
        """Hold ``text``; return every whole line held once there are ``min_lines`` of them."""
        self.text += text
        self.held = len(self.text)
        self.lines += text.count("\\n")
        if self.lines < self.min_lines:
            return ()
        return (self._cut(self.text.rfind("\\n") + 1),)

    def release(self) -> str:
        """For the flush timer: the held text through its last whitespace (a word with none
        so far goes whole: latency wins over looks)."""
        end = max(self.text.rfind(" "), self.text.rfind("\\n"), self.text.rfind("\\t")) + 1
        return self._cut(end or len(self.text))

    def flush(self) -> str:
        """Everything held (the end of the stream)."""
        return self._cut(len(self.text))

    def _cut(self, end: int) -> str:
        segment, self.text = self.text[:end], self.text[end:]
        self.held = len(self.text)
        self.lines = self.text.count("\\n")
        return segment


@hookimpl
def register_buffers(register: Register) -> None:
    """Offer the buffer as ``$name``."""
    register(
        "$name",
        LineBuffer,
        options=LineOptions,
        description="whole lines",
    )
'''),
    tests=Template('''"""The buffer's boundaries, the kit's proof that it is lossless, a real stream through it."""

import json

from streamserver.testing import assert_lossless_buffer, script

from $name.plugin import LineBuffer, LineOptions


def segments(buffer: LineBuffer, deltas: list[str]) -> list[str]:
    out = [segment for delta in deltas for segment in buffer.push(delta)]
    rest = buffer.flush()
    return [*out, rest] if rest else out


def test_a_segment_ends_at_a_newline() -> None:
    buffer = LineBuffer(LineOptions())

    got = segments(buffer, ["one\\ntw", "o\\nthr", "ee"])

    assert got == ["one\\n", "two\\n", "three"]


def test_min_lines_gathers_lines_into_one_segment() -> None:
    buffer = LineBuffer(LineOptions(min_lines=2))

    got = segments(buffer, ["a\\n", "b\\nc\\n", "d\\n", "e"])

    assert got == ["a\\nb\\nc\\n", "d\\ne"]


def test_the_flush_timer_releases_through_the_last_space() -> None:
    buffer = LineBuffer(LineOptions())
    buffer.push("a long li")

    assert buffer.release() == "a long "
    assert buffer.held == 2


def test_it_is_lossless_and_chunk_invariant() -> None:
    for min_lines in (1, 3):
        options = LineOptions(min_lines=min_lines)
        assert_lossless_buffer(LineBuffer, options, pieces=["\\n", " ", "\\r\\n", "line"])


async def test_a_stream_through_it_sends_whole_lines(streamserver_client) -> None:
    deltas = ["first li", "ne\\nsecond", " line\\nrest"]
    params = {
        "prompt": script(deltas),
        "model": "scripted",
        "buffer": "$name",
    }
    got = await streamserver_client.sse("/v1/stream", params=params)

    contents = [json.loads(e.data)["content"] for e in got.events if e.event == "token"]
    assert contents == ["first line\\n", "second line\\n", "rest"]
'''),
)


FORMATTER = PluginKind(
    summary="a formatter with one event per kind of part (`text`, `reasoning`, `call`, "
    "`arguments`, `end`, `error`)",
    module=Template('''"""$name: a streamserver formatter.

It writes one event per kind of part. Over SSE each event is named for what it carries
(``start``, ``text``, ``reasoning``, ``call``, ``arguments``, ``end``, ``error``) and its data is
JSON; over WebSocket (the ``json`` form) the name is the message's ``type``. A client tells the
parts apart by the name alone.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from streamserver import hookimpl
from streamserver.hookspecs import Register
from streamserver.types import Event, MessageForm, StreamEnd, StreamFailure, StreamStart


class PartEventsFormatter:
    """One event per part; the text's event is ``text`` (``{"text": ...}``)."""

    token_event = "text"

    def __init__(self, options: object, form: MessageForm) -> None:
        self.typed = form == "json"  # a WebSocket message carries its name as "type"

    def _event(self, name: str, body: dict[str, Any]) -> Event:
        if self.typed:
            return Event(None, json.dumps({"type": name, **body}))
        return Event(name, json.dumps(body))

    def start(self, info: StreamStart) -> Sequence[Event]:
        """The stream's id and model, before any part."""
        return (self._event("start", {"id": info.stream_id, "model": info.model}),)

    def segment(self, text: str, tokens: int) -> str | None:
        """One segment of text: the hot path, so one ``json.dumps`` and no other object."""
        if self.typed:
            return json.dumps({"type": "text", "text": text})
        return json.dumps({"text": text})

    def reasoning(self, text: str) -> Sequence[Event]:
        """One segment of the model's reasoning."""
        return (self._event("reasoning", {"text": text}),)

    def tool_call_start(self, index: int, call_id: str, name: str) -> Sequence[Event]:
        """A tool call begins."""
        return (self._event("call", {"index": index, "id": call_id, "name": name}),)

    def tool_call_arguments(self, index: int, fragment: str) -> Sequence[Event]:
        """A fragment of a call's arguments, as the model wrote it."""
        return (self._event("arguments", {"index": index, "fragment": fragment}),)

    def end(self, summary: StreamEnd) -> Sequence[Event]:
        """Why the stream ended, and how many deltas it had."""
        body = {"finish_reason": summary.finish_reason, "tokens": summary.tokens}
        return (self._event("end", body),)

    def error(self, failure: StreamFailure, summary: StreamEnd) -> Sequence[Event]:
        """The failure (its code and safe message), then the end."""
        body = {"code": failure.code, "message": failure.message}
        return (self._event("error", body), *self.end(summary))


@hookimpl
def register_formatters(register: Register) -> None:
    """Offer the formatter as ``$name``."""
    register(
        "$name",
        PartEventsFormatter,
        description="one event per kind of part",
    )
'''),
    tests=Template('''"""The formatter's events read back to the stream's parts, over SSE and WebSocket."""

import json
from collections.abc import Iterator

from streamserver.testing import assert_formatter_round_trip, script
from streamserver.types import Delta, Event, Reasoning, ToolCallDelta

from $name.plugin import PartEventsFormatter


def parse(events: list[Event]) -> Iterator[Delta]:
    """What a client of this shape rebuilds: the parts each event carries."""
    for event in events:
        body = json.loads(event.data)
        kind = event.name or body["type"]
        if kind == "text":
            yield body["text"]
        elif kind == "reasoning":
            yield Reasoning(body["text"])
        elif kind == "call":
            yield ToolCallDelta(body["index"], body["id"], body["name"])
        elif kind == "arguments":
            yield ToolCallDelta(body["index"], arguments=body["fragment"])


def test_sse_events_read_back_to_the_stream_parts() -> None:
    assert_formatter_round_trip(PartEventsFormatter, parse=parse)


def test_websocket_messages_read_back_to_the_stream_parts() -> None:
    assert_formatter_round_trip(PartEventsFormatter, parse=parse, form="json")


async def test_a_stream_names_each_part(streamserver_client) -> None:
    deltas = [{"reasoning": "think"}, "Hi", {"tool": 0, "id": "c1", "name": "f", "arguments": "{}"}]
    params = {
        "prompt": script(deltas),
        "model": "scripted",
        "format": "$name",
    }
    got = await streamserver_client.sse("/v1/stream", params=params)

    assert got.names() == ["start", "reasoning", "text", "call", "arguments", "end"]
    assert got.json()[-1] == {"finish_reason": "stop", "tokens": 3}
'''),
)
