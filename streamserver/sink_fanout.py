"""Metrics fan-out: every lifecycle call goes to every metrics sink, and none can hurt a stream.

A sink that raises is logged and skipped. A sink that blocks cannot slow streams either: sinks run
on a worker thread of their own unless they declare ``inline = True`` (the built-ins do: they only
update counters, and inline calls keep ``/v1/stream/metrics`` exact the moment a stream ends). The
worker's queue is bounded; when a stuck sink lets it fill, calls are dropped and counted.
Every sink method is optional (see ``types.MetricsSink``): each sink's methods are looked up once,
when the app starts, and one it does not define is never called.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence
from typing import Any

from .types import SINK_METHODS, MetricsSink, StreamEnd, StreamStart

log = logging.getLogger("streamserver.sinks")

_STOP = object()
QUEUE_LIMIT = 10_000


class SinkFanout:
    """Calls every sink that defines a method; worker-thread sinks through a bounded queue."""

    def __init__(self, sinks: Sequence[MetricsSink]) -> None:
        self.sinks = tuple(sinks)
        inline = [s for s in self.sinks if getattr(s, "inline", False)]
        threaded = [s for s in self.sinks if not getattr(s, "inline", False)]
        # Bound methods by lifecycle call, resolved once: a call is then a loop over what exists.
        self._inline = _methods(inline)
        self._threaded = _methods(threaded)
        self.dropped = 0
        self._queue: queue.Queue[Any] = queue.Queue(QUEUE_LIMIT)
        self._worker: threading.Thread | None = None
        if threaded:
            self._worker = threading.Thread(
                target=self._work, name="streamserver-sinks", daemon=True
            )
            self._worker.start()

    def _each(self, method: str, *args: object) -> None:
        for function in self._inline[method]:
            _call(function, method, args)
        if self._threaded[method]:
            try:
                self._queue.put_nowait((method, args))
            except queue.Full:
                self.dropped += 1
                if self.dropped == 1 or self.dropped % 1000 == 0:
                    log.warning("a metrics sink is not keeping up: %d calls dropped", self.dropped)

    def _work(self) -> None:
        while (item := self._queue.get()) is not _STOP:
            method, args = item
            for function in self._threaded[method]:
                _call(function, method, args)

    def close(self, timeout_s: float = 2.0) -> None:
        """Let the worker finish what is queued (up to ``timeout_s``), stop it, then close every
        sink that has a ``close`` (after its last lifecycle call, so it may flush)."""
        if self._worker is not None:
            try:
                self._queue.put(_STOP, timeout=timeout_s)
            except queue.Full:
                return
            self._worker.join(timeout_s)
        for sink in self.sinks:
            closing = getattr(sink, "close", None)  # optional: MetricsSink.close
            if closing is not None:
                _call(closing, "close", ())

    def stream_started(self, info: StreamStart) -> None:
        """Tell every sink a stream started."""
        self._each("stream_started", info)

    def first_token(self, info: StreamStart, ttft_s: float) -> None:
        """Tell every sink a stream's first token arrived."""
        self._each("first_token", info, ttft_s)

    def stream_finished(self, info: StreamStart, summary: StreamEnd) -> None:
        """Tell every sink a stream ended."""
        self._each("stream_finished", info, summary)

    def request_rejected(self, route: str, status: int, code: str) -> None:
        """Tell every sink a request was refused."""
        self._each("request_rejected", route, status, code)

    def stream_resumed(self, info: StreamStart) -> None:
        """Tell every sink a reader reattached past a stream's start."""
        self._each("stream_resumed", info)

    def tokens_delivered(self, info: StreamStart, delivered: int, replayed: int) -> None:
        """Tell every sink tokens reached a client, newly or again."""
        self._each("tokens_delivered", info, delivered, replayed)


def _methods(sinks: Sequence[MetricsSink]) -> dict[str, tuple[Callable[..., object], ...]]:
    found: dict[str, tuple[Callable[..., object], ...]] = {}
    for method in SINK_METHODS:
        functions = (getattr(sink, method, None) for sink in sinks)
        found[method] = tuple(f for f in functions if f is not None)
    return found


def _call(function: Callable[..., object], method: str, args: tuple[object, ...]) -> None:
    try:
        function(*args)
    except Exception:
        owner = type(getattr(function, "__self__", function)).__name__
        log.exception("metrics sink %s failed in %s", owner, method)
