"""The anthropic provider, part by part, against the fake upstream's Messages API over 127.0.0.1:
thinking, text and tool_use blocks into parts, and a GenerationRequest into Anthropic's words."""

from __future__ import annotations

import json

import pytest

import streamserver
from streamserver.builtins.anthropic_provider import AnthropicProvider, AnthropicProviderOptions
from streamserver.devtools.fake_upstream import Plan, PlannedCall
from streamserver.errors import ProviderError
from streamserver.testing import gather
from streamserver.types import REQUEST_PARAMETERS, GenerationRequest, Message, ToolCall, Usage

WEATHER = PlannedCall("toolu_w", "get_weather", '{"city": "Paris", "days": [1, 2]}')
TIME = PlannedCall("toolu_t", "get_time", '{"zone": "Europe/Paris"}')
TOOL = {"type": "function", "function": {"name": "get_weather", "description": "The weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}  # fmt: skip


@pytest.fixture
async def anthropic_provider(upstream, monkeypatch):
    """``anthropic_provider(**options)``: an anthropic provider pointed at the fake upstream."""
    _fake, url = upstream
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    made = []

    def make(**options):
        settings = {"base_url": url.removesuffix("/v1"), "model": "claude-test", "timeout_s": 5,
                    **options}  # fmt: skip
        made.append(AnthropicProvider(AnthropicProviderOptions(**settings)))
        return made[-1]

    yield make
    for provider in made:
        await provider.aclose()


def ask(*messages: Message, **fields) -> GenerationRequest:
    return GenerationRequest(messages or (Message("user", "hello"),), "claude-test", **fields)


def event(payload) -> str:
    return json.dumps(payload)


async def test_thinking_text_and_parallel_tool_use_become_parts(upstream, anthropic_provider):
    fake, _url = upstream
    fake.queue(Plan(reasoning=["Let me ", "think."], tokens=["Checking", " both."],
                    tool_calls=[WEATHER, TIME], arguments_cut=5, usage=(12, 34)))  # fmt: skip
    got = await gather(anthropic_provider(), ask())

    assert got.reasoning == "Let me think."
    assert got.text == "Checking both."
    assert got.calls == [WEATHER, TIME]
    assert got.indexes == [0, 1]  # their places among the tool calls, not the block indexes 2, 3
    assert got.kinds == ["reasoning", "text", "tool_call"]
    assert got.finish.reason == "tool_calls"
    assert got.finish.usage == Usage(12, 34)
    assert got.finish.model == "claude-test"


async def test_text_between_tool_calls(upstream, anthropic_provider):
    fake, _url = upstream
    fake.queue(Plan(tokens=["Looking.", " Found."], calls_after=1, tool_calls=[WEATHER]))
    got = await gather(anthropic_provider(), ask())

    assert got.kinds == ["text", "tool_call", "text"]
    assert (got.text, got.calls, got.indexes) == ("Looking. Found.", [WEATHER], [0])


async def test_arguments_cut_at_every_character_are_rebuilt(upstream, anthropic_provider):
    fake, _url = upstream
    call = PlannedCall("toolu_1", "f", '{"a": "é\\"}", "b": [1]}')
    provider = anthropic_provider()
    for position in range(1, len(call.arguments)):
        fake.queue(Plan(tool_calls=[call], arguments_cut=(position,), packed=position % 2 == 1))
        got = await gather(provider, ask())
        assert got.calls == [call], position


async def test_packed_events_arrive_whole(upstream, anthropic_provider):
    fake, _url = upstream
    fake.queue(Plan(reasoning=["a", "b"], tokens=["c", "d"], tool_calls=[WEATHER, TIME],
                    arguments_cut=1, packed=True))  # fmt: skip
    got = await gather(anthropic_provider(), ask())

    assert (got.reasoning, got.text, got.calls) == ("ab", "cd", [WEATHER, TIME])


async def test_a_whole_message_answering_a_stream_is_relayed_as_parts(upstream, anthropic_provider):
    fake, _url = upstream
    fake.queue(Plan(reasoning=["hmm"], tokens=["Sure."], tool_calls=[WEATHER, TIME],
                    whole_json=True, usage=(3, 4)))  # fmt: skip
    got = await gather(anthropic_provider(), ask())

    assert (got.reasoning, got.text) == ("hmm", "Sure.")
    assert [(c.id, c.name, json.loads(c.arguments)) for c in got.calls] == [
        (c.id, c.name, json.loads(c.arguments)) for c in (WEATHER, TIME)
    ]
    assert got.kinds == ["reasoning", "text", "tool_call"]
    assert (got.finish.reason, got.finish.usage) == ("tool_calls", Usage(3, 4))


async def test_a_refusal_is_text_that_finishes_with_content_filter(upstream, anthropic_provider):
    fake, _url = upstream
    fake.queue(Plan(refusal=["No."]))
    got = await gather(anthropic_provider(), ask())

    assert (got.text, got.finish.reason) == ("No.", "content_filter")


@pytest.mark.parametrize(("planned", "reason"), [
    ("stop", "stop"),  # end_turn
    ("stop_sequence", "stop"),
    ("length", "length"),  # max_tokens
    ("tool_calls", "tool_calls"),  # tool_use
])  # fmt: skip
async def test_stop_reasons_in_openai_words(upstream, anthropic_provider, planned, reason):
    fake, _url = upstream
    fake.queue(Plan(tokens=["x"], finish_reason=planned))
    got = await gather(anthropic_provider(), ask())

    assert got.finish.reason == reason


async def test_a_tool_call_without_input_has_empty_object_arguments(upstream, anthropic_provider):
    fake, _url = upstream
    fake.queue(Plan(tool_calls=[PlannedCall("toolu_1", "now", "")]))
    got = await gather(anthropic_provider(), ask())

    assert got.calls == [PlannedCall("toolu_1", "now", "{}")]


async def test_a_server_tools_input_and_null_deltas_are_skipped(upstream, anthropic_provider):
    fake, _url = upstream
    server_tool = {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}}
    fake.queue(Plan(tokens=["a"], raw=[
        event({"type": "content_block_start", "index": 5, "content_block": server_tool}),
        event({"type": "content_block_delta", "index": 5,
               "delta": {"type": "input_json_delta", "partial_json": '{"q": 1}'}}),
        event({"type": "content_block_delta", "index": 6, "delta": None}),
        event({"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta"}}),
    ]))  # fmt: skip
    got = await gather(anthropic_provider(), ask())

    assert (got.text, got.calls, got.kinds) == ("a", [], ["text"])


