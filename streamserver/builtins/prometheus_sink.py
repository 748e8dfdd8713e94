"""The ``prometheus`` metrics sink and ``GET /metrics`` (the ``prometheus-client`` library).

Each sink owns a ``CollectorRegistry`` of its own, never the library's global one: two apps in one
process keep separate figures. Upstream error responses (including those the SDKs retried) are read
from the providers at scrape time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from ..hookspecs import Register, RouteSpec, Runtime, hookimpl
from ..types import MetricsSink, StreamEnd, StreamStart

if TYPE_CHECKING:
    from ..config import Config

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_DURATION_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
_STREAM = ("route", "provider", "model")


@dataclass(frozen=True, slots=True)
class _Children:
    """One stream label set's metrics, looked up once."""

    started: Counter
    tokens: Counter
    characters: Counter
    ttft: Histogram
    duration: Histogram
    finished: dict[str, Counter]


@dataclass(frozen=True, slots=True)
class PrometheusOptions:
    """``[metrics.prometheus]`` options."""

    path: str = "/metrics"
    """Where the exposition is served."""


class PrometheusSink(MetricsSink):
    """Stream lifecycle as Prometheus counters, a gauge and histograms."""

    inline = True  # prometheus-client updates are lock-protected counter increments

    def __init__(self, options: PrometheusOptions) -> None:
        self.path = options.path
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.started = Counter(
            "streamserver_streams_started", "Streams started", _STREAM, registry=r
        )
        self.finished = Counter(
            "streamserver_streams_finished",
            "Streams finished, by outcome",
            (*_STREAM, "outcome"),
            registry=r,
        )
        self.active = Gauge("streamserver_active_streams", "Streams generating now", registry=r)
        self.tokens = Counter(
            "streamserver_tokens", "Tokens (provider deltas: text, reasoning, tool-call pieces) generated",
            _STREAM, registry=r,
        )  # fmt: skip
        self.delivered = Counter(
            "streamserver_tokens_delivered", "Tokens whose events reached a client (each once)",
            _STREAM, registry=r,
        )  # fmt: skip
        self.replayed = Counter(
            "streamserver_tokens_replayed", "Tokens sent again on a resume or to a second reader",
            _STREAM, registry=r,
        )  # fmt: skip
        self.usage = Counter(
            "streamserver_usage_tokens", "Usage by kind (prompt, completion), as the upstream "
            "reported it or estimated (source) when it did not", ("provider", "model", "kind", "source"),
            registry=r,
        )  # fmt: skip
        self.tool_calls = Counter(
            "streamserver_tool_calls", "Tool calls the models made", ("provider", "model"), registry=r
        )  # fmt: skip
        self.characters = Counter(
            "streamserver_characters", "Characters delivered", _STREAM, registry=r
        )
        self.ttft = Histogram(
            "streamserver_time_to_first_token_seconds", "Time to first token", _STREAM,
            buckets=_LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.duration = Histogram(
            "streamserver_stream_duration_seconds",
            "Stream duration",
            _STREAM,
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.errors = Counter("streamserver_stream_errors", "Streams that failed, by code", ("provider", "code"),
                              registry=r)  # fmt: skip
        self.resumes = Counter(
            "streamserver_resumes", "Readers that resumed a stream", ("route",), registry=r
        )
        self.rejected = Counter(
            "streamserver_requests_rejected", "Requests refused before a stream, by reason",
            ("route", "status", "code"), registry=r,
        )  # fmt: skip
        self.upstream = Counter(
            "streamserver_upstream_error_responses", "Upstream HTTP error responses (retried ones included)",
            ("provider", "status"), registry=r,
        )  # fmt: skip
        self._upstream_seen: dict[tuple[str, int], int] = {}
        self._children: dict[tuple[str, str, str], _Children] = {}
        """Labelled metrics per (route, provider, model): ``labels()`` takes a lock and builds
        keys on every call, which was a third of a short stream's cost in the sinks."""
        self._labelled: dict[tuple[Any, ...], Any] = {}
        """The other labelled children a stream touches (usage, delivered), by metric and labels."""

    def _child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, looked up once."""
        key = (id(metric), *labels)
        child = self._labelled.get(key)
        if child is None:
            child = self._labelled[key] = metric.labels(*labels)
        return child

    def _of(self, info: StreamStart) -> _Children:
        key = (info.route, info.provider, info.model)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = _Children(
                self.started.labels(*key),
                self.tokens.labels(*key),
                self.characters.labels(*key),
                self.ttft.labels(*key),
                self.duration.labels(*key),
                {},
            )
        return children

    def stream_started(self, info: StreamStart) -> None:
        """Count it and add it to the active gauge."""
        self._of(info).started.inc()
        self.active.inc()

    def first_token(self, info: StreamStart, ttft_s: float) -> None:
        """Observe the time to first token."""
        self._of(info).ttft.observe(ttft_s)

    def stream_finished(self, info: StreamStart, summary: StreamEnd) -> None:
        """Count the outcome, the tokens and characters, and observe the duration."""
        children = self._of(info)
        self.active.dec()
        finished = children.finished.get(summary.outcome)
        if finished is None:
            key = (info.route, info.provider, info.model, summary.outcome)
            finished = children.finished[summary.outcome] = self.finished.labels(*key)
        finished.inc()
        children.tokens.inc(summary.tokens)
        children.characters.inc(summary.characters)
        usage = summary.usage
        if usage is not None:
            source = "estimated" if usage.estimated else "upstream"
            for kind, count in (("prompt", usage.prompt_tokens),
                                ("completion", usage.completion_tokens)):  # fmt: skip
                self._child(self.usage, info.provider, summary.model, kind, source).inc(count)
        if summary.tool_calls:
            self.tool_calls.labels(info.provider, summary.model).inc(len(summary.tool_calls))
        children.duration.observe(summary.duration_s)
        if summary.error is not None:
            self.errors.labels(info.provider, summary.error.code).inc()

    def stream_resumed(self, info: StreamStart) -> None:
        """Count a resume."""
        self.resumes.labels(info.route).inc()

    def tokens_delivered(self, info: StreamStart, delivered: int, replayed: int) -> None:
        """Count tokens delivered and replayed."""
        key = (info.route, info.provider, info.model)
        if delivered:
            self._child(self.delivered, *key).inc(delivered)
        if replayed:
            self._child(self.replayed, *key).inc(replayed)

    def request_rejected(self, route: str, status: int, code: str) -> None:
        """Count a refusal by route, status and code."""
        self.rejected.labels(route, str(status), code).inc()

    def render(self, upstream_errors: Mapping[str, Mapping[int, int]]) -> bytes:
        """The text exposition; ``upstream_errors`` are the providers' error-response counts."""
        for provider, by_status in upstream_errors.items():
            for status, total in by_status.items():
                seen = self._upstream_seen.get((provider, status), 0)
                if total > seen:
                    self.upstream.labels(provider, str(status)).inc(total - seen)
                    self._upstream_seen[(provider, status)] = total
        return generate_latest(self.registry)


@hookimpl
def register_metrics_sinks(register: Register) -> None:
    """Prometheus exposition of the stream lifecycle."""
    register(
        "prometheus",
        PrometheusSink,
        options=PrometheusOptions,
        description="Prometheus text at /metrics",
    )


@hookimpl
def register_routes(config: Config) -> list[RouteSpec]:
    """``GET /metrics`` when the ``prometheus`` sink is on (behind auth like every route: add the
    path to ``auth.public_paths`` for a scraper without a key)."""
    part = next((p for p in config.sinks if p.name == "prometheus"), None)
    if part is None:
        return []
    return [RouteSpec("GET", part.options.path, metrics, "Prometheus exposition", "text/plain")]


async def metrics(request: web.Request, runtime: Runtime) -> web.Response:
    """The exposition of the app's ``prometheus`` sink, with the providers' error counts."""
    sink = next(s for s in runtime.metrics_sinks if isinstance(s, PrometheusSink))
    upstream = {
        # optional: Provider.error_responses
        name: dict(getattr(p, "error_responses", {}))
        for name, p in runtime.providers.items()
    }
    return web.Response(body=sink.render(upstream), headers={"Content-Type": CONTENT_TYPE_LATEST})
