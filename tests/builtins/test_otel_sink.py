"""The ``otel`` sink as a collector sees it: real streams, their spans exported over OTLP/HTTP to a
real receiver (``fakes.otlp_receiver``, decoding the protobuf), and the ``traceparent`` the
``openai`` and ``anthropic`` providers send to the fake upstream."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
import websockets
from aiohttp.test_utils import TestServer
from conftest import FAST_SIMULATED, SCRIPTED, Client, ServeFactory, base_config, script, wait_until
from fakes.otlp_receiver import OtlpReceiver, ReceivedSpan, otlp_receiver

import streamserver
from streamserver import cli
from streamserver.devtools.fake_upstream import FakeUpstream

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
CLIENT_KIND = 3  # Span.SpanKind.SPAN_KIND_CLIENT
ERROR = 2  # Status.StatusCode.STATUS_CODE_ERROR


@pytest.fixture
async def receiver(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[OtlpReceiver, str]]:
    """A receiver, and a batch processor that exports within milliseconds (the SDK's variable)."""
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "10")
    async with otlp_receiver() as running:
        yield running


def otel_config(endpoint: str, **sections: Any) -> dict[str, Any]:
    """A test config with the ``memory`` and ``otel`` sinks (``endpoint``: the receiver's root)."""
    metrics = {
        "sinks": ["memory", "otel"],
        "otel": {"endpoint": endpoint, "service_name": "ss-test"},
    }
    return base_config(metrics=metrics, **sections)


async def spans(receiver: OtlpReceiver, count: int) -> list[ReceivedSpan]:
    """The first ``count`` spans the receiver got (waiting for the batch to arrive)."""
    await wait_until(lambda: len(receiver.spans) >= count, timeout=10)
    return receiver.spans[:count]


async def test_a_stream_is_one_client_span_with_the_genai_attributes(serve, receiver):
    otlp, url = receiver
    client = await serve(otel_config(url))
    response = await client.http.post(
        "/v1/chat/completions",
        json={"model": "simulated", "messages": [{"role": "user", "content": "hello"}]},
    )
    completion = response.json()

    [span] = await spans(otlp, 1)

    assert span.name == "chat simulated"
    assert span.kind == CLIENT_KIND
    assert span.parent_span_id == ""  # the request carried no traceparent: a new trace
    assert span.resource["service.name"] == "ss-test"
    assert span.status_code == 0
    attributes = span.attributes
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.provider.name"] == "simulated"
    assert attributes["gen_ai.request.model"] == "simulated"
    assert attributes["gen_ai.response.finish_reasons"] == [
        completion["choices"][0]["finish_reason"]
    ]
    assert attributes["gen_ai.usage.input_tokens"] == completion["usage"]["prompt_tokens"]
    assert attributes["gen_ai.usage.output_tokens"] == completion["usage"]["completion_tokens"]
    assert attributes["streamserver.outcome"] == "completed"
    assert attributes["streamserver.route"] == "/v1/chat/completions"
    assert (
        0
        <= attributes["gen_ai.response.time_to_first_chunk"]
        <= (span.end_ns - span.start_ns) / 1e9
    )
    assert "error.type" not in attributes


async def test_a_failed_stream_has_an_error_status_and_its_error_type(serve, receiver):
    otlp, url = receiver
    client = await serve(otel_config(url, **SCRIPTED))
    got = await client.sse(
        "/v1/stream", params={"prompt": script(["partial"], then="fail"), "model": "scripted"}
    )
    [error] = [
        data for event, data in zip(got.names(), got.json(), strict=True) if event == "error"
    ]

    [span] = await spans(otlp, 1)

    assert span.status_code == ERROR
    assert span.status_message == error["error"]
    assert span.attributes["error.type"] == error["code"]
    assert span.attributes["streamserver.outcome"] == "error"
    assert span.attributes["gen_ai.response.id"] == error["stream_id"]


async def test_a_cancelled_stream_is_not_an_error(serve, receiver):
    otlp, url = receiver
    client = await serve(otel_config(url, **SCRIPTED))
    params = {"prompt": script(["a"], then="hang"), "model": "scripted"}
    async with client.http.stream("GET", "/v1/stream", params=params) as response:
        stream_id = response.headers["X-Stream-ID"]
        deleted = await client.http.delete(f"/v1/streams/{stream_id}")
        await response.aread()
    assert deleted.status_code == 200

    [span] = await spans(otlp, 1)

    assert span.attributes["streamserver.outcome"] == "cancelled"
    assert span.status_code == 0
    assert "error.type" not in span.attributes


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_the_callers_trace_is_continued_and_passed_to_the_upstream(
    serve: ServeFactory,
    receiver: tuple[OtlpReceiver, str],
    upstream: tuple[FakeUpstream, str],
    monkeypatch: pytest.MonkeyPatch,
    provider: str,
):
    otlp, url = receiver
    fake, upstream_url = upstream
    monkeypatch.setenv("STREAMSERVER_TEST_ANTHROPIC_KEY", "sk-ant-test")
    providers = {
        "simulated": dict(FAST_SIMULATED),
        "openai": {"type": "openai", "base_url": upstream_url, "api_key_env": "",
                   "model": "fake-model", "max_retries": 0},
        "anthropic": {"type": "anthropic", "base_url": upstream_url.removesuffix("/v1"),
                      "api_key_env": "STREAMSERVER_TEST_ANTHROPIC_KEY", "model": "claude-fake",
                      "max_retries": 0},
    }  # fmt: skip
    client = await serve(otel_config(url, providers=providers))
    model = "fake-model" if provider == "openai" else "claude-fake"
    got = await client.sse(
        "/v1/stream",
        params={"prompt": "hello there", "model": model},
        headers={"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"},
    )
    assert got.names()[-1] == "stream_end"

    [span] = await spans(otlp, 1)

    assert (span.trace_id, span.parent_span_id) == (CALLER_TRACE, CALLER_SPAN)
    assert span.attributes["gen_ai.provider.name"] == provider
    [sent] = fake.requests
    assert sent.headers["traceparent"] == f"00-{CALLER_TRACE}-{span.span_id}-01"