@pytest.mark.parametrize("payload", [
    {"type": "content_block_start", "index": 3, "content_block": {"type": "tool_use", "name": "f"}},
    {"type": "content_block_start", "index": 3,
     "content_block": {"type": "tool_use", "id": "t", "name": "f", "input": [1]}},
    {"type": "content_block_delta", "index": 0, "delta": "text"},
    {"type": "message_delta", "delta": {"stop_reason": ["end_turn"]}},
])  # fmt: skip
async def test_a_hostile_event_is_a_malformed_upstream_error(upstream, anthropic_provider, payload):
    fake, _url = upstream
    fake.queue(Plan(tokens=["a"], raw=[event(payload)]))

    with pytest.raises(ProviderError) as raised:
        await gather(anthropic_provider(), ask())
    assert raised.value.code == "upstream_malformed"


async def test_tool_input_that_is_not_text_is_a_malformed_upstream_error(
    upstream, anthropic_provider
):
    fake, _url = upstream
    fake.queue(Plan(tool_calls=[WEATHER], raw=[event({"type": "content_block_delta", "index": 0,
                    "delta": {"type": "input_json_delta", "partial_json": {"a": 1}}})]))  # fmt: skip

    with pytest.raises(ProviderError, match="not JSON text"):
        await gather(anthropic_provider(), ask())


