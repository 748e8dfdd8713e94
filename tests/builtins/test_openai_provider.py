"""The openai provider against a real fake upstream: every fault, as a client of streamserver sees it."""

from __future__ import annotations

import asyncio
import json
import socket

import pytest
from conftest import upstream_config, wait_until

import streamserver
from streamserver.devtools.fake_upstream import Plan
from streamserver.web.keys import SERVICE


def contents(got) -> str:
    return "".join(json.loads(e.data)["content"] for e in got.events if e.event == "token")


async def stream(serve, base_url, prompt="Hello there upstream", **provider):
    client = await serve(upstream_config(base_url, **provider))
    return await client.sse("/v1/stream", params={"prompt": prompt, "model": "fake-model"})


async def test_relays_the_upstream_text_exactly(serve, upstream):
    _fake, url = upstream
    got = await stream(serve, url, prompt="Line one\nline two 🙂 data: x")

    assert contents(got) == "Line one\nline two 🙂 data: x"
    assert got.names()[-1] == "stream_end"


async def test_half_an_emoji_from_a_broken_upstream_is_relayed_not_an_error(serve, upstream):
    fake, url = upstream
    fake.queue(Plan(tokens=["a ", "\ud83d", " b"]))  # sent as the JSON escape "\\ud83d"
    got = await stream(serve, url)

    assert got.names()[-1] == "stream_end"
    assert contents(got) == "a \ud83d b"  # the same lone surrogate, through its JSON escape


async def test_asks_for_usage_and_reports_it(serve, upstream):
    fake, url = upstream
    client = await serve(upstream_config(url))
    got = await client.sse(
        "/v1/stream", params={"prompt": "count these words", "model": "fake-model"}
    )
    end = json.loads(got.events[-1].data)
    metrics = (await client.http.get("/v1/stream/metrics")).json()

    assert fake.requests[0].body["stream_options"] == {"include_usage": True}
    assert fake.requests[0].body["stream"] is True
    assert end["finish_reason"] == "stop"
    assert end["tokens_generated"] == 3
    # the upstream's own usage chunk (the fake counts 5 prompt tokens) reaches the metrics
    assert metrics["usage"] == {"prompt_tokens": 5, "completion_tokens": 3}


async def test_max_tokens_reaches_the_upstream_and_the_finish_reason_comes_back(serve, upstream):
    fake, url = upstream
    client = await serve(upstream_config(url))
    got = await client.sse("/v1/stream", params={"prompt": "one two three four", "model": "fake-model",
                                                 "max_tokens": "2"})  # fmt: skip

    assert fake.requests[0].body["max_tokens"] == 2
    assert contents(got) == "one two"
    assert json.loads(got.events[-1].data)["finish_reason"] == "length"


async def test_rate_limit_before_the_first_token_is_retried_honouring_retry_after(serve, upstream):
    fake, url = upstream
    fake.queue(Plan(fault="rate_limit", retry_after_s=0.3))
    got = await stream(serve, url, prompt="after a wait")

    assert contents(got) == "after a wait"
    assert len(fake.requests) == 2
    assert fake.requests[1].at - fake.requests[0].at >= 0.25


async def test_server_error_is_retried_then_succeeds(serve, upstream):
    fake, url = upstream
    fake.queue(Plan(fault="server_error"))
    got = await stream(serve, url, prompt="second time lucky")

    assert contents(got) == "second time lucky"
    assert len(fake.requests) == 2


async def test_retries_are_bounded_by_max_retries(serve, upstream):
    fake, url = upstream
    fake.queue(*[Plan(fault="server_error")] * 5)
    got = await stream(serve, url, max_retries=1)
    error = json.loads(got.events[1].data)

    assert got.names() == ["stream_start", "error", "stream_end"]
    assert error["code"] == "upstream_error"
    assert len(fake.requests) == 2


async def test_a_drop_before_the_first_token_is_retried_and_the_answer_arrives_whole(
    serve, upstream
):
    fake, url = upstream
    fake.queue(Plan(fault="drop", after_tokens=0))  # the role chunk goes out, then the socket drops
    got = await stream(serve, url, prompt="one two three")

    assert got.names()[-1] == "stream_end"
    assert "error" not in got.names()
    assert contents(got) == "one two three"
    assert len(fake.requests) == 2


async def test_a_drop_before_the_first_token_is_retried_at_most_max_retries_times(serve, upstream):
    fake, url = upstream
    fake.queue(*[Plan(fault="drop", after_tokens=0)] * 5)
    got = await stream(serve, url, max_retries=1)

    assert got.names() == ["stream_start", "error", "stream_end"]
    assert json.loads(got.events[1].data)["code"] in (
        "upstream_disconnected",
        "upstream_incomplete",
    )
    assert len(fake.requests) == 2


async def test_a_refused_connection_is_upstream_unavailable_not_a_timeout(serve):
    with socket.socket() as probe:  # a port nothing listens on: the connection is refused
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    got = await stream(serve, f"http://127.0.0.1:{closed_port}/v1", max_retries=0)
    error = json.loads(got.events[1].data)

    assert got.names() == ["stream_start", "error", "stream_end"]
    assert error["code"] == "upstream_unavailable"


