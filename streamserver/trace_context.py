"""W3C Trace Context for streams: where a stream's span sits in a distributed trace.

A stream continues the trace of the request that started it (its ``traceparent`` header) and
passes its own span on to the upstream request, so a tracing backend shows caller, streamserver
and upstream as one trace. The ids are chosen here, when the stream starts, rather than by a
tracing SDK: the provider needs the span's id before generation begins, and a sink records the
span only once the stream has ended (off the event loop), from the ids and the stream's summary.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_NO_TRACE = "0" * 32
_NO_SPAN = "0" * 16


@dataclass(frozen=True, slots=True)
class TraceContext:
    """A stream's place in a trace: its trace, its own span, and the caller's span if any."""

    trace_id: str
    """32 lowercase hex digits."""
    span_id: str
    """The stream's span: 16 lowercase hex digits."""
    parent_span_id: str | None = None
    """The caller's span, from its ``traceparent``; ``None``: the stream began the trace."""
    sampled: bool = True
    """The caller's sampling decision (a new trace is sampled): unsampled spans are not exported."""

    @property
    def traceparent(self) -> str:
        """The ``traceparent`` header that makes the stream's span the parent (for the upstream)."""
        return f"00-{self.trace_id}-{self.span_id}-{'01' if self.sampled else '00'}"


def stream_trace(traceparent: str | None) -> TraceContext:
    """The trace context of a new stream: a child of the caller's span when ``traceparent`` is a
    valid header, else the root of a new trace (the W3C rule: an invalid header is ignored)."""
    span_id = secrets.token_hex(8)
    match = _TRACEPARENT.fullmatch(traceparent.strip()) if traceparent else None
    if match is not None:
        version, trace_id, parent_id, flags, rest = match.groups()
        # Version 00 has exactly four fields; a later version may add some (read the four known).
        known_shape = version != "ff" and (version != "00" or rest is None)
        if known_shape and trace_id != _NO_TRACE and parent_id != _NO_SPAN:
            return TraceContext(trace_id, span_id, parent_id, bool(int(flags, 16) & 1))
    return TraceContext(secrets.token_hex(16), span_id)
