"""``/v1/chat/completions`` takes every request parameter and forwards it (the recording provider
keeps what it got), accepts the compatibility ones it ignores, refuses what it cannot honour in
OpenAI's error shape, and answers tool calls and reasoning as the openai SDK and LangChain read
them, streamed or not."""

from __future__ import annotations

import asyncio

import openai
import pytest
from conftest import base_config
from test_request_fields import EVERY_PARAMETER, SAMPLING, WEATHER, recording

import streamserver
from streamserver.types import Message, ToolCall
from streamserver.web.keys import SERVICE

USER = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture
async def recorded(serve):
    """The server's /v1 URL, and the recording provider."""
    app = streamserver.create_app(recording())
    client = await serve(app=app)
    return client, app[SERVICE].providers["recording"]


async def complete(client, **body):
    """POST /v1/chat/completions (not streamed unless asked); the response."""
    return await client.http.post(
        "/v1/chat/completions", json={"model": "recorder", "messages": USER, **body}
    )


async def test_every_parameter_reaches_the_provider(recorded):
    client, provider = recorded

    response = await complete(client, **EVERY_PARAMETER, max_completion_tokens=9, stream=False)

    assert response.status_code == 200, response.text
    request = provider.requests[-1]
    assert request.tools == tuple(EVERY_PARAMETER["tools"])
    assert request.tool_choice == EVERY_PARAMETER["tool_choice"]
    assert request.parallel_tool_calls is False
    assert request.response_format == EVERY_PARAMETER["response_format"]
    assert request.sampling == SAMPLING
    assert request.max_tokens == 9


async def test_max_tokens_is_read_when_max_completion_tokens_is_null(recorded):
    client, provider = recorded

    response = await complete(client, max_completion_tokens=None, max_tokens=3)

    assert response.status_code == 200
    assert provider.requests[-1].max_tokens == 3


async def test_the_compatibility_parameters_are_accepted_and_not_forwarded(recorded):
    client, provider = recorded
    ignored = {"metadata": {"team": "a"}, "store": False, "service_tier": "auto",
               "prompt_cache_key": "k", "prompt_cache_retention": "24h", "safety_identifier": "s",
               "logprobs": False, "top_logprobs": None, "n": 1, "modalities": ["text"],
               "audio": None, "stream_options": {"include_obfuscation": False}}  # fmt: skip

    response = await complete(client, **ignored)

    assert response.status_code == 200, response.text
    assert provider.requests[-1].sampling == {}


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("logprobs", True),
        ("top_logprobs", 2),
        ("n", 2),
        ("n", True),
        ("audio", {"voice": "alloy", "format": "wav"}),
        ("modalities", ["text", "audio"]),
        ("prediction", {"type": "content", "content": "x"}),
        ("web_search_options", {}),
        ("functions", [{"name": "f"}]),
        ("function_call", "auto"),
        ("verbosity", "low"),
    ],
)
async def test_what_the_server_cannot_honour_is_a_400_in_openais_shape_naming_it(
    recorded, name, value
):
    client, provider = recorded

    response = await complete(client, **{name: value})

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "unsupported_parameter"
    assert error["type"] == "invalid_request_error"
    assert (repr(name) if name != "n" else "n = 1") in error["message"]
    assert provider.requests == []


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"stream": "yes"}, "'stream' must be true or false"),
        ({"stream_options": {"include_usage": 1}}, "'stream_options.include_usage' must be true"),
        ({"stream_options": {"chunk_size": 5}}, "stream_options.chunk_size"),
        ({"metadata": "team-a"}, "'metadata' must be an object or null"),
        ({"store": "no"}, "'store' must be true or false or null"),
        ({"temperature": 3}, "'temperature' must be a number from 0 to 2"),
        (
            {"tools": [{"type": "function", "function": {"name": "bad name"}}]},
            "'tools[0].function.name'",
        ),
    ],
)
async def test_a_wrong_value_is_a_400_naming_the_field(recorded, body, says):
    client, _ = recorded

    response = await complete(client, **body)

    assert response.status_code == 400
    assert says in response.json()["error"]["message"]


async def test_the_route_allows_only_what_its_allow_lists_and_honours_its_pins(serve):
    route = {"transport": "openai", "provider": "recording", "allow": ["model", "tools"],
             "pin": {"temperature": 0.5}}  # fmt: skip
    app = streamserver.create_app(recording(routes={"/v1/chat/completions": route}))
    client = await serve(app=app)
    sdk = openai.AsyncOpenAI(base_url=client.base_url + "/v1", api_key="unused", max_retries=0)

    await sdk.chat.completions.create(model="recorder", messages=USER, temperature=0.5)
    with pytest.raises(openai.BadRequestError) as pinned:
        await sdk.chat.completions.create(model="recorder", messages=USER, temperature=0.7)
    with pytest.raises(openai.BadRequestError) as not_allowed:
        await sdk.chat.completions.create(model="recorder", messages=USER, seed=1)
    await sdk.close()

    assert app[SERVICE].providers["recording"].requests[0].sampling == {"temperature": 0.5}
    assert pinned.value.code == "parameter_pinned"
    assert pinned.value.body["message"] == "this route pins 'temperature' to 0.5"
    assert not_allowed.value.code == "override_not_allowed"


