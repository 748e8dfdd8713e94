"""The ``responses`` formatter: the OpenAI Responses API's semantic event stream, and the
Response object and output items it (and the non-streamed ``/v1/responses``) is made of.

A stream is ``response.created`` and ``response.in_progress``; then one output item per part in
the order the model produced them: a ``message`` (``response.output_item.added``,
``response.content_part.added``, ``response.output_text.delta``..., ``response.output_text.done``,
``response.content_part.done``, ``response.output_item.done``), a ``reasoning`` item with one
summary part (``response.reasoning_summary_part.added``, ``response.reasoning_summary_text.delta``
... and their ``.done``), a ``function_call`` per tool call
(``response.function_call_arguments.delta``..., ``.done`` once generation ended); then
``response.completed`` with the whole Response and its usage (``response.incomplete`` when it was
cut by ``max_output_tokens`` or cancelled), or an ``error`` event and ``response.failed``. Every
event is named by its ``type`` (SSE ``event:``) and carries a ``sequence_number`` from 0, as the
openai SDKs' ``responses.create(stream=True)`` and ``responses.stream()`` read it. There is no
``[DONE]``: the terminal event ends the stream.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..hookspecs import Register, hookimpl
from ..types import (
    Event,
    MessageForm,
    PartKind,
    StreamEnd,
    StreamFailure,
    StreamStart,
    ToolCall,
)
from .formatters import json_text, quote

RESPONSE_DEFAULTS: Mapping[str, Any] = {
    "instructions": None,
    "max_output_tokens": None,
    "metadata": {},
    "parallel_tool_calls": True,
    "previous_response_id": None,
    "reasoning": {"effort": None, "summary": None},
    "store": False,
    "temperature": None,
    "text": {"format": {"type": "text"}},
    "tool_choice": "auto",
    "tools": [],
    "top_p": None,
    "truncation": "disabled",
    "user": None,
}
"""What a Response repeats of its request, when the request left it out (or the stream did not
come through ``/v1/responses``)."""

_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}
"""Finish reasons that end a response ``incomplete``, with the reason OpenAI gives."""


def response_object(
    info: StreamStart, request: Mapping[str, Any], output: Sequence[Mapping[str, Any]], **state: Any
) -> dict[str, Any]:
    """A Response object: its id (``resp_<stream id>``), the request's echo, the ``output``
    items and ``state`` (``status``, ``error``, ``incomplete_details``, ``usage``)."""
    return {
        "id": "resp_" + info.stream_id,
        "object": "response",
        "created_at": int(info.created),
        "status": "in_progress",
        "background": False,
        "error": None,
        "incomplete_details": None,
        "model": info.model,
        "output": list(output),
        "usage": None,
        **RESPONSE_DEFAULTS,
        **request,
        **state,
    }


def ending(summary: StreamEnd) -> dict[str, Any]:
    """How a stream that did not fail ends a Response: its status, why it is incomplete, usage."""
    state: dict[str, Any] = {"status": "completed", "usage": responses_usage(summary)}
    if summary.finish_reason == "cancelled":
        state["status"] = "cancelled"
    elif summary.finish_reason in _INCOMPLETE:
        state["status"] = "incomplete"
        state["incomplete_details"] = {"reason": _INCOMPLETE[summary.finish_reason]}
    return state


def failure_state(failure: StreamFailure, summary: StreamEnd) -> dict[str, Any]:
    """A failed Response's state: OpenAI's error codes (a rate limit, or a server error), our
    own code in the message."""
    code = "rate_limit_exceeded" if failure.code == "upstream_rate_limited" else "server_error"
    error = {"code": code, "message": f"{failure.message} ({failure.code})"}
    return {"status": "failed", "error": error, "usage": responses_usage(summary)}


def responses_usage(summary: StreamEnd) -> dict[str, Any] | None:
    """The Responses API's usage object: the upstream's counts, or the stream's estimate."""
    usage = summary.usage
    if usage is None:
        return None
    reasoning = usage.reasoning_tokens
    if reasoning is None:
        reasoning = summary.reasoning_tokens
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
    }


