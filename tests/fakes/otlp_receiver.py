"""A real OTLP/HTTP trace receiver: an aiohttp server on 127.0.0.1 that accepts ``POST /v1/traces``
and decodes each export with ``opentelemetry-proto``'s ``ExportTraceServiceRequest``, as a
collector does. Tests read the spans it received, not the exporter's in-memory view."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer
from multidict import CIMultiDict
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as the receiver decoded it (ids in lowercase hex, as ``traceparent`` has them)."""

    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    """Empty for a root span."""
    kind: int
    """``Span.SpanKind`` (3: client)."""
    attributes: dict[str, Any]
    status_code: int
    """``Status.StatusCode`` (0: unset, 2: error)."""
    status_message: str
    start_ns: int
    end_ns: int
    resource: dict[str, Any]


class OtlpReceiver:
    """The spans and the request headers of every export received."""

    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self.headers: list[CIMultiDict[str]] = []

    def app(self) -> web.Application:
        """The receiver's application."""
        app = web.Application()
        app.router.add_post("/v1/traces", self._traces)
        return app

    async def _traces(self, request: web.Request) -> web.Response:
        if request.content_type != "application/x-protobuf":
            return web.Response(status=415)
        export = ExportTraceServiceRequest.FromString(await request.read())
        self.headers.append(CIMultiDict(request.headers))
        for resource_spans in export.resource_spans:
            resource = _attributes(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.spans.append(
                        ReceivedSpan(
                            span.name,
                            span.trace_id.hex(),
                            span.span_id.hex(),
                            span.parent_span_id.hex(),
                            span.kind,
                            _attributes(span.attributes),
                            span.status.code,
                            span.status.message,
                            span.start_time_unix_nano,
                            span.end_time_unix_nano,
                            resource,
                        )
                    )
        body = ExportTraceServiceResponse().SerializeToString()
        return web.Response(body=body, content_type="application/x-protobuf")


@asynccontextmanager
async def otlp_receiver() -> AsyncIterator[tuple[OtlpReceiver, str]]:
    """A running receiver and its root URL (``http://127.0.0.1:<port>``)."""
    receiver = OtlpReceiver()
    server = TestServer(receiver.app(), host="127.0.0.1")
    await server.start_server()
    try:
        yield receiver, str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


def _attributes(pairs: Any) -> dict[str, Any]:
    return {pair.key: _value(pair.value) for pair in pairs}


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    return getattr(value, kind) if kind is not None else None
