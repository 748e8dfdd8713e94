"""The ``anthropic`` SDK, pointed at streamserver's ``POST /v1/messages``, reads exactly what the
provider produced: thinking, text and parallel tool calls (fragments interleaved, cut mid-JSON)
through ``messages.create(stream=True)``, the ``messages.stream(...)`` helper (``text_stream``,
``get_final_message`` with each call's input parsed) and ``stream=False``; the offline models
(``sim-tools`` through a tool round trip, ``sim-reasoner``'s thinking); failures and refusals as
the SDK's exceptions; the key as ``x-api-key``; a cut stream resumed with nothing repeated."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import httpx
import pytest
from anthropic import AsyncAnthropic
from anthropic.lib.streaming._messages import accumulate_event
from conftest import SCRIPTED, ServeFactory, base_config, script
from httpx_sse import aconnect_sse

import streamserver

from .conftest import CALLS, PARALLEL, REASONING, SEQUENTIAL, TEXT, TOOLS, ScriptedServer

ANTHROPIC_TOOLS = [
    {"name": f["name"], "description": f["description"], "input_schema": f["parameters"]}
    for f in (tool["function"] for tool in TOOLS)
]
EXPECTED_CONTENT = [
    {"type": "thinking", "thinking": "".join(REASONING), "signature": ""},
    {"type": "text", "text": TEXT},
    *({"type": "tool_use", "id": call_id, "name": name, "input": json.loads(arguments)}
      for call_id, name, arguments in CALLS),
]  # fmt: skip
"""The message every way of reading the scripted answer must rebuild, block for block."""


def user(deltas: list[Any], **options: Any) -> list[dict[str, Any]]:
    return [{"role": "user", "content": script(deltas, **options)}]


@pytest.fixture
async def client(server: ScriptedServer) -> AsyncIterator[AsyncAnthropic]:
    async with AsyncAnthropic(
        base_url=server.base_url, api_key="test-key", max_retries=0, timeout=10
    ) as client:
        yield client


def content(message: Any) -> list[dict[str, Any]]:
    return [block.model_dump(exclude_none=True) for block in message.content]


@pytest.mark.parametrize("deltas", [PARALLEL, SEQUENTIAL], ids=["interleaved", "sequential"])
async def test_create_stream_gives_each_block_by_index_as_the_provider_produced_it(
    client: AsyncAnthropic, deltas: list[Any]
) -> None:
    stream = await client.messages.create(
        model="scripted", max_tokens=1024, messages=user(deltas, finish="tool_calls"),
        tools=ANTHROPIC_TOOLS, stream=True,
    )  # fmt: skip
    events = [event async for event in stream]

    assert events[0].type == "message_start"  # the SDK skips the ping after it
    assert [e.type for e in events[-2:]] == ["message_delta", "message_stop"]
    blocks: dict[int, list[str]] = {}
    started: dict[int, dict[str, Any]] = {}
    for event in events:
        if event.type == "content_block_start":
            assert event.index not in started  # each index starts once, in order
            assert event.index == len(started)
            started[event.index] = event.content_block.model_dump(exclude_none=True)
            blocks[event.index] = []
        elif event.type == "content_block_delta":
            delta = event.delta
            piece = {"text_delta": "text", "thinking_delta": "thinking",
                     "input_json_delta": "partial_json"}[delta.type]  # fmt: skip
            blocks[event.index].append(getattr(delta, piece))
        elif event.type == "content_block_stop":
            blocks[event.index].append("<stop>")
    assert [started[i]["type"] for i in sorted(started)] == [
        "thinking",
        "text",
        "tool_use",
        "tool_use",
    ]
    assert "".join(blocks[0]) == "".join(REASONING) + "<stop>"
    assert "".join(blocks[1]) == TEXT + "<stop>"
    for index, (call_id, name, arguments) in enumerate(CALLS, start=2):
        assert (started[index]["id"], started[index]["name"]) == (call_id, name)
        assert "".join(blocks[index]) == arguments + "<stop>"
    assert events[-2].delta.stop_reason == "tool_use"  # type: ignore[union-attr]


async def test_the_stream_helper_gives_the_text_and_a_final_message_with_parsed_inputs(
    client: AsyncAnthropic,
) -> None:
    async with client.messages.stream(
        model="scripted", max_tokens=1024, messages=user(PARALLEL, finish="tool_calls"),
        tools=ANTHROPIC_TOOLS,
    ) as stream:  # fmt: skip
        text = [piece async for piece in stream.text_stream]
        final = await stream.get_final_message()

    assert "".join(text) == TEXT
    assert content(final) == EXPECTED_CONTENT
    assert final.stop_reason == "tool_use"
    assert final.id.startswith("msg_")


async def test_stream_false_answers_one_message_with_the_same_blocks(
    client: AsyncAnthropic,
) -> None:
    message = await client.messages.create(
        model="scripted", max_tokens=1024, messages=user(SEQUENTIAL, finish="tool_calls"),
        tools=ANTHROPIC_TOOLS,
    )  # fmt: skip

    assert content(message) == EXPECTED_CONTENT
    assert (message.type, message.role, message.stop_reason) == ("message", "assistant", "tool_use")
    assert message.usage.output_tokens > 0


async def test_a_failed_stream_raises_the_sdks_status_error_after_the_text_so_far(
    client: AsyncAnthropic,
) -> None:
    stream = await client.messages.create(
        model="scripted", max_tokens=64, messages=user(["Partial ", "answer"], then="fail"),
        stream=True,
    )  # fmt: skip
    text = []
    with pytest.raises(anthropic.APIStatusError) as raised:
        async for event in stream:
            if event.type == "content_block_delta" and event.delta.type == "text_delta":
                text.append(event.delta.text)

    assert "".join(text) == "Partial answer"
    body: Any = raised.value.body
    assert body["type"] == "error" and body["error"]["type"] == "api_error"
    assert "the scripted upstream failed" in body["error"]["message"]


async def test_sim_tools_round_trip_answers_from_the_tool_results(client: AsyncAnthropic) -> None:
    messages: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]
    async with client.messages.stream(
        model="sim-tools", max_tokens=512, messages=messages, tools=ANTHROPIC_TOOLS[:1],
        tool_choice={"type": "any"},
    ) as stream:  # fmt: skip
        first = await stream.get_final_message()
    [call] = [block for block in first.content if block.type == "tool_use"]
    assert first.stop_reason == "tool_use"
    assert call.name == "get_weather" and isinstance(call.input, dict)
    # As the SDK's documentation does it: the returned content itself, then the results.
    messages += [
        {"role": "assistant", "content": first.content},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": call.id, "content": "18 degrees, sunny"}
        ]},
    ]  # fmt: skip
    second = await client.messages.create(
        model="sim-tools", max_tokens=512, messages=messages, tools=ANTHROPIC_TOOLS[:1]
    )

    assert second.stop_reason == "end_turn"
    assert "18 degrees, sunny" in "".join(b.text for b in second.content if b.type == "text")


async def test_sim_reasoner_thinks_in_a_thinking_block_before_its_text(
    client: AsyncAnthropic,
) -> None:
    async with client.messages.stream(
        model="sim-reasoner", max_tokens=4096, thinking={"type": "enabled", "budget_tokens": 2048},
        messages=[{"role": "user", "content": "Why is the sky blue?"}],
    ) as stream:  # fmt: skip
        thinking = [e.thinking async for e in stream if e.type == "thinking"]
        final = await stream.get_final_message()

    assert [block.type for block in final.content] == ["thinking", "text"]
    assert final.content[0].thinking == "".join(thinking) != ""  # type: ignore[union-attr]
    assert final.content[1].text  # type: ignore[union-attr]


@pytest.mark.parametrize("streamed", [True, False])
async def test_a_stop_sequence_ends_the_text_and_is_reported_as_the_stop_reason(
    client: AsyncAnthropic, streamed: bool
) -> None:
    fields: dict[str, Any] = {
        "model": "echo", "max_tokens": 256, "stop_sequences": ["never", "STOP"],
        "messages": [{"role": "user", "content": "say one two STOP three"}],
    }  # fmt: skip
    if streamed:
        async with client.messages.stream(**fields) as stream:
            final = await stream.get_final_message()
    else:
        final = await client.messages.create(**fields)
    plain = await client.messages.create(**{**fields, "stop_sequences": ["never"]})

    assert "".join(b.text for b in final.content if b.type == "text") == "say one two "
    assert (final.stop_reason, final.stop_sequence) == ("stop_sequence", "STOP")
    assert (plain.stop_reason, plain.stop_sequence) == ("end_turn", None)


async def test_thinking_disabled_gives_no_thinking_block(client: AsyncAnthropic) -> None:
    message = await client.messages.create(
        model="sim-reasoner", max_tokens=256, thinking={"type": "disabled"},
        messages=[{"role": "user", "content": "Why is the sky blue?"}],
    )  # fmt: skip

    assert [block.type for block in message.content] == ["text"]


@pytest.mark.parametrize(
    ("fields", "status", "message"),
    [
        ({"max_tokens": None}, 400, "max_tokens: Field required"),
        ({"top_k": 5}, 400, "top_k"),
        ({"model": "no-such-model"}, 404, "no-such-model"),
        ({"thinking": {"type": "enabled", "budget_tokens": 4096}}, 400, "budget_tokens"),
        ({"messages": [{"role": "system", "content": "x"}]}, 400, "messages.0.role"),
    ],
)
async def test_a_bad_request_is_a_4xx_in_the_apis_error_shape(
    server: ScriptedServer, fields: dict[str, Any], status: int, message: str
) -> None:
    body = {
        "model": "sim-tools",
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": "hi"}],
    }
    body = {k: v for k, v in {**body, **fields}.items() if v is not None}
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        response = await http.post("/v1/messages", json=body)

    assert response.status_code == status
    error = response.json()
    assert error["type"] == "error" and message in error["error"]["message"]
    kind = "not_found_error" if status == 404 else "invalid_request_error"
    assert error["error"]["type"] == kind


async def test_the_sdk_raises_its_own_exception_for_a_refusal(client: AsyncAnthropic) -> None:
    with pytest.raises(anthropic.NotFoundError):
        await client.messages.create(
            model="no-such-model", max_tokens=16, messages=[{"role": "user", "content": "hi"}]
        )


async def test_the_key_is_taken_as_x_api_key(
    serve: ServeFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STREAMSERVER_API_KEYS", "team:sk-test-0123456789abcdef")
    server = await serve(base_config(auth={"mode": "api_key"}))
    ask = {"model": "simulated", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
    async with (
        AsyncAnthropic(
            base_url=server.base_url, api_key="sk-test-0123456789abcdef", max_retries=0
        ) as good,
        AsyncAnthropic(base_url=server.base_url, api_key="wrong", max_retries=0) as bad,
    ):
        message = await good.messages.create(**ask)
        with pytest.raises(anthropic.AuthenticationError):
            await bad.messages.create(**ask)

    assert message.content[0].type == "text"


async def test_a_cut_stream_resumes_after_its_last_event_with_nothing_repeated(
    serve: ServeFactory,
) -> None:
    app = streamserver.create_app(base_config(resume={"grace_s": 5}, **SCRIPTED))
    server = await serve(app=app)
    body = {"model": "scripted", "max_tokens": 1024, "stream": True, "tools": ANTHROPIC_TOOLS,
            "messages": user(PARALLEL, finish="tool_calls", gap_ms=20)}  # fmt: skip
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
        async with aconnect_sse(http, "POST", "/v1/messages", json=body) as source:
            stream_id = source.response.headers["X-Stream-ID"]
            events = []
            async for event in source.aiter_sse():
                events.append(event)
                if len(events) == 6:
                    break  # the client goes away mid-answer
        resume = {"Last-Event-ID": events[-1].id}
        async with aconnect_sse(http, "GET", f"/v1/streams/{stream_id}", headers=resume) as source:
            events += [event async for event in source.aiter_sse()]

    assert [event.event for event in events[:2]] == ["message_start", "ping"]
    seqs = [int(event.id.rpartition(":")[2]) for event in events]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # none repeated, none missing
    message, json_bufs = None, {}
    for event in events:
        if event.event != "ping":
            message = accumulate_event(
                event=json.loads(event.data), current_snapshot=message, json_bufs=json_bufs
            )
    assert message is not None
    assert content(message) == EXPECTED_CONTENT
    assert message.stop_reason == "tool_use"


async def test_a_cancelled_stream_ends_its_turn_with_the_text_so_far(
    server: ScriptedServer, client: AsyncAnthropic
) -> None:
    async with client.messages.stream(
        model="scripted", max_tokens=64, messages=user(["Partial ", "answer"], then="hang")
    ) as stream, httpx.AsyncClient(base_url=server.base_url) as http:  # fmt: skip
        stream_id = stream.response.headers["X-Stream-ID"]
        text = ""
        async for event in stream:
            if event.type == "text":
                text += event.text
                if text == "Partial answer":  # the provider now hangs: only a cancel ends it
                    cancelled = await http.delete(f"/v1/streams/{stream_id}")
        final = await stream.get_final_message()

    assert cancelled.json() == {"id": stream_id, "cancelled": True}
    assert content(final) == [{"type": "text", "text": "Partial answer"}]
    assert final.stop_reason == "end_turn"
    assert final.id == "msg_" + stream_id


@pytest.mark.parametrize("streamed", [True, False])
async def test_each_signed_thinking_block_is_its_own_block_with_its_signature(
    client: AsyncAnthropic, streamed: bool
) -> None:
    # Interleaved thinking: a signature closes its block, so the client can send each back as
    # Anthropic signed it; one outside any thinking (after text) signs nothing.
    deltas = [{"reasoning": "First, "}, {"reasoning": "think."}, {"signature": "sig-1"},
              {"reasoning": "Then more."}, {"signature": "sig-2"}, "The answer.",
              {"signature": "stray"}]  # fmt: skip
    fields = {"model": "scripted", "max_tokens": 1024, "messages": user(deltas)}
    if streamed:
        async with client.messages.stream(**fields) as stream:
            final = await stream.get_final_message()
    else:
        final = await client.messages.create(**fields)

    assert [block.model_dump(exclude_none=True) for block in final.content] == [
        {"type": "thinking", "thinking": "First, think.", "signature": "sig-1"},
        {"type": "thinking", "thinking": "Then more.", "signature": "sig-2"},
        {"type": "text", "text": "The answer."},
    ]
