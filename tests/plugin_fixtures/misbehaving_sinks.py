"""Metrics sinks that misbehave, loaded by module name (``plugins.modules = ["misbehaving_sinks"]``).

- ``raising``: every method raises, on the sinks' worker thread (no ``inline``);
- ``raising-inline``: the same with ``inline = True``, so it raises on the event loop, inside the
  stream's own task;
- ``blocking``: every lifecycle call blocks the worker thread for ``block_s`` seconds, as a sink
  stuck on a slow network call would. ``release()`` ends the waits early, so a test's teardown
  need not sit them out.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from streamserver import hookimpl


class RaisingSink:
    """Raises in every method (``snapshot`` too, which ``/v1/stream/metrics`` calls)."""

    def __init__(self, options: object) -> None:
        pass

    def stream_started(self, info):
        raise RuntimeError("sink exploded in stream_started")

    def first_token(self, info, ttft_s):
        raise RuntimeError("sink exploded in first_token")

    def stream_finished(self, info, summary):
        raise RuntimeError("sink exploded in stream_finished")

    def request_rejected(self, route, status, code):
        raise RuntimeError("sink exploded in request_rejected")

    def stream_resumed(self, info):
        raise RuntimeError("sink exploded in stream_resumed")

    def snapshot(self):
        raise RuntimeError("sink exploded in snapshot")


class InlineRaisingSink(RaisingSink):
    """Raises on the event loop."""

    inline = True


@dataclass(frozen=True, slots=True)
class BlockingOptions:
    """``[metrics.blocking]`` options."""

    block_s: float = 5.0
    """How long each lifecycle call blocks."""


class BlockingSink:
    """Each lifecycle call blocks its thread for ``block_s`` (or until ``release()``)."""

    def __init__(self, options: BlockingOptions) -> None:
        self.block_s = options.block_s
        self.calls: list[str] = []
        self._released = threading.Event()

    def release(self) -> None:
        """End the current wait and every later one at once."""
        self._released.set()

    def _block(self, method: str) -> None:
        self.calls.append(method)
        self._released.wait(self.block_s)  # a time.sleep(block_s) that a test can cut short

    def stream_started(self, info):
        self._block("stream_started")

    def first_token(self, info, ttft_s):
        self._block("first_token")

    def stream_finished(self, info, summary):
        self._block("stream_finished")

    def request_rejected(self, route, status, code):
        self._block("request_rejected")

    def snapshot(self):
        return {"blocking_sink_calls": len(self.calls)}


@hookimpl
def register_metrics_sinks(register):
    register("raising", RaisingSink, description="raises in every lifecycle call")
    register("raising-inline", InlineRaisingSink, description="raises on the event loop")
    register("blocking", BlockingSink, options=BlockingOptions, description="blocks its thread")
