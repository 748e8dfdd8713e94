"""The ``otel`` metrics sink: one OpenTelemetry span per stream, exported over OTLP/HTTP.

An optional extra: ``pip install 'streamserver[otel]'``. Without it the sink type still exists, so
a config that names it fails with a config error that says what to install.

The span follows the GenAI semantic conventions (``gen_ai.*``). Its ids come from the stream's
``TraceContext`` (``trace_context.py``), chosen when the stream started, so the sink needs no live
span: it builds the finished span from the stream's summary once the stream has ended, on the
sinks' worker thread, and hands it to a ``BatchSpanProcessor``, whose own thread exports batches.
Nothing of this runs on the event loop or per token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlsplit

from ..errors import ConfigError
from ..hookspecs import Register, hookimpl
from ..schema import ABOVE_ZERO
from ..types import MetricsSink, StreamEnd, StreamStart
from ..version import __version__

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan

_FAILED = ("error", "limit", "shutdown")
"""Outcomes that are errors in the span's status (a cancel or a client gone is not)."""


@dataclass(frozen=True, slots=True)
class OtelOptions:
    """``[metrics.otel]`` options. Export headers (a backend's API key) come from the standard
    ``OTEL_EXPORTER_OTLP_TRACES_HEADERS`` or ``OTEL_EXPORTER_OTLP_HEADERS`` variables, never the
    file."""

    endpoint: str = "http://127.0.0.1:4318/v1/traces"
    """The collector's OTLP/HTTP traces URL; a URL with no path gets ``/v1/traces``."""
    service_name: str = "streamserver"
    """The ``service.name`` resource attribute of every span."""
    timeout_s: Annotated[float, ABOVE_ZERO] = 10.0
    """Longest wait for one export request."""


class OtelSink(MetricsSink):
    """Records every stream as a span (a client span of the GenAI conventions) and exports them in
    batches. Runs on the sinks' worker thread: building a span is not the event loop's work."""

    traces = True

    def __init__(self, options: OtelOptions) -> None:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import ReadableSpan
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
            from opentelemetry.sdk.util.instrumentation import InstrumentationScope
            from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags
        except ImportError:
            raise ConfigError(
                "",
                "an installed OpenTelemetry SDK: install it with pip install 'streamserver[otel]'",
            ) from None
        # The SDK is imported here, when the sink is configured, so the module (a default plugin)
        # loads without the extra: what stream_finished needs of it is kept on the instance.
        self._span = ReadableSpan
        self._context = SpanContext
        self._kind = SpanKind.CLIENT
        self._status = Status
        self._codes = StatusCode
        self._sampled = TraceFlags(TraceFlags.SAMPLED)
        self.resource = Resource.create({"service.name": options.service_name})
        self.scope = InstrumentationScope("streamserver", __version__)
        # Export headers None: the exporter reads OTEL_EXPORTER_OTLP_(TRACES_)HEADERS itself.
        exporter = OTLPSpanExporter(
            endpoint=traces_url(options.endpoint), timeout=options.timeout_s
        )
        self.processor = BatchSpanProcessor(exporter)

    def stream_finished(self, info: StreamStart, summary: StreamEnd) -> None:
        """Build the stream's finished span and queue it for export (unless the caller's trace
        is not sampled)."""
        trace = info.trace
        if trace is None or not trace.sampled:
            return
        trace_id = int(trace.trace_id, 16)
        context = self._context(trace_id, int(trace.span_id, 16), False, self._sampled)
        parent = None
        if trace.parent_span_id is not None:
            parent = self._context(trace_id, int(trace.parent_span_id, 16), True, self._sampled)
        start_ns = int(info.created * 1e9)
        failure = summary.error if summary.outcome in _FAILED else None
        status = (
            self._status(self._codes.UNSET)
            if failure is None
            else self._status(self._codes.ERROR, failure.message)
        )
        span: ReadableSpan = self._span(
            f"chat {info.model}",
            context=context,
            parent=parent,
            resource=self.resource,
            attributes=span_attributes(info, summary),
            kind=self._kind,
            status=status,
            start_time=start_ns,
            end_time=start_ns + int(summary.duration_s * 1e9),
            instrumentation_scope=self.scope,
        )
        self.processor.on_end(span)

    def close(self) -> None:
        """Export what is queued, then stop the exporter's thread."""
        self.processor.shutdown()  # type: ignore[no-untyped-call]  # untyped in the SDK


def span_attributes(info: StreamStart, summary: StreamEnd) -> dict[str, Any]:
    """A stream's span attributes: the GenAI conventions' names, then streamserver's own."""
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        # The provider's name in the config ([providers.<name>]): "openai" or "anthropic" there
        # gives the conventions' well-known values.
        "gen_ai.provider.name": info.provider,
        "gen_ai.system": info.provider,
        "gen_ai.request.model": info.model,
        "gen_ai.response.model": summary.model,
        "gen_ai.response.id": info.stream_id,
        "gen_ai.response.finish_reasons": (summary.finish_reason,),
        "streamserver.route": info.route,
        "streamserver.outcome": summary.outcome,
        "streamserver.tokens": summary.tokens,
    }
    if summary.ttft_s is not None:
        attributes["gen_ai.response.time_to_first_chunk"] = summary.ttft_s
    usage = summary.usage
    if usage is not None:
        attributes["gen_ai.usage.input_tokens"] = usage.prompt_tokens
        attributes["gen_ai.usage.output_tokens"] = usage.completion_tokens
        attributes["streamserver.usage.estimated"] = usage.estimated
    if summary.error is not None and summary.outcome in _FAILED:
        attributes["error.type"] = summary.error.code
    return attributes


def traces_url(endpoint: str) -> str:
    """``endpoint`` as the traces URL: a collector's root (no path) gets ``/v1/traces``, as the
    OTLP exporters do with ``OTEL_EXPORTER_OTLP_ENDPOINT``."""
    if urlsplit(endpoint).path in ("", "/"):
        return endpoint.rstrip("/") + "/v1/traces"
    return endpoint


@hookimpl
def register_metrics_sinks(register: Register) -> None:
    """The OpenTelemetry span sink."""
    register(
        "otel",
        OtelSink,
        options=OtelOptions,
        description="a span per stream over OTLP/HTTP (pip install 'streamserver[otel]')",
    )
