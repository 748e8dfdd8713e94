"""The openai provider, part by part, against the fake upstream over 127.0.0.1: what it yields for
each way real servers stream reasoning, text and tool calls, and what it forwards upstream."""

from __future__ import annotations

import json
from types import MappingProxyType

import pytest

from streamserver.builtins.openai_provider import OpenAIProvider, OpenAIProviderOptions
from streamserver.devtools.fake_upstream import Plan, PlannedCall
from streamserver.errors import ProviderError
from streamserver.testing import gather
from streamserver.types import REQUEST_PARAMETERS, GenerationRequest, Message, ToolCall, Usage

WEATHER = PlannedCall("call_w", "get_weather", '{"city": "Paris", "days": [1, 2]}')
TIME = PlannedCall("call_t", "get_time", '{"zone": "Europe/Paris"}')


@pytest.fixture
async def openai_provider(upstream):
    """``openai_provider(**options)``: an openai provider pointed at the fake upstream."""
    _fake, url = upstream
    made = []

    def make(**options):
        settings = {"base_url": url, "api_key_env": "", "model": "fake-model", "timeout_s": 5,
                    **options}  # fmt: skip
        made.append(OpenAIProvider(OpenAIProviderOptions(**settings)))
        return made[-1]

    yield make
    for provider in made:
        await provider.aclose()


def ask(*messages: Message, **fields) -> GenerationRequest:
    return GenerationRequest(messages or (Message("user", "hello"),), "fake-model", **fields)