async def test_a_conversation_in_anthropics_words(upstream, anthropic_provider):
    fake, _url = upstream
    native = {"type": "document", "source": {"type": "text", "media_type": "text/plain",
              "data": "notes"}, "cache_control": {"type": "ephemeral"}}  # fmt: skip
    messages = (
        Message("system", "be brief"),
        Message("system", "be kind"),
        Message("user", (
            {"type": "text", "text": "What are these?", "cache_control": {"type": "ephemeral"}},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K"}},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
            native,
        )),
        Message("assistant", "Let me check.", tool_calls=(
            ToolCall("toolu_1", "get_weather", '{"city": "Oslo"}'),
            ToolCall("toolu_2", "get_weather", ""),
        )),
        Message("tool", "12 C", tool_call_id="toolu_1"),
        Message("tool", ({"type": "text", "text": "3 C"},), tool_call_id="toolu_2"),
        Message("user", "thanks"),
        Message("assistant", "You're welcome."),
    )  # fmt: skip
    await gather(anthropic_provider(), ask(*messages))
    body = fake.requests[0].body

    assert body["system"] == "be brief\n\nbe kind"
    assert body["messages"] == [
        {"role": "user", "content": [
            {"type": "text", "text": "What are these?", "cache_control": {"type": "ephemeral"}},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": "iVBORw0K"}},
            {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
            native,
        ]},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Let me check."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"}},
            {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {}},
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "12 C"},
            {"type": "tool_result", "tool_use_id": "toolu_2",
             "content": [{"type": "text", "text": "3 C"}]},
        ]},
        {"role": "user", "content": "thanks"},
        {"role": "assistant", "content": "You're welcome."},
    ]  # fmt: skip


async def test_system_parts_go_as_system_blocks(upstream, anthropic_provider):
    fake, _url = upstream
    cached = {"type": "text", "text": "long rules", "cache_control": {"type": "ephemeral"}}
    await gather(anthropic_provider(), ask(Message("system", "intro"), Message("system", (cached,)),
                                           Message("user", "hi")))  # fmt: skip

    assert fake.requests[0].body["system"] == [{"type": "text", "text": "intro"}, cached]


async def test_tools_and_sampling_in_anthropics_words(upstream, anthropic_provider):
    fake, _url = upstream
    bare = {"type": "function", "function": {"name": "now"}}
    native = {"type": "web_search_20250305", "name": "web_search", "max_uses": 2}
    await gather(anthropic_provider(temperature=0.9), ask(
        tools=(TOOL, bare, native), sampling={"temperature": 0.2, "top_p": 0.8, "stop": "END",
                                              "user": "user-7"}))  # fmt: skip
    body = fake.requests[0].body

    assert body["tools"] == [
        {"name": "get_weather", "description": "The weather",
         "input_schema": TOOL["function"]["parameters"]},
        {"name": "now", "input_schema": {"type": "object", "properties": {}}},
        native,
    ]  # fmt: skip
    assert "tool_choice" not in body
    assert (body["temperature"], body["top_p"]) == (0.2, 0.8)  # the request's, not the config's
    assert body["stop_sequences"] == ["END"]
    assert body["metadata"] == {"user_id": "user-7"}
    assert body["max_tokens"] == 1024
    assert "thinking" not in body