async def test_a_websocket_streams_continue_the_trace_of_its_upgrade_request(serve, receiver):
    otlp, url = receiver
    client = await serve(otel_config(url))
    upgrade = {"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"}
    address = client.base_url.replace("http://", "ws://") + "/ws/stream"
    async with websockets.connect(address, additional_headers=upgrade) as socket:
        await socket.send(json.dumps({"prompt": "over a socket", "model": "echo"}))
        while json.loads(await socket.recv())["type"] not in ("done", "error"):
            pass

    [span] = await spans(otlp, 1)

    assert (span.trace_id, span.parent_span_id) == (CALLER_TRACE, CALLER_SPAN)
    assert span.attributes["streamserver.route"] == "/ws/stream"


async def test_an_unsampled_callers_stream_is_not_exported(serve, receiver):
    otlp, url = receiver
    client = await serve(otel_config(url))
    unsampled = {"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-00"}
    await client.sse("/v1/stream", params={"prompt": "not sampled"}, headers=unsampled)
    await client.sse("/v1/stream", params={"prompt": "sampled"})

    await spans(otlp, 1)  # the sampled stream ended after the unsampled one: its span is last

    assert [span.trace_id for span in otlp.spans] != [CALLER_TRACE]
    assert len(otlp.spans) == 1


async def test_an_invalid_traceparent_starts_a_new_trace(serve, receiver):
    otlp, url = receiver
    client = await serve(otel_config(url))
    await client.sse(
        "/v1/stream",
        params={"prompt": "hi"},
        headers={"traceparent": f"00-{'0' * 32}-{CALLER_SPAN}-01"},
    )

    [span] = await spans(otlp, 1)

    assert span.parent_span_id == ""
    assert span.trace_id != "0" * 32


async def test_export_headers_come_from_the_otel_environment_variable(serve, receiver, monkeypatch):
    otlp, url = receiver
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "authorization=Bearer collector-key")
    client = await serve(otel_config(url))
    await client.sse("/v1/stream", params={"prompt": "hi"})

    await spans(otlp, 1)

    assert otlp.headers[0]["authorization"] == "Bearer collector-key"


async def test_spans_still_queued_when_the_app_stops_are_exported(monkeypatch):
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "600000")  # only the flush at shutdown exports
    async with otlp_receiver() as (otlp, url):
        server = TestServer(streamserver.create_app(otel_config(url)), host="127.0.0.1")
        await server.start_server()
        client = Client(str(server.make_url("")).rstrip("/"))
        try:
            got = await client.sse("/v1/stream", params={"prompt": "hi"})
        finally:
            await client.close()
        assert otlp.spans == []

        await server.close()

        [span] = otlp.spans
        assert span.attributes["gen_ai.response.id"] == got.json()[0]["stream_id"]


async def test_no_tracing_sink_sends_no_traceparent_upstream(serve, upstream):
    fake, upstream_url = upstream
    fake_provider = {"type": "openai", "base_url": upstream_url, "api_key_env": "",
                     "model": "fake-model", "max_retries": 0}  # fmt: skip
    client = await serve(base_config(providers={"fake": fake_provider}))
    got = await client.sse(
        "/v1/stream",
        params={"prompt": "hi", "model": "fake-model"},
        headers={"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"},
    )
    assert got.names()[-1] == "stream_end"

    [sent] = fake.requests
    assert "traceparent" not in sent.headers


def test_the_sink_without_the_extra_installed_is_a_config_error(tmp_path, monkeypatch, capsys):
    exporter = "opentelemetry.exporter.otlp.proto.http.trace_exporter"
    monkeypatch.setitem(sys.modules, exporter, None)  # importing it raises ImportError
    config = tmp_path / "config.toml"
    config.write_text('[metrics]\nsinks = ["otel"]\n')

    status = cli.main(["check-config", str(config)])

    assert status == 2
    error = capsys.readouterr().err
    assert str(config) in error
    assert "metrics.otel" in error
    assert "pip install 'streamserver[otel]'" in error
