"""A stream's tool calls while their pieces arrive, and whole once generation ends.

The pipeline hands each ``ToolCallDelta`` to ``ToolCalls.add`` and writes the events it returns
(the formatter's optional ``tool_call_start`` and ``tool_call_arguments``) at once: a call's
pieces are never buffered or delayed. ``ToolCalls.finish`` joins each call, in index order, with
the formatter's ``tool_call_end`` events. A stream without calls never makes one.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from .types import Event, Formatter, ToolCall, ToolCallDelta

_NONE: tuple[Event, ...] = ()


class _OpenCall:
    """A tool call while its pieces arrive."""

    __slots__ = ("arguments", "id", "name")

    def __init__(self, call_id: str, name: str) -> None:
        self.id = call_id
        self.name = name
        self.arguments: list[str] = []


class ToolCalls:
    """The calls of one stream, by index."""

    __slots__ = ("_calls", "_end", "_fragment", "_start", "_stream_id")

    def __init__(self, stream_id: str, formatter: Formatter) -> None:
        self._stream_id = stream_id
        self._calls: dict[int, _OpenCall] = {}
        # The formatter's optional members, read once: one without them carries text only.
        self._start = getattr(formatter, "tool_call_start", None)
        self._fragment = getattr(formatter, "tool_call_arguments", None)
        self._end = getattr(formatter, "tool_call_end", None)

    def add(self, delta: ToolCallDelta) -> Sequence[Event]:
        """Take one piece; the events that say it, to write now."""
        call = self._calls.get(delta.index)
        if call is not None and not delta.name:  # a fragment of an open call: once per fragment
            if not delta.arguments:
                return _NONE
            call.arguments.append(delta.arguments)
            fragment = self._fragment
            return _NONE if fragment is None else fragment(delta.index, delta.arguments)
        events: Sequence[Event] = _NONE
        if call is None:
            call_id = delta.id or f"call_{self._stream_id}_{delta.index}"
            call = self._calls[delta.index] = _OpenCall(call_id, delta.name or "")
            if self._start is not None:
                events = self._start(delta.index, call_id, call.name)
        elif delta.name:
            call.name += delta.name  # a name streamed in pieces (rare): the whole call has it all
        if delta.arguments:
            call.arguments.append(delta.arguments)
            if self._fragment is not None:
                events = [*events, *self._fragment(delta.index, delta.arguments)]
        return events

    def finish(self) -> Iterator[tuple[ToolCall, Sequence[Event]]]:
        """Each call whole, in index order, with the events that close it."""
        for index, open_call in sorted(self._calls.items()):
            call = ToolCall(open_call.id, open_call.name, "".join(open_call.arguments), index)
            yield call, (self._end(call) if self._end is not None else _NONE)
