"""The ``anthropic`` SDK gets exactly what the fake upstream sent, through streamserver's
``/v1/messages`` and its ``openai`` or ``anthropic`` provider: the thinking (whichever field the
upstream used), the text, the two parallel calls (arguments cut mid-JSON, several upstream events
per network write) as ``tool_use`` blocks, ``stop_reason: "tool_use"`` and the upstream's usage;
streamed, through the ``.stream()`` helper and not streamed. The tool-result turn reaches the
upstream as a valid conversation, with the tools in its words."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from anthropic import AsyncAnthropic

from streamserver.devtools.fake_formats import SIGNATURE

from ..conftest import CALLS, REASONING, TEXT, TOOLS
from .conftest import TEXT_ONLY, USAGE, Chain, anthropic_tools, received_conversation

QUESTION = "Weather in Paris, and look up 1, 2, 3?"
ANSWER = ["Paris: 18 °C; ", "found 1, 2, 3."]


def expected_content(chain: Chain) -> list[dict[str, Any]]:
    """The answer's blocks; its thinking signed by an Anthropic upstream (as it signed it)."""
    return [
        {"type": "thinking", "thinking": "".join(REASONING),
         "signature": SIGNATURE if chain.anthropic else ""},
        {"type": "text", "text": TEXT},
        *({"type": "tool_use", "id": call_id, "name": name, "input": json.loads(arguments)}
          for call_id, name, arguments in CALLS),
    ]  # fmt: skip


@pytest.fixture
async def client(chain: Chain) -> AsyncIterator[AsyncAnthropic]:
    async with AsyncAnthropic(
        base_url=chain.base_url, api_key="test-key", max_retries=0, timeout=10
    ) as client:
        yield client


def ask(chain: Chain, **fields: Any) -> dict[str, Any]:
    return {"model": chain.model, "max_tokens": 4096,
            "messages": [{"role": "user", "content": QUESTION}], **fields}  # fmt: skip


def content(message: Any) -> list[dict[str, Any]]:
    return [block.model_dump(exclude_none=True) for block in message.content]


def usage_is_the_upstreams(message: Any) -> None:
    assert (message.usage.input_tokens, message.usage.output_tokens) == USAGE


