"""What one stream runs with (``StreamPlan``, resolved once before generation starts), how each
reason to cancel it is reported, and the epilogue a route may add (``pipeline.py`` runs it)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeAlias

from .encoding import Encoder
from .streams import Stream
from .types import (
    Buffer,
    Event,
    Formatter,
    GenerationRequest,
    Outcome,
    Provider,
    StreamEnd,
    StreamFailure,
    StreamStart,
)

Epilogue: TypeAlias = Callable[[Stream, StreamEnd], Awaitable[Sequence[Event]]]
"""Runs in the stream's task once generation has ended, before its log closes; the events it
returns are the stream's last (the chat route stores the reply, then sends ``done`` with the
conversation's message count). Being in the log, they reach a reader that resumes later too."""


@dataclass(frozen=True, slots=True)
class StreamPlan:
    """Everything a stream needs, resolved once before generation starts."""

    info: StreamStart
    provider: Provider
    request: GenerationRequest
    buffer: Buffer
    new_buffer: Callable[[], Buffer]
    """Another instance of the stream's buffer strategy: the reasoning's, made when it starts."""
    max_delay_s: float
    max_chars: int
    formatter: Formatter
    encoder: Encoder
    max_tokens: int
    max_stream_s: float = 0.0
    """End the stream with ``limit_exceeded`` after this long (0 = never)."""
    upstream_idle_s: float = 0.0
    """End the stream with ``upstream_idle`` when the provider is silent this long (0 = never)."""
    epilogue: Epilogue | None = None


OUTCOME_OF_CANCEL: dict[str, Outcome] = {
    "cancelled": "cancelled",
    "client_gone": "client_gone",
    "shutdown": "shutdown",
    "limit": "limit",
    "upstream_idle": "error",
}
"""The outcome sinks see for each reason a stream was cancelled."""


def failure_of(reason: str, stream_id: str, plan: StreamPlan) -> StreamFailure | None:
    """What the client is told when the server (not the client) ended the stream."""
    if reason == "shutdown":
        return StreamFailure(
            "server_shutdown",
            "the server is shutting down; retry or resume the stream",
            stream_id,
            True,
        )
    if reason == "limit":
        return StreamFailure(
            "limit_exceeded",
            f"the stream ran past the server's limit of {plan.max_stream_s:g} s",
            stream_id,
        )
    if reason == "upstream_idle":
        return StreamFailure(
            "upstream_idle",
            f"the provider sent nothing for {plan.upstream_idle_s:g} s",
            stream_id,
            True,
        )
    return None
