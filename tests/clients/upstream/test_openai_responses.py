"""The ``openai`` SDK's Responses API gets exactly what the fake upstream sent, through
streamserver's ``/v1/responses`` and its ``openai`` or ``anthropic`` provider: the reasoning as a
summary, the text, the two parallel calls (arguments cut mid-JSON, several upstream events per
network write) and the upstream's usage, streamed through the ``responses.stream()`` helper and
not streamed; the function call outputs go back and reach the upstream as a valid conversation."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from openai import AsyncOpenAI

from ..conftest import CALLS, REASONING, TEXT
from ..test_openai_responses import FLAT_TOOLS, calls_of
from .conftest import USAGE, Chain, received_conversation
from .test_openai_sdk import ANSWER, QUESTION, tools_sent


@pytest.fixture
async def client(chain: Chain) -> AsyncIterator[AsyncOpenAI]:
    async with AsyncOpenAI(
        base_url=chain.base_url + "/v1", api_key="test-key", max_retries=0, timeout=10
    ) as client:
        yield client


def expected_usage() -> tuple[int, int, int]:
    """The upstream's report (input, output, total tokens)."""
    prompt, completion = USAGE
    return prompt, completion, prompt + completion


async def test_the_stream_helpers_events_and_final_response_are_what_the_upstream_sent(
    chain: Chain, client: AsyncOpenAI
) -> None:
    chain.plan_tools()
    async with client.responses.stream(
        model=chain.model, input=QUESTION, tools=FLAT_TOOLS
    ) as stream:
        events = [event async for event in stream]
        final = await stream.get_final_response()

    summary = "".join(e.delta for e in events if e.type == "response.reasoning_summary_text.delta")
    assert summary == "".join(REASONING)
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == TEXT
    assert [item.type for item in final.output] == [
        "reasoning", "message", "function_call", "function_call"
    ]  # fmt: skip
    assert final.output_text == TEXT
    assert calls_of(final) == CALLS
    assert final.usage is not None
    usage = final.usage
    assert (usage.input_tokens, usage.output_tokens, usage.total_tokens) == expected_usage()
    tools_sent(chain, chain.bodies()[0])


async def test_the_non_streamed_response_is_what_the_upstream_sent(
    chain: Chain, client: AsyncOpenAI
) -> None:
    chain.plan_tools()
    response = await client.responses.create(model=chain.model, input=QUESTION, tools=FLAT_TOOLS)

    assert response.output_text == TEXT
    assert calls_of(response) == CALLS
    assert response.output[0].type == "reasoning"
    assert response.output[0].summary[0].text == "".join(REASONING)


async def test_the_function_call_outputs_reach_the_upstream_as_a_valid_conversation(
    chain: Chain, client: AsyncOpenAI
) -> None:
    chain.plan_tools()
    asked: list[Any] = [{"role": "user", "content": QUESTION}]
    async with client.responses.stream(model=chain.model, input=asked, tools=FLAT_TOOLS) as stream:
        final = await stream.get_final_response()
    results = [("call_w", json.dumps({"celsius": 18})), ("call_l", json.dumps([1, 2, 3]))]
    outputs = [{"type": "function_call_output", "call_id": call_id, "output": content}
               for call_id, content in results]  # fmt: skip
    chain.plan(tokens=ANSWER)
    second = await client.responses.create(
        model=chain.model, input=[*asked, *final.output, *outputs], tools=FLAT_TOOLS
    )

    assert second.output_text == "".join(ANSWER)
    first_body, body = chain.bodies()
    assert body["messages"] == received_conversation(chain, QUESTION, results)
    tools_sent(chain, first_body)
    tools_sent(chain, body)  # in chat's shape (or Anthropic's), from the flat tools sent here