def arguments_parsed(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages with each tool call's arguments parsed (``tool_use`` inputs already are)."""
    return [
        {**m, "tool_calls": [{**c, "function": {**c["function"],
                                                "arguments": json.loads(c["function"]["arguments"])}}
                             for c in m["tool_calls"]]} if "tool_calls" in m else m
        for m in messages
    ]  # fmt: skip


def tools_sent(chain: Chain, body: dict[str, Any]) -> None:
    """The tools reached the upstream as it takes them (OpenAI's or Anthropic's words)."""
    assert body["tools"] == (anthropic_tools(TOOLS) if chain.anthropic else TOOLS)


async def test_create_stream_rebuilds_what_the_upstream_sent(
    chain: Chain, client: AsyncAnthropic
) -> None:
    chain.plan_tools()
    stream = await client.messages.create(**ask(chain, tools=anthropic_tools(TOOLS)), stream=True)
    thinking, text, inputs, signatures = "", "", {}, []
    last = None
    async for event in stream:
        if event.type == "content_block_delta":
            delta = event.delta
            if delta.type == "thinking_delta":
                thinking += delta.thinking
            elif delta.type == "signature_delta":
                signatures.append(delta.signature)
            elif delta.type == "text_delta":
                text += delta.text
            elif delta.type == "input_json_delta":
                inputs[event.index] = inputs.get(event.index, "") + delta.partial_json
        elif event.type == "message_delta":
            last = event

    assert thinking == "".join(REASONING)
    assert signatures == ([SIGNATURE] if chain.anthropic else [])
    assert text == TEXT
    assert list(inputs.values()) == [arguments for _, _, arguments in CALLS]
    assert last is not None and last.delta.stop_reason == "tool_use"
    assert (last.usage.input_tokens, last.usage.output_tokens) == USAGE
    tools_sent(chain, chain.bodies()[-1])


async def test_the_stream_helpers_final_message_is_what_the_upstream_sent(
    chain: Chain, client: AsyncAnthropic
) -> None:
    chain.plan_tools()
    async with client.messages.stream(**ask(chain, tools=anthropic_tools(TOOLS))) as stream:
        text = [piece async for piece in stream.text_stream]
        final = await stream.get_final_message()

    assert "".join(text) == TEXT
    assert content(final) == expected_content(chain)
    assert final.stop_reason == "tool_use"
    usage_is_the_upstreams(final)


async def test_the_non_streamed_message_is_what_the_upstream_sent(
    chain: Chain, client: AsyncAnthropic
) -> None:
    chain.plan_tools()
    message = await client.messages.create(**ask(chain, tools=anthropic_tools(TOOLS)))

    assert content(message) == expected_content(chain)
    assert message.stop_reason == "tool_use"
    usage_is_the_upstreams(message)
    tools_sent(chain, chain.bodies()[-1])


async def test_the_tool_results_reach_the_upstream_as_a_valid_conversation(
    chain: Chain, client: AsyncAnthropic
) -> None:
    chain.plan_tools()
    messages: list[Any] = ask(chain)["messages"]
    async with client.messages.stream(
        **ask(chain, messages=messages, tools=anthropic_tools(TOOLS))
    ) as stream:
        final = await stream.get_final_message()
    results = [("call_w", json.dumps({"celsius": 18})), ("call_l", json.dumps([1, 2, 3]))]
    # The returned content itself (thinking block included), then one message of results.
    messages += [
        {"role": "assistant", "content": final.content},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": call_id, "content": result}
            for call_id, result in results
        ]},
    ]  # fmt: skip
    chain.plan(tokens=ANSWER)
    # With thinking on, Anthropic refuses this turn unless its signed thinking block comes first.
    thinking = {"type": "enabled", "budget_tokens": 1024}
    second = await client.messages.create(
        **ask(chain, messages=messages, tools=anthropic_tools(TOOLS), thinking=thinking),
        stream=True,
    )
    text = [
        event.delta.text
        async for event in second
        if event.type == "content_block_delta" and event.delta.type == "text_delta"
    ]

    assert "".join(text) == "".join(ANSWER)
    first_body, body = chain.bodies()
    # The SDK parsed each call's input: its JSON text comes back re-encoded, the same value.
    # Anthropic gets its signed thinking block back first (it refuses the turn without it).
    signed = {"type": "thinking", "thinking": "".join(REASONING), "signature": SIGNATURE}
    expected = received_conversation(chain, QUESTION, results, signed if chain.anthropic else None)
    assert arguments_parsed(body["messages"]) == arguments_parsed(expected)
    tools_sent(chain, first_body)
    tools_sent(chain, body)


async def test_a_text_only_answer_is_one_text_block(chain: Chain, client: AsyncAnthropic) -> None:
    chain.plan(tokens=TEXT_ONLY)
    async with client.messages.stream(**ask(chain)) as stream:
        final = await stream.get_final_message()

    assert content(final) == [{"type": "text", "text": "".join(TEXT_ONLY)}]
    assert final.stop_reason == "end_turn"


@pytest.mark.parametrize("streamed", [True, False])
async def test_the_stop_sequence_that_ended_the_text_is_reported_when_the_upstream_says_it(
    chain: Chain, client: AsyncAnthropic, streamed: bool
) -> None:
    # Anthropic says which stop sequence ended the text; OpenAI says only "stop" (end_turn).
    chain.plan(tokens=TEXT_ONLY, stop_sequence="###")
    fields = ask(chain, stop_sequences=["###", "END"])
    if streamed:
        async with client.messages.stream(**fields) as stream:
            final = await stream.get_final_message()
    else:
        final = await client.messages.create(**fields)

    assert content(final) == [{"type": "text", "text": "".join(TEXT_ONLY)}]
    if chain.anthropic:
        assert (final.stop_reason, final.stop_sequence) == ("stop_sequence", "###")
    else:
        assert (final.stop_reason, final.stop_sequence) == ("end_turn", None)
    sent = chain.bodies()[-1]
    assert sent.get("stop_sequences" if chain.anthropic else "stop") == ["###", "END"]
