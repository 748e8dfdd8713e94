"""Metrics fan-out: every lifecycle call goes to every metrics sink, and none can hurt a stream.

A sink that raises is logged and skipped. A sink that blocks cannot slow streams either: sinks run
on a worker thread of their own unless they declare ``inline = True`` (the built-ins do: they only
update counters, and inline calls keep ``/v1/stream/metrics`` exact the moment a stream ends). The
worker's queue is bounded; when a stuck sink lets it fill, calls are dropped and counted.
Methods a sink does not define are simply not called (``stream_resumed`` is optional).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Sequence
from typing import Any

from .types import MetricsSink, StreamEnd, StreamStart

log = logging.getLogger("streamserver.sinks")

_STOP = object()
QUEUE_LIMIT = 10_000


class SinkFanout:
    """Calls every sink that defines a method; worker-thread sinks through a bounded queue."""

    def __init__(self, sinks: Sequence[MetricsSink]) -> None:
        self.sinks = tuple(sinks)
        self.inline = tuple(s for s in self.sinks if getattr(s, "inline", False))
        self.threaded = tuple(s for s in self.sinks if not getattr(s, "inline", False))
        self.dropped = 0
        self._queue: queue.Queue[Any] = queue.Queue(QUEUE_LIMIT)
        self._worker: threading.Thread | None = None
        if self.threaded:
            self._worker = threading.Thread(
                target=self._work, name="streamserver-sinks", daemon=True
            )
            self._worker.start()

    def _each(self, method: str, *args: object) -> None:
        for sink in self.inline:
            _call(sink, method, args)
        if self.threaded:
            try:
                self._queue.put_nowait((method, args))
            except queue.Full:
                self.dropped += 1
                if self.dropped == 1 or self.dropped % 1000 == 0:
                    log.warning("a metrics sink is not keeping up: %d calls dropped", self.dropped)

    def _work(self) -> None:
        while (item := self._queue.get()) is not _STOP:
            method, args = item
            for sink in self.threaded:
                _call(sink, method, args)

    def close(self, timeout_s: float = 2.0) -> None:
        """Let the worker finish what is queued (up to ``timeout_s``), then stop it."""
        if self._worker is not None:
            try:
                self._queue.put(_STOP, timeout=timeout_s)
            except queue.Full:
                return
            self._worker.join(timeout_s)

    def stream_started(self, info: StreamStart) -> None:
        """See ``MetricsSink.stream_started``."""
        self._each("stream_started", info)

    def first_token(self, info: StreamStart, ttft_s: float) -> None:
        """See ``MetricsSink.first_token``."""
        self._each("first_token", info, ttft_s)

    def stream_finished(self, info: StreamStart, summary: StreamEnd) -> None:
        """See ``MetricsSink.stream_finished``."""
        self._each("stream_finished", info, summary)

    def request_rejected(self, route: str, status: int, code: str) -> None:
        """See ``MetricsSink.request_rejected``."""
        self._each("request_rejected", route, status, code)

    def stream_resumed(self, info: StreamStart) -> None:
        """A reader reattached to a stream with ``Last-Event-ID`` (optional for sinks)."""
        self._each("stream_resumed", info)


def _call(sink: object, method: str, args: tuple[object, ...]) -> None:
    function = getattr(sink, method, None)
    if function is None:
        return
    try:
        function(*args)
    except Exception:
        log.exception("metrics sink %s failed in %s", type(sink).__name__, method)
