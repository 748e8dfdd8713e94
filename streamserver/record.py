"""What a stream said, kept beside its event log.

A ``StreamRecord`` holds each text segment with the log position of its token event, the
reasoning, each tool call whole with the position of its end, and the stream's ``StreamEnd`` once
it ends. The consumers that need the content (the chat route's stored reply, in-process
generation, non-streamed completions) read the record, never a formatter's wire output, so they
work whatever formatter the stream has. A stream keeps one only when a consumer asks
(``StreamService.start(keep_record=True)``): streams nobody reads back pay nothing.
"""

from __future__ import annotations

import dataclasses
from bisect import bisect_left, bisect_right
from typing import Any

from .types import StreamEnd, StreamFailure, ToolCall, Usage

_SUMMARY_FIELDS = frozenset(field.name for field in dataclasses.fields(StreamEnd))


class StreamRecord:
    """The segments a stream emitted, in order, as parallel lists, and its summary."""

    __slots__ = ("call_positions", "positions", "reasoning", "signatures", "summary", "texts",
                 "tool_calls")  # fmt: skip

    def __init__(self) -> None:
        self.positions: list[int] = []
        """The log position of each segment's token event (the next event's, for a segment its
        formatter sent nothing for: it reaches a client no sooner than that one)."""
        self.texts: list[str] = []
        """Each segment's text, as the buffer released it."""
        self.reasoning: list[str] = []
        """Each reasoning segment, in order."""
        self.signatures: list[tuple[int, str]] = []
        """Each signature the provider gave the reasoning (``ReasoningSignature``), with how many
        reasoning segments came before it: each closes a thinking block."""
        self.tool_calls: list[ToolCall] = []
        """The whole tool calls, in index order (complete once generation has ended)."""
        self.call_positions: list[int] = []
        """The log position after each call's last event (what a reader needs to have it all)."""
        self.summary: StreamEnd | None = None
        """The stream's summary (finish reason, usage, model, error), set as its log closes."""

    def add(self, position: int, text: str) -> None:
        """Record one segment, whose token event is at ``position``."""
        self.positions.append(position)
        self.texts.append(text)

    def add_call(self, position: int, call: ToolCall) -> None:
        """Record a whole tool call whose last event ends before ``position``."""
        self.call_positions.append(position)
        self.tool_calls.append(call)

    def text(self, below: int | None = None) -> str:
        """Everything said, or only what the events before log position ``below`` carried."""
        if below is None:
            return "".join(self.texts)
        return "".join(self.texts[: bisect_left(self.positions, below)])

    def calls(self, below: int | None = None) -> tuple[ToolCall, ...]:
        """The whole tool calls, or only those a reader that got the events before ``below`` has."""
        if below is None:
            return tuple(self.tool_calls)
        return tuple(self.tool_calls[: bisect_right(self.call_positions, below)])

    def thinking_blocks(self) -> list[tuple[str, str]]:
        """The reasoning as (text, signature) blocks: one per signature, then what came after
        the last one (unsigned)."""
        blocks, start = [], 0
        for end, signature in self.signatures:
            blocks.append(("".join(self.reasoning[start:end]), signature))
            start = end
        if start < len(self.reasoning):
            blocks.append(("".join(self.reasoning[start:]), ""))
        return blocks

    def to_data(self) -> dict[str, Any]:
        """The record as JSON-able data (a shared store keeps it beside a stream's log)."""
        summary = self.summary
        return {
            "positions": self.positions,
            "texts": self.texts,
            "reasoning": self.reasoning,
            "signatures": self.signatures,
            "tool_calls": [dataclasses.asdict(call) for call in self.tool_calls],
            "call_positions": self.call_positions,
            "summary": None if summary is None else dataclasses.asdict(summary),
        }

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> StreamRecord:
        """The record ``to_data`` described."""
        record = cls()
        record.positions = list(data["positions"])
        record.texts = list(data["texts"])
        record.reasoning = list(data["reasoning"])
        # Absent from an older version's record.
        record.signatures = [(int(n), str(s)) for n, s in data.get("signatures", ())]
        record.tool_calls = [ToolCall(**call) for call in data["tool_calls"]]
        record.call_positions = list(data["call_positions"])
        summary = data.get("summary")
        if summary is not None:
            usage, error = summary.get("usage"), summary.get("error")
            # Only the fields this version knows: an instance of a newer one may have written it
            # (a rolling upgrade shares a Redis store).
            summary = {k: v for k, v in summary.items() if k in _SUMMARY_FIELDS}
            record.summary = StreamEnd(**{
                **summary,
                "usage": None if usage is None else Usage(**usage),
                "error": None if error is None else StreamFailure(**error),
                "tool_calls": tuple(ToolCall(**call) for call in summary["tool_calls"]),
            })  # fmt: skip
        return record
