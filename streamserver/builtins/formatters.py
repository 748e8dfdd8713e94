"""Built-in formatters: the wire shapes of the contract's routes (the README's route table).

Each has an SSE form (event name + JSON data) and a WebSocket form (one JSON message with a
``type``). Token events are built with the C string escaper rather than ``json.dumps`` on a dict:
that is the per-segment hot path. Every stream ends with the formatter's end event, after an
``error`` event if it failed, so EventSource clients know to stop reconnecting.

Structured parts (``PartEvents``): ``production``, ``events``, ``chat`` and the WebSocket form of
``simple`` send ``reasoning`` ``{"content"}``, ``tool_call_start`` ``{"index", "id", "name"}``,
``tool_call_delta`` ``{"index", "arguments"}`` and ``tool_call`` (the whole call) events; the SSE
forms of ``simple`` and ``progress`` carry text only, as their seed clients expect.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from json.encoder import encode_basestring

from ..hookspecs import Register, hookimpl
from ..types import Event, MessageForm, StreamEnd, StreamFailure, StreamStart, ToolCall, Usage

quote: Callable[[str], str] = encode_basestring
"""JSON string literal of a str, non-ASCII kept as is (the C implementation)."""


TOKEN_MESSAGE_HEAD = '{"type": "token", "content": '
"""The head of ``{"type": "token", "content": t}``, the JSON-message form of a token in every
built-in shape that has one (joined by hand, not a function call: the per-segment hot path)."""


json_text: Callable[[Mapping[str, object]], str] = json.JSONEncoder(ensure_ascii=False).encode
"""JSON text of a payload, non-ASCII kept as is (one encoder for all: ``json.dumps`` with an
option builds a new one per call)."""


def call_payload(call: ToolCall) -> dict[str, object]:
    """A whole tool call as the built-in shapes send it (``arguments`` is the JSON text)."""
    return {"index": call.index, "id": call.id, "name": call.name, "arguments": call.arguments}


def usage_payload(usage: Usage | None) -> dict[str, object] | None:
    """The usage as ``stream_end`` reports it (``estimated`` when the upstream reported none)."""
    if usage is None:
        return None
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
        "estimated": usage.estimated,
    }


class JSONFormatter(ABC):
    """Shared shape: SSE ``event: <name>`` + JSON, or WebSocket ``{"type": <name>, ...}``."""

    token_event: str | None = "token"

    def __init__(self, form: MessageForm) -> None:
        self.json = form == "json"

    def event(self, name: str, payload: dict[str, object]) -> Event:
        """One lifecycle event in this stream's message form."""
        if self.json:
            return Event(None, json_text({"type": name, **payload}))
        return Event(name, json_text(payload))

    def start(self, info: StreamStart) -> Sequence[Event]:
        """No start event unless the shape has one."""
        return ()

    def error(self, failure: StreamFailure, summary: StreamEnd) -> Sequence[Event]:
        """``error`` with the message and code, then the normal end event."""
        return (
            self.event("error", {"error": failure.message, "code": failure.code}),
            *self.end(summary),
        )

    @abstractmethod
    def end(self, summary: StreamEnd) -> Sequence[Event]:
        """The events that close the stream in this shape."""