def message_item(item_id: str, text: str | None, status: str = "completed") -> dict[str, Any]:
    """An assistant ``message`` output item (``text`` None: its content has not begun)."""
    content = [] if text is None else [text_part(text)]
    return {"id": item_id, "type": "message", "status": status, "role": "assistant",
            "content": content}  # fmt: skip


def text_part(text: str) -> dict[str, Any]:
    """An ``output_text`` content part."""
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def reasoning_item(item_id: str, text: str | None) -> dict[str, Any]:
    """A ``reasoning`` output item whose summary is the model's reasoning (``None``: not begun)."""
    summary = [] if text is None else [{"type": "summary_text", "text": text}]
    return {"id": item_id, "type": "reasoning", "summary": summary}


def call_item(item_id: str, call: ToolCall, status: str = "completed") -> dict[str, Any]:
    """A ``function_call`` output item."""
    return {"id": item_id, "type": "function_call", "status": status, "call_id": call.id,
            "name": call.name, "arguments": call.arguments}  # fmt: skip


def _delta_head(event: dict[str, Any]) -> str:
    """A delta event's JSON up to its delta (``..., "delta": ``), joined once per part."""
    return json_text(event)[:-1] + ', "delta": '


@dataclass(frozen=True, slots=True)
class ResponsesOptions:
    """``[formatters.responses]`` options (set per stream by ``/v1/responses``)."""

    request: dict[str, Any] = field(default_factory=dict)
    """What the Response object repeats of its request (``instructions``, ``tools``, ...)."""