async def test_a_connection_dropped_mid_stream_ends_with_an_error_event(serve, upstream):
    fake, url = upstream
    fake.queue(Plan(fault="drop", after_tokens=2))
    got = await stream(serve, url, prompt="one two three four")

    assert contents(got) == "one two"
    assert [e.event for e in got.events][-2:] == ["error", "stream_end"]
    assert json.loads(got.events[-2].data)["code"] in (
        "upstream_disconnected",
        "upstream_incomplete",
    )
    assert len(fake.requests) == 1  # no retry after the first token


async def test_a_stall_longer_than_the_timeout_ends_the_stream(serve, upstream):
    fake, url = upstream
    fake.queue(Plan(fault="stall", after_tokens=1, stall_s=5))
    got = await stream(serve, url, prompt="one two", timeout_s=0.3)

    assert contents(got) == "one"
    assert json.loads(got.events[-2].data)["code"] == "upstream_timeout"


async def test_a_malformed_chunk_ends_the_stream_with_an_error(serve, upstream):
    fake, url = upstream
    fake.queue(Plan(fault="malformed", after_tokens=1))
    got = await stream(serve, url, prompt="one two")

    assert contents(got) == "one"
    assert json.loads(got.events[-2].data)["code"] == "upstream_malformed"


async def test_an_error_event_mid_stream_is_passed_on_with_its_message(serve, upstream):
    fake, url = upstream
    fake.queue(Plan(fault="error_event", after_tokens=1))
    got = await stream(serve, url, prompt="one two")
    error = json.loads(got.events[-2].data)

    assert contents(got) == "one"
    assert error["code"] == "upstream_error"
    assert "overloaded" in error["error"]


async def test_a_refused_api_key_is_an_auth_error_without_the_key(serve, upstream, monkeypatch):
    fake, url = upstream
    fake.api_key = "the-right-key"
    monkeypatch.setenv("TEST_UPSTREAM_KEY", "sk-wrong-secret-123")
    got = await stream(serve, url, api_key_env="TEST_UPSTREAM_KEY")
    raw = " ".join(e.data for e in got.events)

    assert json.loads(got.events[1].data)["code"] == "upstream_auth"
    assert "sk-wrong-secret-123" not in raw
    assert fake.requests[0].headers["Authorization"] == "Bearer sk-wrong-secret-123"


async def test_a_missing_api_key_variable_is_a_config_error(serve, upstream, monkeypatch):
    _fake, url = upstream
    monkeypatch.delenv("TEST_ABSENT_KEY", raising=False)
    app = streamserver.create_app(upstream_config(url, api_key_env="TEST_ABSENT_KEY"))

    with pytest.raises(
        streamserver.ConfigError, match=r"providers\.fake\.api_key_env.*TEST_ABSENT_KEY"
    ):
        await serve(app=app)


async def test_client_disconnect_closes_the_upstream_connection_within_500ms(serve, upstream):
    fake, url = upstream
    fake.queue(Plan(tokens=[f"t{i} " for i in range(200)], gap_s=0.02))
    client = await serve(upstream_config(url))

    async with client.http.stream(
        "GET", "/v1/stream", params={"prompt": "x", "model": "fake-model"}
    ) as response:
        async for line in response.aiter_lines():
            if line.startswith("event: token"):
                break
    dropped = asyncio.get_running_loop().time()
    await wait_until(lambda: fake.streams and fake.streams[0].closed_at is not None, timeout=2)

    record = fake.streams[0]
    assert record.client_closed
    assert record.closed_at - dropped < 0.5
    assert record.tokens_sent < 200


async def test_extra_headers_and_sampling_defaults_are_sent(serve, upstream):
    fake, url = upstream
    await stream(serve, url, headers={"X-Team": "blue"}, temperature=0.2, extra_body={"top_k": 5})

    request = fake.requests[0]
    assert request.headers["X-Team"] == "blue"
    assert request.body["temperature"] == 0.2
    assert request.body["top_k"] == 5


async def test_a_request_model_is_routed_to_the_instance_that_offers_it(serve, upstream):
    fake, url = upstream
    client = await serve(upstream_config(url, models=["fake-model-mini"]))
    routed = await client.sse(
        "/v1/stream", params={"prompt": "hi there", "model": "fake-model-mini"}
    )
    local = await client.sse("/v1/stream", params={"prompt": "hi there", "model": "echo"})

    assert fake.requests[0].body["model"] == "fake-model-mini"
    assert json.loads(routed.events[0].data)["model"] == "fake-model-mini"
    assert contents(local) == "hi there"
    assert len(fake.requests) == 1


async def test_models_endpoint_lists_every_provider_model(serve, upstream):
    _fake, url = upstream
    client = await serve(upstream_config(url, models=["fake-model-mini"]))
    body = (await client.http.get("/v1/models")).json()

    assert body["object"] == "list"
    assert {m["id"]: m["owned_by"] for m in body["data"]} == {
        "simulated": "simulated",
        "echo": "simulated",
        "sim-tools": "simulated",
        "sim-reasoner": "simulated",
        "fake-model": "fake",
        "fake-model-mini": "fake",
    }


async def test_metrics_count_upstream_failures(serve, upstream):
    fake, url = upstream
    fake.queue(Plan(fault="drop", after_tokens=1))
    app = streamserver.create_app(upstream_config(url))
    client = await serve(app=app)
    await client.sse("/v1/stream", params={"prompt": "one two", "model": "fake-model"})

    await wait_until(lambda: app[SERVICE].streams.active == 0)
    metrics = (await client.http.get("/v1/stream/metrics")).json()
    assert metrics["outcomes"] == {"error": 1}
