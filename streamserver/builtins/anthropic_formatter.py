"""The ``anthropic`` formatter: a stream as the Messages API streams it, so the ``anthropic`` SDK
(``messages.create(stream=True)``, ``messages.stream(...)``) reads streamserver as-is.

``message_start``, a ``ping``, then one content block per part in the order the model produced
them (``content_block_start``, ``content_block_delta`` with ``text_delta``, ``thinking_delta`` or
``input_json_delta``, ``content_block_stop``), ``message_delta`` with the stop reason and the
usage, ``message_stop``. A failure is an ``error`` event (the SDK raises its ``APIStatusError``
from it). Every event is named by its ``type``, as the SDK requires (it skips unnamed events).

A text or thinking block closes when the kind of content changes. A ``tool_use`` block stays
open until generation ends: providers may interleave the fragments of parallel calls, and a
fragment that arrived after its block closed could not be sent. The SDK accumulates by block
index, so the blocks it rebuilds are exactly what the provider produced.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..hookspecs import Register, hookimpl
from ..types import Event, MessageForm, PartKind, StreamEnd, StreamFailure, StreamStart, Usage
from .formatters import json_text, quote

STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use",
                "content_filter": "refusal"}  # fmt: skip
"""A stream's finish reason as the Messages API names it (``end_turn`` for the rest: a stream
cancelled while a reader resumed it ended its turn there)."""

ERROR_TYPES = {"upstream_rate_limited": "rate_limit_error", "server_shutdown": "overloaded_error",
               "upstream_overloaded": "overloaded_error"}  # fmt: skip
"""A stream failure's code as the Messages API's error type (``api_error`` for the rest)."""

_DELTA_KINDS = {"text": ("text", "text_delta", "text"),
                "reasoning": ("thinking", "thinking_delta", "thinking")}  # fmt: skip
"""A part kind's block type, its delta type and the delta's field."""
_STOP = Event("message_stop", '{"type": "message_stop"}')
_PING = Event("ping", '{"type": "ping"}')


def stop_reason(finish_reason: str, stop_sequence: str | None = None) -> str:
    """A stream's finish reason as a Messages API ``stop_reason`` (``stop_sequence`` when the
    provider said which one ended it)."""
    if stop_sequence is not None:
        return "stop_sequence"
    return STOP_REASONS.get(finish_reason, "end_turn")


def anthropic_usage(usage: Usage | None) -> dict[str, int]:
    """The Messages API's usage object: the upstream's counts, or the stream's estimate."""
    if usage is None:
        return {"input_tokens": 0, "output_tokens": 0}
    return {"input_tokens": usage.prompt_tokens, "output_tokens": usage.completion_tokens}


def anthropic_error_body(error_type: str, message: str) -> dict[str, Any]:
    """The Messages API's error body: ``{"type": "error", "error": {"type", "message"}}``."""
    return {"type": "error", "error": {"type": error_type, "message": message}}