def chunk(delta) -> str:
    """One raw chat completion chunk with ``delta``."""
    return json.dumps({"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m",
                       "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})  # fmt: skip


@pytest.mark.parametrize(
    "field",
    [
        "reasoning_content",  # DeepSeek, vLLM (text chunks then carry reasoning_content: null)
        "reasoning",  # OpenRouter, Ollama
    ],
)
async def test_reasoning_under_either_field_then_text(upstream, openai_provider, field):
    fake, _url = upstream
    fake.queue(Plan(reasoning=["Think", "ing..."], reasoning_field=field, tokens=["Hi", " there"]))
    got = await gather(openai_provider(), ask())

    assert got.reasoning == "Thinking..."
    assert got.text == "Hi there"
    assert got.kinds == ["reasoning", "text"]
    assert got.finish.reason == "stop"


async def test_parallel_calls_keep_their_indexes(upstream, openai_provider):
    fake, _url = upstream
    fake.queue(Plan(tool_calls=[WEATHER, TIME], arguments_cut=4))
    got = await gather(openai_provider(), ask())

    assert got.calls == [WEATHER, TIME]
    assert got.indexes == [0, 1]
    assert got.text == ""
    assert got.finish.reason == "tool_calls"


async def test_text_and_tool_calls_interleaved(upstream, openai_provider):
    fake, _url = upstream
    fake.queue(Plan(reasoning=["r"], tokens=["Let me ", "look.", " Done."], calls_after=2,
                    tool_calls=[WEATHER, TIME]))  # fmt: skip
    got = await gather(openai_provider(), ask())

    assert got.kinds == ["reasoning", "text", "tool_call", "text"]
    assert got.text == "Let me look. Done."
    assert got.calls == [WEATHER, TIME]


async def test_arguments_cut_at_every_character_are_rebuilt(upstream, openai_provider):
    fake, _url = upstream
    call = PlannedCall("call_1", "f", '{"a": "é\\"}", "b": [1]}')
    provider = openai_provider()
    for position in range(1, len(call.arguments)):
        fake.queue(Plan(tool_calls=[call], arguments_cut=(position,)))
        got = await gather(provider, ask())
        assert got.calls == [call], position


async def test_packed_events_arrive_whole(upstream, openai_provider):
    fake, _url = upstream
    fake.queue(Plan(reasoning=["a", "b"], tokens=["c", "d"], tool_calls=[WEATHER, TIME],
                    arguments_cut=1, packed=True))  # fmt: skip
    got = await gather(openai_provider(), ask())

    assert (got.reasoning, got.text, got.calls) == ("ab", "cd", [WEATHER, TIME])


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
async def test_a_whole_json_answer_to_a_streaming_request_is_relayed_as_parts(
    upstream, openai_provider, field
):
    fake, _url = upstream
    fake.queue(Plan(reasoning=["hmm"], reasoning_field=field, tokens=["Sure."],
                    tool_calls=[WEATHER, TIME], whole_json=True, usage=(11, 22)))  # fmt: skip
    got = await gather(openai_provider(), ask())

    assert fake.requests[0].body["stream"] is True
    assert (got.reasoning, got.text, got.calls) == ("hmm", "Sure.", [WEATHER, TIME])
    assert got.kinds == ["reasoning", "text", "tool_call"]
    assert got.finish.reason == "tool_calls"
    assert got.finish.usage == Usage(11, 22, reasoning_tokens=1)  # the upstream's own count


async def test_a_refusal_is_relayed_as_text(upstream, openai_provider):
    fake, _url = upstream
    fake.queue(Plan(refusal=["I can't ", "help with that."]))
    got = await gather(openai_provider(), ask())

    assert got.text == "I can't help with that."
    assert got.finish.reason == "stop"


async def test_usage_and_model_reach_the_finish(upstream, openai_provider):
    fake, _url = upstream
    fake.queue(Plan(tokens=["a"], usage=(31, 7)))
    got = await gather(openai_provider(), ask())

    assert got.finish.usage == Usage(31, 7)
    assert got.finish.model == "fake-model"


async def test_calls_that_finish_with_stop_finish_with_tool_calls(upstream, openai_provider):
    fake, _url = upstream  # Ollama and some llama.cpp versions say "stop" after tool calls
    fake.queue(Plan(tool_calls=[WEATHER], finish_reason="stop"))
    got = await gather(openai_provider(), ask())

    assert got.finish.reason == "tool_calls"


async def test_calls_without_an_index_are_told_apart_by_id(upstream, openai_provider):
    fake, _url = upstream  # Gemini's OpenAI-compatible API: whole calls, no index
    whole = [{"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
             for c in (WEATHER, TIME)]  # fmt: skip
    more = {"function": {"arguments": ""}}  # no index, no id: continues the last call
    fake.queue(Plan(tokens=[], raw=[chunk({"tool_calls": whole}), chunk({"tool_calls": [more]})]))
    got = await gather(openai_provider(), ask())

    assert got.calls == [WEATHER, TIME]
    assert got.indexes == [0, 1]


async def test_arguments_sent_as_an_object_become_json_text(upstream, openai_provider):
    fake, _url = upstream
    call = {"index": 0, "id": "c1", "function": {"name": "f", "arguments": {"x": [1, "é"]}}}
    fake.queue(Plan(tokens=[], raw=[chunk({"tool_calls": [call]})]))
    got = await gather(openai_provider(), ask())

    assert json.loads(got.calls[0].arguments) == {"x": [1, "é"]}


async def test_a_null_delta_and_null_fields_are_skipped(upstream, openai_provider):
    fake, _url = upstream
    nulls = {"content": None, "reasoning_content": None, "reasoning": None, "refusal": None,
             "tool_calls": None, "role": None}  # fmt: skip
    fake.queue(Plan(tokens=["a"], raw=[chunk(None), chunk(nulls), chunk({"content": "b"})]))
    got = await gather(openai_provider(), ask())

    assert got.text == "ab"
    assert got.kinds == ["text"]


@pytest.mark.parametrize(
    "delta",
    [
        {"tool_calls": [{"index": 0, "id": "c", "function": {"name": "f", "arguments": 5}}]},
        {"tool_calls": [{"index": "0", "function": {"arguments": "{}"}}]},
        {"tool_calls": [{"index": 0, "function": {"name": ["f"]}}]},
        {"tool_calls": [["not", "an", "object"]]},
        {"tool_calls": {"index": 0}},
        "a delta that is a string",
    ],
)
async def test_a_hostile_chunk_is_a_malformed_upstream_error(upstream, openai_provider, delta):
    fake, _url = upstream
    fake.queue(Plan(tokens=["a"], raw=[chunk(delta)]))

    with pytest.raises(ProviderError) as raised:
        await gather(openai_provider(), ask())
    assert raised.value.code == "upstream_malformed"


async def test_a_choice_that_is_not_an_object_is_a_malformed_upstream_error(
    upstream, openai_provider
):
    fake, _url = upstream
    fake.queue(Plan(tokens=[], raw=[json.dumps({"choices": ["x"]})]))

    with pytest.raises(ProviderError, match="not a chat completion chunk"):
        await gather(openai_provider(), ask())


async def test_the_request_goes_out_as_it_came(upstream, openai_provider):
    fake, _url = upstream
    tools = ({"type": "function", "function": {"name": "get_weather", "description": "Weather",
              "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}},)  # fmt: skip
    parts = (
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO", "detail": "low"}},
        {"type": "input_audio", "input_audio": {"data": "UklG", "format": "wav"}},
    )
    sampling = {"temperature": 0.3, "top_p": 0.9, "stop": ["\n\n", "END"], "seed": 42,
                "presence_penalty": 0.5, "frequency_penalty": -0.5, "logit_bias": {"1234": -100},
                "user": "user-7", "reasoning_effort": "low"}  # fmt: skip
    messages = (
        Message("system", "be brief"),
        Message("user", parts),
        Message("assistant", "", tool_calls=(ToolCall("call_1", "get_weather", '{"city":"Oslo"}'),)),
        Message("tool", "12 C", tool_call_id="call_1"),
        Message("assistant", "Checking", tool_calls=(ToolCall("call_2", "get_time", "{}", 0),)),
        Message("tool", "noon", tool_call_id="call_2"),
    )  # fmt: skip
    request = ask(*messages, max_tokens=77, tools=tools,
                  tool_choice={"type": "function", "function": {"name": "get_weather"}},
                  parallel_tool_calls=False, response_format={"type": "json_object"},
                  sampling=sampling)  # fmt: skip
    await gather(openai_provider(), request)
    body = fake.requests[0].body

    assert body["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": list(parts)},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}}]},
        {"role": "tool", "content": "12 C", "tool_call_id": "call_1"},
        {"role": "assistant", "content": "Checking", "tool_calls": [{"id": "call_2",
         "type": "function", "function": {"name": "get_time", "arguments": "{}"}}]},
        {"role": "tool", "content": "noon", "tool_call_id": "call_2"},
    ]  # fmt: skip
    assert body["tools"] == list(tools)
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert body["parallel_tool_calls"] is False
    assert body["response_format"] == {"type": "json_object"}
    assert body["max_tokens"] == 77
    assert {name: body[name] for name in sampling} == sampling
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}


