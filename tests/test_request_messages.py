"""A request's ``messages``: every role, string or list content (parts passed on untouched), an
assistant's tool calls, tool results, the keys real clients echo back, and every refusal a 400
``invalid_messages`` naming the message and the key. Checked on ``POST /v1/stream`` against the
recording provider, which keeps the ``GenerationRequest`` it was sent."""

from __future__ import annotations

import json

import pytest
from conftest import FAST_SIMULATED, base_config

import streamserver
from streamserver.types import Message, ToolCall
from streamserver.web.keys import SERVICE

RECORDING = {
    "plugins": {"modules": ["recording_provider"]},
    "providers": {"simulated": dict(FAST_SIMULATED), "recording": {}},
}


@pytest.fixture
async def recorded(serve):
    """A client of a server with the recording provider, and that provider."""
    app = streamserver.create_app(base_config(**RECORDING))
    client = await serve(app=app)
    return client, app[SERVICE].providers["recording"]


async def post(client, messages, **fields):
    return await client.http.post(
        "/v1/stream", json={"messages": messages, "model": "recorder", **fields}
    )


CALL = {"id": "call_1", "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}  # fmt: skip
PARTS = [
    {"type": "text", "text": "What is in this picture?"},
    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K", "detail": "low"}},
    {"type": "input_audio", "input_audio": {"data": "UklGR", "format": "wav"}},
    {"type": "file", "file": {"file_id": "file-abc", "filename": "a.pdf"}},
    {"type": "x-vendor-thing", "anything": [1, {"nested": True}], "cache_control": None},
]


async def test_every_role_reaches_the_provider_as_sent(recorded):
    client, provider = recorded
    messages = [
        {"role": "developer", "content": "Be terse."},
        {"role": "system", "content": [{"type": "text", "text": "Use metric units."}]},
        {"role": "user", "content": PARTS, "name": "ann"},
        {"role": "assistant", "content": None, "tool_calls": [CALL, {**CALL, "id": "call_2"}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "18 C"}]},
        {"role": "assistant", "content": ""},
        {"role": "user", "content": "thanks"},
    ]

    response = await post(client, messages)
    await response.aread()

    assert response.status_code == 200
    assert provider.requests[-1].messages == (
        Message("system", "Be terse."),
        Message("system", ({"type": "text", "text": "Use metric units."},)),
        Message("user", tuple(PARTS)),
        Message("assistant", "", (ToolCall("call_1", "get_weather", '{"city": "Paris"}', 0),
                                  ToolCall("call_2", "get_weather", '{"city": "Paris"}', 1))),
        Message("tool", "sunny", tool_call_id="call_1"),
        Message("tool", ({"type": "text", "text": "18 C"},), tool_call_id="call_2"),
        Message("assistant", ""),
        Message("user", "thanks"),
    )  # fmt: skip


async def test_an_assistant_message_as_the_openai_sdk_dumps_it_is_accepted(recorded):
    # ChatCompletionMessage.model_dump() of a reply with tool calls (captured from openai 3.x).
    dumped = {"content": None, "refusal": None, "role": "assistant", "annotations": None,
              "audio": None, "function_call": None, "tool_calls": [
                  {"id": "call_1", "function": {"arguments": "{}", "name": "f"}, "type": "function"}]}  # fmt: skip
    plain = {**dumped, "content": "hi", "tool_calls": None}
    client, provider = recorded
    messages = [{"role": "user", "content": "x"}, plain, dumped,
                {"role": "tool", "tool_call_id": "call_1", "content": "ok"}]  # fmt: skip

    response = await post(client, messages)
    await response.aread()

    assert response.status_code == 200
    assert provider.requests[-1].messages[1:3] == (
        Message("assistant", "hi"),
        Message("assistant", "", (ToolCall("call_1", "f", "{}", 0),)),
    )


async def test_the_prompt_limit_counts_text_tool_call_arguments_and_tool_results(serve):
    client = await serve(base_config(limits={"max_prompt_chars": 50}, **RECORDING))
    arguments = json.dumps({"city": "x" * 40})
    call = {**CALL, "function": {"name": "f", "arguments": arguments}}
    calls = [{"role": "user", "content": "weather?"}, {"role": "assistant", "tool_calls": [call]}]
    results = [{"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": "y" * 51}]}]  # fmt: skip

    too_many_arguments = await post(client, calls)
    too_long_a_result = await post(client, results)
    picture = {"type": "image_url", "image_url": {"url": "z" * 80}}
    image = await post(client, [{"role": "user", "content": [picture]}])
    await image.aread()

    assert too_many_arguments.status_code == too_long_a_result.status_code == 413
    assert too_many_arguments.json()["error"]["code"] == "prompt_too_large"
    assert image.status_code == 200  # a part that is not text is not prompt text