class ResponsesFormatter:
    """The Responses API's semantic events, each with its ``sequence_number``.

    It keeps the output items (each whole once done) for the ``.done`` events and the final
    Response; the open part's text is kept as a list of segments, joined once when it ends.
    """

    token_event: str | None = "response.output_text.delta"

    def __init__(self, options: ResponsesOptions, form: MessageForm) -> None:
        self.request = options.request
        self.info: StreamStart | None = None
        self.sequence = 0
        self.output: list[dict[str, Any]] = []
        """The output items by ``output_index``: as added, replaced by the whole item when done."""
        self.pieces: list[str] = []
        """The open text or reasoning part's segments."""
        self.delta_head = ""
        """The open part's delta event up to the delta: joined once per part, not per segment."""
        self.calls: dict[int, int] = {}
        """A tool call's index -> its item's ``output_index``."""

    def _event(self, payload: dict[str, Any]) -> Event:
        payload["sequence_number"] = self.sequence
        self.sequence += 1
        return Event(payload["type"], json_text(payload))

    def _response(self, kind: str, **state: Any) -> Event:
        assert self.info is not None
        response = response_object(self.info, self.request, self.output, **state)
        return self._event({"type": kind, "response": response})

    def start(self, info: StreamStart) -> Sequence[Event]:
        """``response.created`` and ``response.in_progress``, with no output yet."""
        self.info = info
        return (self._response("response.created"), self._response("response.in_progress"))

    def _item_id(self, prefix: str) -> str:
        assert self.info is not None
        return f"{prefix}_{self.info.stream_id}_{len(self.output)}"

    def _added(self, item: dict[str, Any]) -> Event:
        self.output.append(item)
        return self._event({"type": "response.output_item.added",
                            "output_index": len(self.output) - 1, "item": item})  # fmt: skip

    def _done(self, index: int, item: dict[str, Any]) -> Event:
        self.output[index] = item
        return self._event(
            {"type": "response.output_item.done", "output_index": index, "item": item}
        )

    def boundary(self, ended: PartKind | None, starting: PartKind | None) -> Sequence[Event]:
        """Closes the message or reasoning item that ended (its whole text in the ``.done``
        events); opens the one starting with its one content (or summary) part."""
        events: list[Event] = []
        index = len(self.output) - 1
        if ended == "text":
            text, item_id = "".join(self.pieces), self.output[index]["id"]
            where = {"item_id": item_id, "output_index": index, "content_index": 0}
            events += (
                self._event({"type": "response.output_text.done", **where, "text": text,
                             "logprobs": []}),
                self._event({"type": "response.content_part.done", **where,
                             "part": text_part(text)}),
                self._done(index, message_item(item_id, text)),
            )  # fmt: skip
        elif ended == "reasoning":
            text, item_id = "".join(self.pieces), self.output[index]["id"]
            where = {"item_id": item_id, "output_index": index, "summary_index": 0}
            events += (
                self._event({"type": "response.reasoning_summary_text.done", **where,
                             "text": text}),
                self._event({"type": "response.reasoning_summary_part.done", **where,
                             "part": {"type": "summary_text", "text": text}}),
                self._done(index, reasoning_item(item_id, text)),
            )  # fmt: skip
        self.pieces = []
        if starting == "text":
            item_id = self._item_id("msg")
            events.append(self._added(message_item(item_id, None, "in_progress")))
            where = {"item_id": item_id, "output_index": len(self.output) - 1, "content_index": 0}
            events.append(self._event({"type": "response.content_part.added", **where,
                                       "part": text_part("")}))  # fmt: skip
            self.delta_head = _delta_head(
                {"type": "response.output_text.delta", **where, "logprobs": []}
            )
        elif starting == "reasoning":
            item_id = self._item_id("rs")
            events.append(self._added(reasoning_item(item_id, None)))
            where = {"item_id": item_id, "output_index": len(self.output) - 1, "summary_index": 0}
            events.append(self._event({"type": "response.reasoning_summary_part.added", **where,
                                       "part": {"type": "summary_text", "text": ""}}))  # fmt: skip
            self.delta_head = _delta_head(
                {"type": "response.reasoning_summary_text.delta", **where}
            )
        return events

    def segment(self, text: str, tokens: int) -> str:
        """A ``response.output_text.delta`` (hot path: one join of the part's head, the text and
        the sequence number)."""
        self.pieces.append(text)
        sequence = self.sequence
        self.sequence = sequence + 1
        return f'{self.delta_head}{quote(text)}, "sequence_number": {sequence}}}'

    def reasoning(self, text: str) -> Sequence[Event]:
        """A ``response.reasoning_summary_text.delta``."""
        self.pieces.append(text)
        sequence = self.sequence
        self.sequence = sequence + 1
        data = f'{self.delta_head}{quote(text)}, "sequence_number": {sequence}}}'
        return (Event("response.reasoning_summary_text.delta", data),)

    def tool_call_start(self, index: int, call_id: str, name: str) -> Sequence[Event]:
        """A ``function_call`` item is added, its arguments empty."""
        self.calls[index] = len(self.output)
        item = call_item(self._item_id("fc"), ToolCall(call_id, name, "", index), "in_progress")
        return (self._added(item),)

    def tool_call_arguments(self, index: int, fragment: str) -> Sequence[Event]:
        """A ``response.function_call_arguments.delta`` of call ``index``'s item."""
        at = self.calls[index]
        return (self._event({"type": "response.function_call_arguments.delta",
                             "item_id": self.output[at]["id"], "output_index": at,
                             "delta": fragment}),)  # fmt: skip

    def tool_call_end(self, call: ToolCall) -> Sequence[Event]:
        """``response.function_call_arguments.done`` and the item whole."""
        at = self.calls[call.index]
        item_id = self.output[at]["id"]
        return (
            self._event({"type": "response.function_call_arguments.done", "item_id": item_id,
                         "output_index": at, "name": call.name, "arguments": call.arguments}),
            self._done(at, call_item(item_id, call)),
        )  # fmt: skip

    def end(self, summary: StreamEnd) -> Sequence[Event]:
        """``response.completed`` with the whole output and usage; ``response.incomplete`` for a
        response cut short (``max_output_tokens``, a content filter, a cancel)."""
        state = ending(summary)
        kind = "response.completed" if state["status"] == "completed" else "response.incomplete"
        return (self._response(kind, **state),)

    def error(self, failure: StreamFailure, summary: StreamEnd) -> Sequence[Event]:
        """An ``error`` event with our code, then ``response.failed`` with the output so far."""
        error = self._event(
            {"type": "error", "code": failure.code, "message": failure.message, "param": None}
        )
        return (error, self._response("response.failed", **failure_state(failure, summary)))


@hookimpl
def register_formatters(register: Register) -> None:
    """The OpenAI Responses API's event stream."""
    register(
        "responses",
        ResponsesFormatter,
        options=ResponsesOptions,
        description="OpenAI Responses API semantic events (response.*)",
    )