async def test_read_only_parts_and_tuples_go_out_as_json(upstream, openai_provider):
    fake, _url = upstream
    part = MappingProxyType({"type": "text", "text": "hi", "extra": (1, 2)})
    tool = MappingProxyType({"type": "function", "function": MappingProxyType({"name": "f"})})
    await gather(openai_provider(), ask(Message("user", (part,)), tools=(tool,),
                                        sampling={"stop": ("x", "y")}))  # fmt: skip
    body = fake.requests[0].body

    assert body["messages"][0]["content"] == [{"type": "text", "text": "hi", "extra": [1, 2]}]
    assert body["tools"] == [{"type": "function", "function": {"name": "f"}}]
    assert body["stop"] == ["x", "y"]


async def test_a_requests_values_win_over_the_configured_defaults(upstream, openai_provider):
    fake, _url = upstream
    provider = openai_provider(temperature=0.2, top_p=0.5, extra_body={"top_k": 5, "seed": 1})
    await gather(provider, ask(sampling={"temperature": 1.1, "seed": 9}))
    await gather(provider, ask())
    asked, defaults = fake.requests[0].body, fake.requests[1].body

    assert (asked["temperature"], asked["top_p"], asked["top_k"], asked["seed"]) == (1.1, 0.5, 5, 9)
    assert (defaults["temperature"], defaults["top_p"], defaults["seed"]) == (0.2, 0.5, 1)
    assert "tools" not in defaults and "tool_choice" not in defaults and "stop" not in defaults


def test_it_honours_every_request_parameter(openai_provider):
    assert set(openai_provider().parameters) == set(REQUEST_PARAMETERS)


@pytest.mark.parametrize(("fault", "codes"), [
    ("error_event", {"upstream_error"}),
    ("drop", {"upstream_disconnected", "upstream_incomplete"}),
    ("malformed", {"upstream_malformed"}),
])  # fmt: skip
async def test_a_fault_inside_a_tool_call_ends_the_stream_with_its_error(
    upstream, openai_provider, fault, codes
):
    fake, _url = upstream
    fake.queue(Plan(reasoning=["r"], tokens=["t"], tool_calls=[WEATHER], arguments_cut=4,
                    fault=fault, after_tokens=4))  # fmt: skip
    parts = []

    with pytest.raises(ProviderError) as raised:
        async for part in openai_provider().stream(ask()):
            parts.append(part)
    assert raised.value.code in codes
    assert len(parts) == 4  # reasoning, text, the call's start, its first fragment