class AnthropicFormatter:
    """Messages API stream events; see the module docstring."""

    token_event: str | None = "content_block_delta"

    def __init__(self, options: object, form: MessageForm) -> None:
        self.blocks = 0
        """Content blocks started so far (the next block's index)."""
        self.open: int | None = None
        """The index of the text or thinking block open now."""
        self.thinking = False
        """The block open now is a thinking block."""
        self.delta_head = ""
        """``{"type": "content_block_delta", "index": i, "delta": {"type": "text_delta", "text": ``
        of the open block, joined once per block (a segment is then one concatenation)."""
        self.tool_blocks: dict[int, int] = {}
        """Each tool call's block index, by the call's index."""

    def start(self, info: StreamStart) -> Sequence[Event]:
        """``message_start`` with an empty message (its usage comes with ``message_delta``),
        then a ``ping``, as the API sends them."""
        message: dict[str, Any] = {"id": "msg_" + info.stream_id, "type": "message", "role": "assistant",
                   "model": info.model, "content": [], "stop_reason": None, "stop_sequence": None,
                   "usage": anthropic_usage(None)}  # fmt: skip
        return (Event("message_start", json_text({"type": "message_start", "message": message})),
                _PING)  # fmt: skip

    def _block_start(self, block: dict[str, Any]) -> Event:
        index = self.blocks
        self.blocks += 1
        data = {"type": "content_block_start", "index": index, "content_block": block}
        return Event("content_block_start", json_text(data))

    @staticmethod
    def _block_stop(index: int) -> Event:
        return Event("content_block_stop", f'{{"type": "content_block_stop", "index": {index}}}')

    def boundary(self, ended: PartKind | None, starting: PartKind | None) -> Sequence[Event]:
        """Stops the text or thinking block that ended (every tool block once the content
        ends); starts the text or thinking block of the kind starting."""
        events = []
        if self.open is not None:
            events.append(self._block_stop(self.open))
            self.open = None
        if starting is None:
            events.extend(self._block_stop(index) for index in self.tool_blocks.values())
            self.tool_blocks.clear()
        elif starting != "tool_call":
            block_type, delta_type, name = _DELTA_KINDS[starting]
            self.open, self.thinking = self.blocks, block_type == "thinking"
            block = {"type": block_type, name: ""}
            if block_type == "thinking":
                block["signature"] = ""  # a signature_delta gives it, when the provider signs
            events.append(self._block_start(block))
            self.delta_head = (
                f'{{"type": "content_block_delta", "index": {self.open}, '
                f'"delta": {{"type": "{delta_type}", "{name}": '
            )
        return events

    def segment(self, text: str, tokens: int) -> str:
        """A ``text_delta`` (the hot path: one concatenation)."""
        return self.delta_head + quote(text) + "}}"

    def reasoning_signature(self, signature: str) -> Sequence[Event]:
        """A ``signature_delta`` in the thinking block open now (the provider's, passed on: the
        client sends the block back with it)."""
        if self.open is None or not self.thinking:
            return ()  # no thinking block open: nothing it signs
        data = {"type": "content_block_delta", "index": self.open,
                "delta": {"type": "signature_delta", "signature": signature}}  # fmt: skip
        return (Event("content_block_delta", json_text(data)),)

    def reasoning(self, text: str) -> Sequence[Event]:
        """A ``thinking_delta``."""
        return (Event("content_block_delta", self.delta_head + quote(text) + "}}"),)

    def tool_call_start(self, index: int, call_id: str, name: str) -> Sequence[Event]:
        """A ``tool_use`` block with an empty input (its JSON follows in fragments)."""
        self.tool_blocks[index] = self.blocks
        return (self._block_start({"type": "tool_use", "id": call_id, "name": name, "input": {}}),)

    def tool_call_arguments(self, index: int, fragment: str) -> Sequence[Event]:
        """An ``input_json_delta`` with one fragment of the call's arguments, as it arrived."""
        head = f'{{"type": "content_block_delta", "index": {self.tool_blocks[index]}, '
        data = head + '"delta": {"type": "input_json_delta", "partial_json": ' + quote(fragment)
        return (Event("content_block_delta", data + "}}"),)

    def end(self, summary: StreamEnd) -> Sequence[Event]:
        """``message_delta`` with the stop reason and the usage, then ``message_stop``."""
        reason = stop_reason(summary.finish_reason, summary.stop_sequence)
        delta = {"type": "message_delta",
                 "delta": {"stop_reason": reason, "stop_sequence": summary.stop_sequence},
                 "usage": anthropic_usage(summary.usage)}  # fmt: skip
        return (Event("message_delta", json_text(delta)), _STOP)

    def error(self, failure: StreamFailure, summary: StreamEnd) -> Sequence[Event]:
        """An ``error`` event in the Messages API's error shape (the stream ends there, as the
        API's does)."""
        body = anthropic_error_body(
            ERROR_TYPES.get(failure.code, "api_error"), f"{failure.message} ({failure.code})"
        )
        return (Event("error", json_text(body)),)


@hookimpl
def register_formatters(register: Register) -> None:
    """The Anthropic Messages API's stream events."""
    register("anthropic", AnthropicFormatter, description="Anthropic Messages API stream events")
