"""The anthropic provider against the fake upstream's Messages API, through the real anthropic SDK."""

from __future__ import annotations

import json
import sys

import pytest
from conftest import FAST_SIMULATED, base_config

import streamserver
from streamserver.devtools.fake_upstream import Plan


def anthropic_config(base_url: str, **options):
    claude = {"type": "anthropic", "base_url": base_url.removesuffix("/v1"), "model": "claude-test",
              "max_retries": 2, "timeout_s": 5, **options}  # fmt: skip
    return base_config(providers={"simulated": dict(FAST_SIMULATED), "claude": claude})


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-secret")


def contents(got) -> str:
    return "".join(json.loads(e.data)["content"] for e in got.events if e.event == "token")


async def test_relays_text_and_maps_the_stop_reason(serve, upstream):
    fake, url = upstream
    client = await serve(anthropic_config(url))
    got = await client.sse(
        "/v1/stream", params={"prompt": "Hi Claude, 🙂\nbye", "model": "claude-test"}
    )

    assert contents(got) == "Hi Claude, 🙂\nbye"
    assert json.loads(got.events[-1].data)["finish_reason"] == "stop"
    assert fake.requests[0].path == "/v1/messages"
    headers = fake.requests[0].headers
    assert "sk-ant-test-secret" in (
        headers.get("x-api-key"),
        headers.get("Authorization", "").removeprefix("Bearer "),
    )


async def test_system_messages_go_to_the_system_parameter(serve, upstream):
    fake, url = upstream
    client = await serve(anthropic_config(url))
    messages = [{"role": "system", "content": "be kind"}, {"role": "user", "content": "hello"}]
    await client.sse(
        "/v1/stream", method="POST", json_body={"messages": messages, "model": "claude-test"}
    )

    body = fake.requests[0].body
    assert body["system"] == "be kind"
    assert body["messages"] == [{"role": "user", "content": "hello"}]
    assert body["max_tokens"] == 1024


async def test_max_tokens_maps_to_length(serve, upstream):
    _fake, url = upstream
    client = await serve(anthropic_config(url))
    got = await client.sse(
        "/v1/stream", params={"prompt": "one two three", "model": "claude-test", "max_tokens": "2"}
    )

    assert contents(got) == "one two"
    assert json.loads(got.events[-1].data)["finish_reason"] == "length"


async def test_rate_limit_is_retried(serve, upstream):
    fake, url = upstream
    fake.queue(Plan(fault="rate_limit", retry_after_s=0.1))
    client = await serve(anthropic_config(url))
    got = await client.sse("/v1/stream", params={"prompt": "patience", "model": "claude-test"})

    assert contents(got) == "patience"
    assert len(fake.requests) == 2


async def test_an_error_event_mid_stream_becomes_an_error_event(serve, upstream):
    fake, url = upstream
    fake.queue(Plan(fault="error_event", after_tokens=1))
    client = await serve(anthropic_config(url))
    got = await client.sse("/v1/stream", params={"prompt": "one two", "model": "claude-test"})
    error = json.loads(got.events[-2].data)

    assert contents(got) == "one"
    assert error["code"] == "upstream_error"
    assert "Overloaded" in error["error"]


async def test_a_drop_before_the_first_token_is_retried_and_the_answer_arrives_whole(
    serve, upstream
):
    fake, url = upstream
    fake.queue(Plan(fault="drop", after_tokens=0))  # message_start goes out, then the socket drops
    client = await serve(anthropic_config(url))
    got = await client.sse("/v1/stream", params={"prompt": "one two", "model": "claude-test"})

    assert "error" not in got.names()
    assert contents(got) == "one two"
    assert len(fake.requests) == 2


async def test_a_dropped_connection_ends_with_an_error_event(serve, upstream):
    fake, url = upstream
    fake.queue(Plan(fault="drop", after_tokens=1))
    client = await serve(anthropic_config(url))
    got = await client.sse("/v1/stream", params={"prompt": "one two", "model": "claude-test"})

    assert contents(got) == "one"
    assert json.loads(got.events[-2].data)["code"] in (
        "upstream_disconnected",
        "upstream_incomplete",
    )


async def test_without_the_extra_the_config_error_says_what_to_install(
    serve, upstream, monkeypatch
):
    _fake, url = upstream
    monkeypatch.setitem(sys.modules, "anthropic", None)  # as if the extra were not installed
    app = streamserver.create_app(anthropic_config(url))

    with pytest.raises(
        streamserver.ConfigError, match=r"providers\.claude\.type.*streamserver\[anthropic\]"
    ):
        await serve(app=app)