class PartEvents(JSONFormatter):
    """Reasoning and tool-call events in a ``JSONFormatter``'s form (``parts`` False: none).

    The frequent ones (a reasoning segment, an argument fragment) are joined by hand like token
    events; the rare ones (a call's start and end) go through ``event``.
    """

    parts = True

    def reasoning(self, text: str) -> Sequence[Event]:
        """``reasoning`` ``{"content": t}``."""
        if not self.parts:
            return ()
        if self.json:
            return (Event(None, '{"type": "reasoning", "content": ' + quote(text) + "}"),)
        return (Event("reasoning", '{"content": ' + quote(text) + "}"),)

    def tool_call_start(self, index: int, call_id: str, name: str) -> Sequence[Event]:
        """``tool_call_start`` ``{"index", "id", "name"}``."""
        if not self.parts:
            return ()
        return (self.event("tool_call_start", {"index": index, "id": call_id, "name": name}),)

    def tool_call_arguments(self, index: int, fragment: str) -> Sequence[Event]:
        """``tool_call_delta`` ``{"index", "arguments"}``: one fragment, as the upstream sent it."""
        if not self.parts:
            return ()
        data = f'"index": {index}, "arguments": {quote(fragment)}}}'
        if self.json:
            return (Event(None, '{"type": "tool_call_delta", ' + data),)
        return (Event("tool_call_delta", "{" + data),)

    def tool_call_end(self, call: ToolCall) -> Sequence[Event]:
        """``tool_call`` with the whole call."""
        return (self.event("tool_call", call_payload(call)),) if self.parts else ()


class SimpleFormatter(PartEvents):
    """``/stream``: ``data: {"token": t}`` per segment, then ``data: {"done": true}`` (text only).

    WebSocket form (``/ws/stream``): ``start`` with the ``stream_id`` (what a resume message names),
    ``token`` with ``content``, the reasoning and tool-call messages, ``done`` with
    ``full_response`` (and ``tool_calls`` when there were any).
    """

    def __init__(self, options: object, form: MessageForm) -> None:
        super().__init__(form)
        self.token_event = None
        self.text: list[str] = []
        self.parts = self.json

    def start(self, info: StreamStart) -> Sequence[Event]:
        """WebSocket form only: ``{"type": "start", "stream_id": id}``."""
        return (self.event("start", {"stream_id": info.stream_id}),) if self.json else ()

    def segment(self, text: str, tokens: int) -> str:
        """``{"token": t}`` (SSE) or ``{"type": "token", "content": t}`` (WebSocket)."""
        if self.json:
            self.text.append(text)
            return TOKEN_MESSAGE_HEAD + quote(text) + "}"
        return '{"token": ' + quote(text) + "}"

    def end(self, summary: StreamEnd) -> Sequence[Event]:
        """``{"done": true}``; the WebSocket form adds the whole text and whether it was cut short."""
        if not self.json:
            return (Event(None, '{"done": true}'),)
        payload: dict[str, object] = {"type": "done", "full_response": "".join(self.text)}
        if summary.tool_calls:
            payload["tool_calls"] = [call_payload(call) for call in summary.tool_calls]
        if summary.finish_reason == "cancelled":
            payload["cancelled"] = True
        return (Event(None, json_text(payload)),)

    def error(self, failure: StreamFailure, summary: StreamEnd) -> Sequence[Event]:
        """``{"error": message, "code": code}``, then the end event."""
        if self.json:
            return super().error(failure, summary)
        return (
            Event(None, json_text({"error": failure.message, "code": failure.code})),
            *self.end(summary),
        )


class EventsFormatter(PartEvents):
    """``/stream/v2`` and ``/stream/safe``: ``event: token`` ``{"content": t}``, the reasoning and
    tool-call events, then ``event: done`` ``{"finished": true}`` (with ``tool_calls`` if any)."""

    def __init__(self, options: object, form: MessageForm) -> None:
        super().__init__(form)

    def segment(self, text: str, tokens: int) -> str:
        """``{"content": t}``."""
        if self.json:
            return TOKEN_MESSAGE_HEAD + quote(text) + "}"
        return '{"content": ' + quote(text) + "}"

    def end(self, summary: StreamEnd) -> Sequence[Event]:
        """``done`` ``{"finished": true}`` (``"cancelled": true`` added when it was)."""
        payload: dict[str, object] = {"finished": True}
        if summary.tool_calls:
            payload["tool_calls"] = [call_payload(call) for call in summary.tool_calls]
        if summary.finish_reason == "cancelled":
            payload["cancelled"] = True
        return (self.event("done", payload),)


