"""How a stream's events become the items of its log, once, in the stream's message form.

- ``"sse"``: Server-Sent Events bytes, each with ``id: <stream_id>:<seq>``, written to any number
  of SSE readers (and replayed on resume) as they are;
- ``"json"``: the JSON text messages themselves (WebSocket text frames, or read in-process).

The formatter is made for the same form (``Formatter`` factories receive it), so the runtime
decides the form once, from the route, and no transport is consulted.
"""

from __future__ import annotations

import re
from typing import Protocol

from .types import Event, MessageForm

_LINE_BREAK = re.compile(r"\r\n|\r|\n")


class Encoder(Protocol):
    """One stream's encoding of events into log items (bytes for SSE, text for JSON messages)."""

    def segment(self, seq: int, data: str) -> bytes | str:
        """Encode the data of one token event."""
        ...

    def event(self, seq: int, event: Event) -> bytes | str:
        """Encode any other event."""
        ...


def encoder_for(
    form: MessageForm, stream_id: str, token_event: str | None, retry_ms: int
) -> Encoder:
    """The encoder of one stream in ``form``."""
    if form == "sse":
        return SSEEncoder(stream_id, token_event, retry_ms)
    return JSONMessageEncoder()


class SSEEncoder:
    """Encodes one stream's events as SSE bytes with ``id: <stream_id>:<seq>``."""

    __slots__ = ("_id_prefix", "_retry", "_token_event", "_token_head")

    def __init__(self, stream_id: str, token_event: str | None, retry_ms: int) -> None:
        self._id_prefix = f"id: {stream_id}:"
        self._token_event = token_event
        self._token_head = f"\nevent: {token_event}\ndata: " if token_event else "\ndata: "
        self._retry = retry_ms

    def segment(self, seq: int, data: str) -> bytes:
        """One token event. Hot path: a single f-string and encode when ``data`` is one line."""
        if seq == 0 or "\n" in data or "\r" in data:
            return self.event(seq, Event(self._token_event, data))
        # backslashreplace: a lone surrogate (half an emoji from a broken upstream) becomes the
        # JSON escape it came from instead of an exception; valid text is untouched.
        return f"{self._id_prefix}{seq}{self._token_head}{data}\n\n".encode(
            "utf-8", "backslashreplace"
        )

    def event(self, seq: int, event: Event) -> bytes:
        """Any event; multi-line data becomes several ``data:`` lines, as the spec rebuilds it.
        One line of data (a JSON chunk: a tool call's fragment, a reasoning delta) and no
        ``retry:`` is one f-string, as ``segment`` writes a token: the same bytes."""
        data, name = event.data, event.name
        if seq and "\n" not in data and "\r" not in data:
            head = f"\nevent: {name}\ndata: " if name else "\ndata: "
            return f"{self._id_prefix}{seq}{head}{data}\n\n".encode("utf-8", "backslashreplace")
        lines = [f"{self._id_prefix}{seq}"]
        if name:
            lines.append(f"event: {name}")
        lines.extend(f"data: {line}" for line in _LINE_BREAK.split(data))
        if seq == 0 and self._retry:
            lines.append(f"retry: {self._retry}")
        lines.append("\n")
        return "\n".join(lines).encode("utf-8", "backslashreplace")


class JSONMessageEncoder:
    """JSON message log items are the messages themselves (a WebSocket sends each as a text frame)."""

    __slots__ = ()

    def segment(self, seq: int, data: str) -> str:
        """A token message as the formatter wrote it."""
        return data

    def event(self, seq: int, event: Event) -> str:
        """Any other message as the formatter wrote it."""
        return event.data
