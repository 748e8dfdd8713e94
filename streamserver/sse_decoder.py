"""An incremental Server-Sent Events decoder, by the spec's parsing rules.

Feed it bytes as they arrive; it returns whole events. Lines end with CRLF, LF or CR (even when a CR
and its LF arrive in different chunks); ``data`` lines are joined with LF; comments are skipped;
``id``, ``event`` and ``retry`` behave as in the HTML standard's EventSource. Used by the ``openai``
provider to read upstream streams without building an SDK model object per chunk, and by the client.
"""

from __future__ import annotations

from typing import NamedTuple


class SSEEvent(NamedTuple):
    """One dispatched event (a named tuple: built once per upstream token, it must be cheap)."""

    data: str
    event: str = "message"
    id: str | None = None
    retry: int | None = None


class SSEDecoder:
    """Incremental decoder: ``feed(chunk)`` returns the events completed by that chunk."""

    __slots__ = ("_data", "_event", "_last_id", "_pending", "_retry", "_skip_lf", "_started")

    def __init__(self) -> None:
        self._pending = b""
        self._skip_lf = False
        self._started = False
        self._data: list[str] = []
        self._event = ""
        self._last_id: str | None = None
        self._retry: int | None = None

    @property
    def last_event_id(self) -> str | None:
        """The last ``id`` seen (what a reconnect sends as ``Last-Event-ID``)."""
        return self._last_id

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Decode a chunk of the stream; returns the events it completed."""
        if self._skip_lf and chunk[:1] == b"\n":
            chunk = chunk[1:]
        self._skip_lf = False
        buffer = self._pending + chunk
        if b"\r" in buffer:
            if buffer.endswith(b"\r"):
                self._skip_lf = True  # a CRLF may be split across chunks
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = buffer.split(b"\n")
        self._pending = lines.pop()
        events: list[SSEEvent] = []
        data = self._data
        for raw in lines:
            # Fast paths for what upstreams send almost exclusively: "data: ..." and blank lines.
            if raw[:6] == b"data: " and self._started:
                data.append(raw[6:].decode("utf-8", "replace"))
            elif not raw and self._started:
                event = self._dispatch()
                if event is not None:
                    events.append(event)
                    data = self._data
            else:
                event = self._line(raw.decode("utf-8", "replace"))
                if event is not None:
                    events.append(event)
                    data = self._data
        return events

    def _line(self, line: str) -> SSEEvent | None:
        if not self._started:
            self._started = True
            line = line.removeprefix("\ufeff")
        if not line:
            return self._dispatch()
        if line[0] == ":":
            return None
        name, colon, value = line.partition(":")
        if colon and value[:1] == " ":
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self._last_id = value
        elif name == "retry" and value.isdigit():
            self._retry = int(value)
        return None

    def _dispatch(self) -> SSEEvent | None:
        data = self._data
        if not data:
            self._event = ""
            return None
        event = SSEEvent(
            data[0] if len(data) == 1 else "\n".join(data),
            self._event or "message",
            self._last_id,
            self._retry,
        )
        self._data = []
        self._event = ""
        return event
