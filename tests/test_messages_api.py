"""``POST /v1/messages`` reads a Messages API request into the pipeline's words: what the
provider receives (the recording provider keeps it) is the same conversation, tools and
parameters in OpenAI's shapes, which every provider translates from; and the route is configured
like the openai one."""

from __future__ import annotations

import pytest
from conftest import base_config
from test_config import config_error
from test_request_messages import RECORDING

import streamserver
from streamserver.types import Message, ToolCall
from streamserver.web.keys import SERVICE

PIXEL = "iVBORw0KGgo="
WEATHER = {"name": "get_weather", "description": "Weather in a city.",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}  # fmt: skip


@pytest.fixture
async def recorded(serve):
    app = streamserver.create_app(base_config(**RECORDING))
    client = await serve(app=app)
    return client, app[SERVICE].providers["recording"]


async def post(client, **fields):
    body = {"model": "recorder", "max_tokens": 4096, **fields}
    return await client.http.post("/v1/messages", json=body)


async def test_blocks_tool_uses_and_results_reach_the_provider_in_order(recorded):
    client, provider = recorded
    messages = [
        {"role": "user", "content": [
            {"type": "text", "text": "What is this?", "cache_control": {"type": "ephemeral"}},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PIXEL}},
            {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
        ]},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "hm", "signature": "sig"},
            {"type": "thinking", "thinking": "unsigned: another provider's", "signature": ""},
            {"type": "redacted_thinking", "data": "opaque"},
            {"type": "text", "text": "Let me check."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18 °C", "is_error": False},
            {"type": "text", "text": "And tomorrow?"},
        ]},
    ]  # fmt: skip
    response = await post(client, system=[{"type": "text", "text": "Be brief."}],
                          messages=messages, tools=[WEATHER])  # fmt: skip

    assert response.status_code == 200, response.text
    [request] = provider.requests
    assert request.messages == (
        Message("system", ({"type": "text", "text": "Be brief."},)),
        Message("user", (
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PIXEL}"}},
            {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
        )),
        # Anthropic's signed thinking kept as it came (its provider sends it back), the unsigned
        # block left out.
        Message("assistant", (
            {"type": "thinking", "thinking": "hm", "signature": "sig"},
            {"type": "redacted_thinking", "data": "opaque"},
            {"type": "text", "text": "Let me check."},
        ), (ToolCall("toolu_1", "get_weather", '{"city": "Paris"}', 0),)),
        Message("tool", "18 °C", tool_call_id="toolu_1"),
        Message("user", ({"type": "text", "text": "And tomorrow?"},)),
    )  # fmt: skip
    assert request.tools == ({"type": "function", "function": {
        "name": "get_weather", "description": "Weather in a city.",
        "parameters": WEATHER["input_schema"]}},)  # fmt: skip


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"tool_choice": {"type": "any"}}, {"tool_choice": "required"}),
        ({"tool_choice": {"type": "tool", "name": "get_weather"}},
         {"tool_choice": {"type": "function", "function": {"name": "get_weather"}}}),
        ({"tool_choice": {"type": "auto", "disable_parallel_tool_use": True}},
         {"tool_choice": "auto", "parallel_tool_calls": False}),
        ({"stop_sequences": ["END"], "temperature": 0.5, "top_p": 0.9},
         {"sampling": {"stop": ["END"], "temperature": 0.5, "top_p": 0.9}}),
        ({"metadata": {"user_id": "u-1"}}, {"sampling": {"user": "u-1"}}),
        ({"thinking": {"type": "enabled", "budget_tokens": 1024}},
         {"sampling": {"reasoning_effort": "minimal"}}),
        ({"thinking": {"type": "enabled", "budget_tokens": 2048}},
         {"sampling": {"reasoning_effort": "low"}}),
        ({"thinking": {"type": "disabled"}}, {"sampling": {"reasoning_effort": "none"}}),
    ],
)  # fmt: skip
async def test_each_parameter_reaches_the_provider_in_its_chat_completions_name(
    recorded, fields, expected
):
    client, provider = recorded
    response = await post(
        client, messages=[{"role": "user", "content": "hi"}], tools=[WEATHER], **fields
    )

    assert response.status_code == 200, response.text
    [request] = provider.requests
    for name, value in expected.items():
        assert getattr(request, name) == value
    assert request.max_tokens == 4096


async def test_a_thinking_budget_at_max_tokens_is_refused_as_the_api_refuses_it(recorded):
    client, _ = recorded
    response = await post(
        client, max_tokens=2048, messages=[{"role": "user", "content": "hi"}],
        thinking={"type": "enabled", "budget_tokens": 2048},
    )  # fmt: skip

    assert response.status_code == 400
    assert response.json()["error"]["message"] == (
        "max_tokens: must be greater than thinking.budget_tokens"
    )


def test_an_anthropic_route_takes_only_its_formatter_and_post():
    error = config_error(
        base_config(routes={"/m": {"transport": "anthropic", "formatter": "events"}})
    )

    assert 'formatter = "anthropic" and methods = ["POST"]' in error


async def test_a_retry_with_the_same_idempotency_key_gets_the_same_message(recorded):
    client, provider = recorded
    body = {"model": "recorder", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}
    headers = {"Idempotency-Key": "retry-1"}
    first = await client.http.post("/v1/messages", json=body, headers=headers)
    again = await client.http.post("/v1/messages", json=body, headers=headers)

    assert first.status_code == again.status_code == 200
    assert first.json() == again.json()
    assert len(provider.requests) == 1


def test_an_openai_upstream_gets_no_thinking_block_of_anthropics():
    from streamserver.builtins.openai_provider import _message

    signed = {"type": "thinking", "thinking": "hm", "signature": "sig"}
    text = {"type": "text", "text": "Let me check."}
    image = {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}

    assert _message(Message("assistant", (signed, text)))["content"] == "Let me check."
    assert _message(Message("assistant", (signed, text, image)))["content"] == [text, image]
    assert _message(Message("user", (text, image)))["content"] == [text, image]  # untouched