@pytest.mark.parametrize(("choice", "parallel", "sent"), [
    ("auto", None, {"type": "auto"}),
    ("required", None, {"type": "any"}),
    ("none", None, {"type": "none"}),
    ({"type": "function", "function": {"name": "get_weather"}}, None,
     {"type": "tool", "name": "get_weather"}),
    ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
    (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
    ("none", False, {"type": "none"}),
])  # fmt: skip
async def test_tool_choice_in_anthropics_words(
    upstream, anthropic_provider, choice, parallel, sent
):
    fake, _url = upstream
    await gather(anthropic_provider(), ask(tools=(TOOL,), tool_choice=choice,
                                           parallel_tool_calls=parallel))  # fmt: skip

    assert fake.requests[0].body["tool_choice"] == sent


@pytest.mark.parametrize(("effort", "max_tokens", "thinking", "sent_max"), [
    ("low", None, {"type": "enabled", "budget_tokens": 2048}, 1024 + 2048),
    ("high", None, {"type": "enabled", "budget_tokens": 16384}, 1024 + 16384),
    ("high", 4000, {"type": "enabled", "budget_tokens": 3999}, 4000),  # fits under max_tokens
    ("none", None, None, 1024),
])  # fmt: skip
async def test_reasoning_effort_is_a_thinking_budget(
    upstream, anthropic_provider, effort, max_tokens, thinking, sent_max
):
    fake, _url = upstream
    await gather(anthropic_provider(), ask(max_tokens=max_tokens,
                                           sampling={"reasoning_effort": effort}))  # fmt: skip
    body = fake.requests[0].body

    assert body.get("thinking") == thinking
    assert body["max_tokens"] == sent_max


async def test_the_configured_thinking_budget_is_the_default(upstream, anthropic_provider):
    fake, _url = upstream
    provider = anthropic_provider(thinking_budget_tokens=3000)
    await gather(provider, ask())
    await gather(provider, ask(sampling={"reasoning_effort": "none"}))

    assert fake.requests[0].body["thinking"] == {"type": "enabled", "budget_tokens": 3000}
    assert "thinking" not in fake.requests[1].body


def test_a_thinking_budget_below_anthropics_minimum_is_a_config_error(anthropic_provider):
    with pytest.raises(streamserver.ConfigError, match=r"thinking_budget_tokens.*1024"):
        anthropic_provider(thinking_budget_tokens=100)


@pytest.mark.parametrize(("request_", "message"), [
    (ask(Message("assistant", "", tool_calls=(ToolCall("t1", "f", '{"a": '),))), "not JSON"),
    (ask(Message("assistant", "", tool_calls=(ToolCall("t1", "f", "[1]"),))), "not a JSON object"),
    (ask(Message("user", ({"type": "image_url", "image_url": {"url": "ftp://x/y.png"}},))),
     "data: URL or http"),
    (ask(Message("user", ({"type": "image_url", "image_url": {"url": "data:image/png,abc"}},))),
     "base64"),
    (ask(max_tokens=1000, sampling={"reasoning_effort": "low"}), "max_tokens above 1024"),
    (ask(sampling={"reasoning_effort": "extreme"}), "no Anthropic thinking budget"),
])  # fmt: skip
async def test_what_anthropic_cannot_be_told_is_an_error_before_any_request(
    upstream, anthropic_provider, request_, message
):
    fake, _url = upstream

    with pytest.raises(ProviderError, match=message) as raised:
        await gather(anthropic_provider(), request_)
    assert raised.value.code == "invalid_request"
    assert fake.requests == []


def test_it_declares_exactly_what_it_honours(anthropic_provider):
    honoured = set(anthropic_provider().parameters)

    assert honoured == {"tools", "tool_choice", "parallel_tool_calls", "temperature", "top_p",
                        "stop", "user", "reasoning_effort"}  # fmt: skip
    assert set(REQUEST_PARAMETERS) - honoured == {
        "seed", "presence_penalty", "frequency_penalty", "logit_bias", "response_format",
    }  # fmt: skip


@pytest.mark.parametrize(("fault", "codes"), [
    ("error_event", {"upstream_error"}),
    ("drop", {"upstream_disconnected", "upstream_incomplete"}),
    ("malformed", {"upstream_malformed"}),
])  # fmt: skip
async def test_a_fault_inside_a_tool_call_ends_the_stream_with_its_error(
    upstream, anthropic_provider, fault, codes
):
    fake, _url = upstream
    fake.queue(Plan(reasoning=["r"], tokens=["t"], tool_calls=[WEATHER], arguments_cut=4,
                    fault=fault, after_tokens=4))  # fmt: skip
    parts = []

    with pytest.raises(ProviderError) as raised:
        async for part in anthropic_provider().stream(ask()):
            parts.append(part)
    assert raised.value.code in codes
    assert len(parts) == 5  # reasoning, its signature, text, the call's start, its first fragment