class ProgressFormatter(JSONFormatter):
    """``/stream/progress``: ``start``, then ``token`` with a running ``total_tokens``, then
    ``complete`` with the whole response."""

    def __init__(self, options: object, form: MessageForm) -> None:
        super().__init__(form)
        self.text: list[str] = []

    def start(self, info: StreamStart) -> Sequence[Event]:
        """``start`` ``{"status": "generating"}``."""
        return (self.event("start", {"status": "generating"}),)

    def segment(self, text: str, tokens: int) -> str:
        """``{"content": t, "total_tokens": n}``."""
        self.text.append(text)
        head = TOKEN_MESSAGE_HEAD if self.json else '{"content": '
        return f'{head}{quote(text)}, "total_tokens": {tokens}}}'

    def end(self, summary: StreamEnd) -> Sequence[Event]:
        """``complete`` with ``status`` (``done``, ``cancelled`` or ``error``), totals, full text."""
        status = {"cancelled": "cancelled", "error": "error"}.get(summary.finish_reason, "done")
        return (
            self.event(
                "complete",
                {
                    "status": status,
                    "total_tokens": summary.tokens,
                    "full_response": "".join(self.text),
                },
            ),
        )


class ProductionFormatter(PartEvents):
    """``/v1/stream``: ``stream_start``, ``token`` with its ``index``, the reasoning and tool-call
    events, ``stream_end`` with timings, usage and the tool calls; ``error`` carries the
    ``stream_id``."""

    def __init__(self, options: object, form: MessageForm) -> None:
        super().__init__(form)
        self.index = 0
        self.stream_id = ""

    def start(self, info: StreamStart) -> Sequence[Event]:
        """``stream_start`` ``{"stream_id", "model"}``."""
        self.stream_id = info.stream_id
        return (self.event("stream_start", {"stream_id": info.stream_id, "model": info.model}),)

    def segment(self, text: str, tokens: int) -> str:
        """``{"content": t, "index": i}``, ``i`` counting token events from 0."""
        index = self.index
        self.index = index + 1
        head = TOKEN_MESSAGE_HEAD if self.json else '{"content": '
        return f'{head}{quote(text)}, "index": {index}}}'

    def end(self, summary: StreamEnd) -> Sequence[Event]:
        """``stream_end`` with tokens, duration, rate, finish reason, usage and tool calls."""
        return (
            self.event(
                "stream_end",
                {
                    "stream_id": summary.stream_id,
                    "tokens_generated": summary.tokens,
                    "duration_ms": round(summary.duration_s * 1000, 3),
                    "tokens_per_second": round(summary.tokens_per_second, 3),
                    "finish_reason": summary.finish_reason,
                    "usage": usage_payload(summary.usage),
                    "tool_calls": [call_payload(call) for call in summary.tool_calls],
                },
            ),
        )

    def error(self, failure: StreamFailure, summary: StreamEnd) -> Sequence[Event]:
        """``error`` ``{"error", "code", "stream_id"}``, then ``stream_end``."""
        error = self.event(
            "error", {"error": failure.message, "code": failure.code, "stream_id": self.stream_id}
        )
        return (error, *self.end(summary))


class ChatFormatter(EventsFormatter):
    """``/ws/chat/{id}``: ``token`` messages only; the chat route itself sends ``done`` with the
    conversation's ``message_count`` once the reply is stored. SSE form: like ``events``."""

    def end(self, summary: StreamEnd) -> Sequence[Event]:
        """Nothing over WebSocket (the route adds ``done``); ``done`` over SSE."""
        return () if self.json else (self.event("done", {"finished": True}),)


@hookimpl
def register_formatters(register: Register) -> None:
    """The contract's four wire shapes."""
    register("simple", SimpleFormatter, description='data: {"token": t} ... data: {"done": true}')
    register("events", EventsFormatter, description="event: token {content} ... event: done")
    register("progress", ProgressFormatter, description="start, token with total_tokens, complete")
    register(
        "production", ProductionFormatter, description="stream_start, token with index, stream_end"
    )
    register(
        "chat",
        ChatFormatter,
        description="token messages; the chat route adds done with message_count",
    )