REFUSED = [
    pytest.param(
        {"role": "user", "content": "x", "temperature": 1},
        "messages[0].temperature",
        id="unknown-key",
    ),
    pytest.param(
        {"role": "function", "content": "x", "name": "f"}, "messages[0].role", id="function-role"
    ),
    pytest.param({"content": "x"}, "messages[0].role", id="no-role"),
    pytest.param({"role": ["user"], "content": "x"}, "messages[0].role", id="role-not-a-string"),
    pytest.param("hello", "messages[0] must be an object", id="not-an-object"),
    pytest.param({"role": "user"}, "messages[0].content is required", id="no-content"),
    pytest.param(
        {"role": "user", "content": None}, "messages[0].content is required", id="null-content"
    ),
    pytest.param({"role": "user", "content": []}, "messages[0].content must be", id="empty-parts"),
    pytest.param(
        {"role": "user", "content": 5}, "messages[0].content must be", id="number-content"
    ),
    pytest.param(
        {"role": "user", "content": [{"text": "x"}]},
        "messages[0].content[0]",
        id="part-without-type",
    ),
    pytest.param(
        {"role": "user", "content": [{"type": ""}]}, "messages[0].content[0]", id="part-empty-type"
    ),
    pytest.param({"role": "user", "content": ["x"]}, "messages[0].content[0]", id="part-a-string"),
    pytest.param(
        {"role": "user", "content": [{"type": "text"}]},
        "messages[0].content[0].text",
        id="text-part-without-text",
    ),
    pytest.param(
        {"role": "user", "content": [{"type": "text", "text": 3}]},
        "messages[0].content[0].text",
        id="text-part-number",
    ),
    pytest.param({"role": "assistant"}, "(or tool_calls)", id="assistant-nothing"),
    pytest.param(
        {"role": "assistant", "content": None, "tool_calls": []},
        "messages[0].content",
        id="assistant-no-calls",
    ),
    pytest.param(
        {"role": "assistant", "content": "x", "refusal": "no"},
        "messages[0].refusal must be null",
        id="refusal",
    ),
    pytest.param(
        {"role": "assistant", "content": "x", "audio": {"id": "a"}},
        "messages[0].audio must be null",
        id="audio",
    ),
    pytest.param(
        {"role": "assistant", "content": "x", "function_call": {"name": "f", "arguments": "{}"}},
        "messages[0].function_call must be null",
        id="legacy-function-call",
    ),
    pytest.param(
        {"role": "assistant", "tool_calls": {"id": "c"}},
        "messages[0].tool_calls must be a list",
        id="calls-not-a-list",
    ),
    pytest.param(
        {"role": "assistant", "tool_calls": [{**CALL, "type": "custom"}]},
        "messages[0].tool_calls[0]",
        id="custom-call",
    ),
    pytest.param(
        {"role": "assistant", "tool_calls": [{**CALL, "id": ""}]},
        "messages[0].tool_calls[0]",
        id="call-without-id",
    ),
    pytest.param(
        {"role": "assistant", "tool_calls": [{**CALL, "extra": 0}]},
        "messages[0].tool_calls[0]",
        id="call-extra-key",
    ),
    pytest.param(
        {"role": "assistant", "tool_calls": [{**CALL, "function": {"name": "f", "arguments": {}}}]},
        "messages[0].tool_calls[0]",
        id="arguments-not-text",
    ),
    pytest.param(
        {
            "role": "assistant",
            "tool_calls": [{**CALL, "function": {"name": None, "arguments": "{}"}}],
        },
        "messages[0].tool_calls[0]",
        id="call-without-name",
    ),
    pytest.param(
        {"role": "user", "content": "x", "tool_calls": [CALL]},
        "messages[0].tool_calls is not a key of a message with role 'user'",
        id="user-calls",
    ),
    pytest.param(
        {"role": "user", "content": "x", "tool_call_id": "c"},
        "messages[0].tool_call_id is not a key",
        id="user-call-id",
    ),
    pytest.param(
        {"role": "tool", "content": "x"}, "messages[0].tool_call_id must be", id="tool-without-id"
    ),
    pytest.param(
        {"role": "tool", "content": "x", "tool_call_id": 7},
        "messages[0].tool_call_id must be",
        id="tool-id-number",
    ),
    pytest.param(
        {"role": "tool", "tool_call_id": "c"},
        "messages[0].content is required",
        id="tool-without-content",
    ),
    pytest.param(
        {"role": "tool", "content": "x", "tool_call_id": "c", "refusal": None},
        "messages[0].refusal is not a key",
        id="tool-refusal-key",
    ),
    pytest.param(
        {"role": "user", "content": "x", "name": 5},
        "messages[0].name must be a string",
        id="name-number",
    ),
]


@pytest.mark.parametrize(("message", "says"), REFUSED)
async def test_a_wrong_message_is_a_400_invalid_messages_naming_it(recorded, message, says):
    client, provider = recorded

    response = await post(client, [message])

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_messages"
    assert says in response.json()["error"]["message"]
    assert provider.requests == []


async def test_the_error_names_the_index_of_the_wrong_message(recorded):
    client, _ = recorded

    response = await post(
        client, [{"role": "user", "content": "ok"}, {"role": "user", "content": "x", "x": 1}]
    )

    assert "messages[1].x" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("message", "where"),
    [
        (
            {"role": "user", "content": [{"type": "text", "text": "half \ud83d"}]},
            "messages[0].content[0].text",
        ),
        (
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "\udc00"}}]},
            "messages[0].content[0]",
        ),
        (
            {
                "role": "assistant",
                "tool_calls": [{**CALL, "function": {"name": "f", "arguments": '"\ud800"'}}],
            },
            "messages[0].tool_calls[0].function.arguments",
        ),
        ({"role": "tool", "tool_call_id": "\ud800", "content": "x"}, "messages[0].tool_call_id"),
    ],
)
async def test_half_an_emoji_anywhere_in_a_message_is_a_400_invalid_text(recorded, message, where):
    client, _ = recorded

    response = await client.http.post(
        "/v1/stream",
        content=json.dumps({"messages": [message], "model": "recorder"}),
        headers={"Content-Type": "application/json"},
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_text"
    assert where in response.json()["error"]["message"]


async def test_a_content_part_nested_absurdly_deep_is_a_400_not_a_crash(recorded):
    client, _ = recorded
    deep: object = "bottom"
    for _ in range(900):  # under the JSON decoder's own limit
        deep = {"x": deep}

    response = await post(client, [{"role": "user", "content": [{"type": "custom", "data": deep}]}])

    assert response.status_code == 400
    assert "nested at most" in response.json()["error"]["message"]
