"""Built-in metrics sinks: ``memory`` keeps counters for ``GET /v1/stream/metrics``; ``log`` writes
one JSON line per finished stream. (``prometheus`` lives in ``prometheus_sink.py``.)"""

from __future__ import annotations

import json
import logging
from collections import Counter, deque
from dataclasses import dataclass
from typing import Annotated

from ..hookspecs import Register, hookimpl
from ..schema import AT_LEAST_ONE
from ..types import MetricsSink, StreamEnd, StreamStart


@dataclass(frozen=True, slots=True)
class MemoryOptions:
    """``[metrics.memory]`` options."""

    window: Annotated[int, AT_LEAST_ONE] = 1000
    """How many recent streams the latency percentiles are computed over."""


class MemorySink(MetricsSink):
    """Counts in process memory: tokens, outcomes, rejections, and recent latencies."""

    inline = True  # plain counter updates: safe on the event loop, and exact when read

    def __init__(self, options: MemoryOptions) -> None:
        self.total_tokens = 0
        self.total_segments = 0
        self.total_characters = 0
        self.usage_prompt_tokens = 0
        self.usage_completion_tokens = 0
        self.usage_estimated_streams = 0
        self.tokens_delivered_total = 0
        self.tokens_replayed_total = 0
        self.tool_calls = 0
        self.reasoning_tokens = 0
        self.outcomes: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()
        self.ttft_s: deque[float] = deque(maxlen=options.window)
        self.duration_s: deque[float] = deque(maxlen=options.window)

    def first_token(self, info: StreamStart, ttft_s: float) -> None:
        """Remember the time to first token."""
        self.ttft_s.append(ttft_s)

    def stream_finished(self, info: StreamStart, summary: StreamEnd) -> None:
        """Add the stream's totals and outcome."""
        self.total_tokens += summary.tokens
        self.total_segments += summary.segments
        self.total_characters += summary.characters
        if summary.usage is not None:
            self.usage_prompt_tokens += summary.usage.prompt_tokens
            self.usage_completion_tokens += summary.usage.completion_tokens
            self.usage_estimated_streams += summary.usage.estimated
        self.tool_calls += len(summary.tool_calls)
        self.reasoning_tokens += summary.reasoning_tokens
        self.outcomes[summary.outcome] += 1
        self.duration_s.append(summary.duration_s)

    def tokens_delivered(self, info: StreamStart, delivered: int, replayed: int) -> None:
        """Add what reached clients."""
        self.tokens_delivered_total += delivered
        self.tokens_replayed_total += replayed

    def request_rejected(self, route: str, status: int, code: str) -> None:
        """Count the refusal by its code."""
        self.rejected[code] += 1

    def snapshot(self) -> dict[str, object]:
        """Totals, outcomes, rejections, and TTFT / duration percentiles in milliseconds."""
        return {
            "total_tokens": self.total_tokens,
            "total_segments": self.total_segments,
            "total_characters": self.total_characters,
            "tokens_delivered": self.tokens_delivered_total,
            "tokens_replayed": self.tokens_replayed_total,
            "reasoning_tokens": self.reasoning_tokens,
            "tool_calls": self.tool_calls,
            "usage": {
                "prompt_tokens": self.usage_prompt_tokens,
                "completion_tokens": self.usage_completion_tokens,
            },
            "usage_estimated_streams": self.usage_estimated_streams,
            "outcomes": dict(self.outcomes),
            "rejected": dict(self.rejected),
            "ttft_ms": _percentiles(self.ttft_s),
            "duration_ms": _percentiles(self.duration_s),
        }


def _percentiles(values: deque[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 3)

    return {"p50": at(0.5), "p95": at(0.95), "p99": at(0.99), "max": round(ordered[-1] * 1000, 3)}


@dataclass(frozen=True, slots=True)
class LogOptions:
    """``[metrics.log]`` options."""

    logger: str = "streamserver.streams"
    """The logger the lines go to (configure its handler like any Python logger)."""


class LogSink(MetricsSink):
    """One structured JSON line per finished stream: id, route, provider, model, key id (never the
    key), tokens, time to first token, duration, outcome. Runs on the sinks' worker thread, so a
    slow log handler never delays a stream."""

    def __init__(self, options: LogOptions) -> None:
        self.log = logging.getLogger(options.logger)

    def stream_finished(self, info: StreamStart, summary: StreamEnd) -> None:
        """Log the line."""
        record = {
            "event": "stream_finished",
            "stream_id": info.stream_id,
            "route": info.route,
            "provider": info.provider,
            "model": summary.model,
            "key_id": info.key_id,
            "outcome": summary.outcome,
            "finish_reason": summary.finish_reason,
            "tokens": summary.tokens,
            "characters": summary.characters,
            "usage": None
            if summary.usage is None
            else {
                "prompt_tokens": summary.usage.prompt_tokens,
                "completion_tokens": summary.usage.completion_tokens,
                "estimated": summary.usage.estimated,
            },
            "reasoning_tokens": summary.reasoning_tokens,
            "tool_calls": len(summary.tool_calls),
            "ttft_ms": None if summary.ttft_s is None else round(summary.ttft_s * 1000, 3),
            "duration_ms": round(summary.duration_s * 1000, 3),
            "error": None if summary.error is None else summary.error.code,
        }
        self.log.info(json.dumps(record))


@hookimpl
def register_metrics_sinks(register: Register) -> None:
    """The in-memory and log sinks."""
    register(
        "memory",
        MemorySink,
        options=MemoryOptions,
        description="counters behind /v1/stream/metrics",
    )
    register(
        "log", LogSink, options=LogOptions, description="one JSON log line per finished stream"
    )
