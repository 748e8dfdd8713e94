"""The ``openai`` SDK gets exactly what the fake upstream sent, through streamserver's
``/v1/chat/completions`` and its ``openai`` or ``anthropic`` provider: reasoning (whichever field the
upstream used, as ``reasoning_content``), text, the two parallel calls (indexes 0 and 1, arguments
cut mid-JSON, several upstream events per network write), ``finish_reason: "tool_calls"`` and the
upstream's usage; streamed, through the ``.stream()`` helper and not streamed. The tool-result turn
reaches the upstream as a valid conversation."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from openai import AsyncOpenAI

from ..conftest import CALLS, REASONING, TEXT, TOOLS
from .conftest import TEXT_ONLY, USAGE, Chain, anthropic_tools, received_conversation

QUESTION = "Weather in Paris, and look up 1, 2, 3?"
ANSWER = ["Paris: 18 °C; ", "found 1, 2, 3."]


@pytest.fixture
async def client(chain: Chain) -> AsyncIterator[AsyncOpenAI]:
    async with AsyncOpenAI(
        base_url=chain.base_url + "/v1", api_key="test-key", max_retries=0, timeout=10
    ) as client:
        yield client


def ask(chain: Chain) -> dict[str, Any]:
    return {"model": chain.model, "messages": [{"role": "user", "content": QUESTION}]}


def expected_usage(chain: Chain) -> dict[str, Any]:
    """The upstream's report. Reasoning tokens are streamserver's count of the reasoning deltas:
    the fake OpenAI-compatible upstream reports that same count, Anthropic reports none."""
    prompt, completion = USAGE
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "completion_tokens_details": {"reasoning_tokens": len(REASONING)}}  # fmt: skip


def tools_sent(chain: Chain, body: dict[str, Any]) -> None:
    """The ``tools`` reached the upstream unchanged (in Anthropic's words for Anthropic)."""
    assert body["tools"] == (anthropic_tools(TOOLS) if chain.anthropic else TOOLS)


async def test_create_stream_accumulated_by_index_is_what_the_upstream_sent(
    chain: Chain, client: AsyncOpenAI
) -> None:
    chain.plan_tools()
    stream = await client.chat.completions.create(
        **ask(chain), tools=TOOLS, stream=True, stream_options={"include_usage": True}
    )
    text, reasoning, finish_reasons, usages = "", "", [], []
    calls: dict[int, list[str]] = {}
    async for chunk in stream:
        usages.append(chunk.usage)
        for choice in chunk.choices:
            delta = choice.delta
            text += delta.content or ""
            extra = delta.model_extra or {}
            assert "reasoning" not in extra  # one name for it, whatever the upstream said
            reasoning += extra.get("reasoning_content") or ""
            for call in delta.tool_calls or ():
                entry = calls.setdefault(call.index, ["", "", ""])
                assert call.function is not None
                entry[0] += call.id or ""
                entry[1] += call.function.name or ""
                entry[2] += call.function.arguments or ""
            if choice.finish_reason is not None:
                finish_reasons.append(choice.finish_reason)

    assert reasoning == "".join(REASONING)
    assert text == TEXT
    assert {index: tuple(call) for index, call in calls.items()} == dict(enumerate(CALLS))
    assert finish_reasons == ["tool_calls"]
    *before, usage = usages
    assert before and all(u is None for u in before)
    assert usage is not None and usage.model_dump(exclude_none=True) == expected_usage(chain)
    tools_sent(chain, chain.bodies()[-1])


async def test_the_stream_helpers_final_completion_is_what_the_upstream_sent(
    chain: Chain, client: AsyncOpenAI
) -> None:
    chain.plan_tools()
    async with client.chat.completions.stream(**ask(chain), tools=TOOLS) as stream:
        final = await stream.get_final_completion()

    [choice] = final.choices
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == TEXT
    assert (choice.message.model_extra or {}).get("reasoning_content") == "".join(REASONING)
    assert [
        (c.id, c.function.name, c.function.arguments) for c in choice.message.tool_calls or ()
    ] == CALLS


async def test_the_non_streamed_completion_is_what_the_upstream_sent(
    chain: Chain, client: AsyncOpenAI
) -> None:
    chain.plan_tools()
    completion = await client.chat.completions.create(**ask(chain), tools=TOOLS, stream=False)

    [choice] = completion.choices
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == TEXT
    assert (choice.message.model_extra or {}).get("reasoning_content") == "".join(REASONING)
    assert [
        (c.id, c.type, c.function.name, c.function.arguments)
        for c in choice.message.tool_calls or ()
    ] == [(call_id, "function", name, arguments) for call_id, name, arguments in CALLS]
    assert completion.usage is not None
    assert completion.usage.model_dump(exclude_none=True) == expected_usage(chain)
    tools_sent(chain, chain.bodies()[-1])


async def test_the_tool_results_reach_the_upstream_as_a_valid_conversation(
    chain: Chain, client: AsyncOpenAI
) -> None:
    chain.plan_tools()
    messages: list[Any] = ask(chain)["messages"]
    async with client.chat.completions.stream(
        model=chain.model, messages=messages, tools=TOOLS
    ) as stream:
        final = await stream.get_final_completion()
    results = [("call_w", json.dumps({"celsius": 18})), ("call_l", json.dumps([1, 2, 3]))]
    # As the SDK's documentation does it: the returned message object itself, then the results.
    messages += [
        final.choices[0].message,
        *({"role": "tool", "tool_call_id": call_id, "content": content}
          for call_id, content in results),
    ]  # fmt: skip
    chain.plan(tokens=ANSWER)
    second = await client.chat.completions.create(
        model=chain.model, messages=messages, tools=TOOLS, stream=True
    )
    text = [choice.delta.content or "" async for chunk in second for choice in chunk.choices]

    assert "".join(text) == "".join(ANSWER)
    first_body, body = chain.bodies()
    assert body["messages"] == received_conversation(chain, QUESTION, results)
    tools_sent(chain, first_body)
    tools_sent(chain, body)


async def test_a_text_only_answer_is_the_upstreams_text(chain: Chain, client: AsyncOpenAI) -> None:
    chain.plan(tokens=TEXT_ONLY)
    stream = await client.chat.completions.create(**ask(chain), stream=True)
    chunks = [chunk async for chunk in stream]
    chain.plan(tokens=TEXT_ONLY)
    completion = await client.chat.completions.create(**ask(chain))

    deltas = [choice.delta for chunk in chunks for choice in chunk.choices]
    assert "".join(delta.content or "" for delta in deltas) == "".join(TEXT_ONLY)
    assert not any(delta.tool_calls or (delta.model_extra or {}) for delta in deltas)
    assert [c.finish_reason for chunk in chunks for c in chunk.choices if c.finish_reason] == [
        "stop"
    ]
    [choice] = completion.choices
    assert (choice.message.content, choice.message.tool_calls) == ("".join(TEXT_ONLY), None)
    assert choice.finish_reason == "stop"
    assert "reasoning_content" not in (choice.message.model_extra or {})
