"""Example plugin: a metrics sink that warns about streams whose first token came late.

Enable it with ``[metrics] sinks = ["memory", "slow_first_token"]`` and set the threshold in its
own section, which the core validates against ``SlowFirstTokenOptions``::

    [metrics.slow_first_token]
    threshold_ms = 2000

A sink sees lifecycle calls only (never one per token) and must not block: this one logs a line
and counts, and its count shows up in ``GET /v1/stream/metrics``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Annotated

from streamserver import hookimpl
from streamserver.schema import AT_LEAST_ZERO
from streamserver.types import MetricsSink

log = logging.getLogger("streamserver.slow_first_token")


@dataclass(frozen=True, slots=True)
class SlowFirstTokenOptions:
    threshold_ms: Annotated[float, AT_LEAST_ZERO] = 2000.0


class SlowFirstTokenSink(MetricsSink):
    """Logs a warning, and counts, when a stream's time to first token passes the threshold.

    It runs on the sinks' worker thread (``MetricsSink.inline`` is False by default), so even a slow log handler
    could never delay a stream. Subclassing ``MetricsSink`` gives the lifecycle calls it does not override as no-ops.
    """

    def __init__(self, options: SlowFirstTokenOptions) -> None:
        self.threshold_s = options.threshold_ms / 1000
        self.slow = 0

    def first_token(self, info, ttft_s):
        if ttft_s > self.threshold_s:
            self.slow += 1
            log.warning(
                "slow first token: stream %s (%s/%s on %s) took %.0f ms",
                info.stream_id, info.provider, info.model, info.route, ttft_s * 1000,
            )  # fmt: skip

    def snapshot(self):
        return {"slow_first_tokens": self.slow}


@hookimpl
def register_metrics_sinks(register):
    register("slow_first_token", SlowFirstTokenSink, options=SlowFirstTokenOptions)