async def test_the_sdk_gets_tool_calls_in_a_completion_and_sends_the_results_back(recorded):
    client, provider = recorded
    sdk = openai.AsyncOpenAI(base_url=client.base_url + "/v1", api_key="unused")

    first = await sdk.chat.completions.create(
        model="recorder", messages=USER, tools=[WEATHER], tool_choice="auto", stream=False
    )
    reply = first.choices[0].message
    history = [
        *USER,
        reply.model_dump(),
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]
    second = await sdk.chat.completions.create(model="recorder", messages=history, tools=[WEATHER])
    await sdk.close()

    assert first.choices[0].finish_reason == "tool_calls"
    assert reply.content is None and reply.refusal is None
    assert [(c.id, c.type, c.function.name, c.function.arguments) for c in reply.tool_calls] == [
        ("call_1", "function", "get_weather", '{"city": "Paris"}')
    ]
    assert first.usage.prompt_tokens == 5 and first.usage.completion_tokens == 2
    assert second.choices[0].message.content == "result: sunny"
    assert second.choices[0].message.tool_calls is None
    assert second.choices[0].finish_reason == "stop"
    assert provider.requests[-1].messages[1:] == (
        Message("assistant", "", (ToolCall("call_1", "get_weather", '{"city": "Paris"}'),)),
        Message("tool", "sunny", tool_call_id="call_1"),
    )


async def test_the_sdk_gets_the_reasoning_beside_the_answer(recorded):
    client, _ = recorded
    sdk = openai.AsyncOpenAI(base_url=client.base_url + "/v1", api_key="unused")

    completion = await sdk.chat.completions.create(
        model="recorder", messages=USER, reasoning_effort="high"
    )
    await sdk.close()

    message = completion.choices[0].message
    assert message.content == "recorded"
    assert message.model_extra["reasoning_content"] == "thinking it over"
    assert completion.usage.completion_tokens_details.reasoning_tokens == 1


async def test_the_sdk_streams_the_tool_call_with_the_parameters_forwarded(recorded):
    client, provider = recorded
    sdk = openai.AsyncOpenAI(base_url=client.base_url + "/v1", api_key="unused")

    stream = await sdk.chat.completions.create(
        model="recorder", messages=USER, tools=[WEATHER], parallel_tool_calls=False, seed=3,
        stream=True,
    )  # fmt: skip
    chunks = [chunk async for chunk in stream]
    await sdk.close()

    calls = [call for c in chunks if c.choices for call in c.choices[0].delta.tool_calls or ()]
    assert calls[0].id == "call_1" and calls[0].function.name == "get_weather"
    assert "".join(call.function.arguments or "" for call in calls) == '{"city": "Paris"}'
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    assert provider.requests[-1].parallel_tool_calls is False
    assert provider.requests[-1].sampling == {"seed": 3}


async def test_langchain_calls_the_tool_and_reads_the_answer(recorded):
    from langchain_core.messages import HumanMessage, ToolMessage
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI

    @tool
    def get_weather(city: str) -> str:
        """Weather in a city."""
        return "sunny"

    client, provider = recorded
    llm = ChatOpenAI(model="recorder", base_url=client.base_url + "/v1", api_key="unused",
                     temperature=0.3, max_retries=0)  # fmt: skip
    bound = llm.bind_tools([get_weather], tool_choice="auto")

    def converse() -> tuple[object, object]:
        question = [HumanMessage("What is the weather in Paris?")]
        call = bound.invoke(question)
        answer = bound.invoke(
            [*question, call, ToolMessage("sunny", tool_call_id=call.tool_calls[0]["id"])]
        )
        return call, answer

    call, answer = await asyncio.to_thread(converse)

    assert call.tool_calls == [
        {"name": "get_weather", "args": {"city": "Paris"}, "id": "call_1", "type": "tool_call"}
    ]
    assert answer.content == "result: sunny"
    assert provider.requests[-1].sampling == {"temperature": 0.3}
    assert provider.requests[-1].tool_choice == "auto"
    assert provider.requests[-1].tools[0]["function"]["name"] == "get_weather"


async def test_a_completion_with_neither_text_nor_calls_has_empty_content(serve):
    client = await serve(base_config())
    response = await client.http.post(
        "/v1/chat/completions",
        json={
            "model": "echo",
            "messages": [{"role": "user", "content": [{"type": "text", "text": " "}]}],
        },
    )

    assert response.status_code == 200
    message = response.json()["choices"][0]["message"]
    assert message == {"role": "assistant", "content": " ", "refusal": None}
