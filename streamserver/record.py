"""What a stream said, kept beside its event log.

A ``StreamRecord`` holds each segment's text with the log position of its token event, and the
stream's ``StreamEnd`` once it ends. The consumers that need the words (the chat route's stored
reply, in-process generation, non-streamed completions) read the record, never a formatter's wire
output, so they work whatever formatter the stream has. A stream keeps one only when a consumer
asks (``StreamService.start(keep_record=True)``): text-only streams nobody reads back pay nothing.
"""

from __future__ import annotations

from bisect import bisect_left

from .types import StreamEnd


class StreamRecord:
    """The segments a stream emitted, in order, as two parallel lists, and its summary."""

    __slots__ = ("positions", "summary", "texts")

    def __init__(self) -> None:
        self.positions: list[int] = []
        """The log position of each segment's token event (the next event's, for a segment its
        formatter sent nothing for: it reaches a client no sooner than that one)."""
        self.texts: list[str] = []
        """Each segment's text, as the buffer released it."""
        self.summary: StreamEnd | None = None
        """The stream's summary (finish reason, usage, model, error), set as its log closes."""

    def add(self, position: int, text: str) -> None:
        """Record one segment, whose token event is at ``position``."""
        self.positions.append(position)
        self.texts.append(text)

    def text(self, below: int | None = None) -> str:
        """Everything said, or only what the events before log position ``below`` carried."""
        if below is None:
            return "".join(self.texts)
        return "".join(self.texts[: bisect_left(self.positions, below)])
