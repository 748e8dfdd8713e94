"""LangChain's ``ChatOpenAI`` with ``bind_tools`` gets exactly what the fake upstream sent, through
streamserver and its ``openai`` or ``anthropic`` provider: ``astream`` chunks summed and ``ainvoke``
(streaming and not) give the text and the two parallel calls (name, parsed args, id); the reasoning
stays out of the text (``ChatOpenAI`` drops ``reasoning_content`` by design); the tool-result turn
with ``ToolMessage``s reaches the upstream as a valid conversation."""

from __future__ import annotations

import json
from typing import Any

from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    ToolMessage,
)
from langchain_openai import ChatOpenAI

from ..conftest import CALLS, TEXT, TOOLS
from .conftest import TEXT_ONLY, USAGE, Chain, anthropic_tools, received_conversation

QUESTION = "Weather in Paris, and look up 1, 2, 3?"


def chat_openai(chain: Chain, **options: Any) -> ChatOpenAI:
    return ChatOpenAI(base_url=chain.base_url + "/v1", api_key="test-key", model=chain.model,
                      max_retries=0, timeout=10, **options)  # fmt: skip


def expected_tool_calls() -> list[dict[str, Any]]:
    return [
        {"name": name, "args": json.loads(arguments), "id": call_id, "type": "tool_call"}
        for call_id, name, arguments in CALLS
    ]


async def summed(model: Any, messages: list[BaseMessage]) -> AIMessageChunk:
    total = None
    async for chunk in model.astream(messages):
        total = chunk if total is None else total + chunk
    assert isinstance(total, AIMessageChunk)
    return total


async def test_astream_chunks_sum_to_what_the_upstream_sent(chain: Chain) -> None:
    chain.plan_tools()
    model = chat_openai(chain, stream_usage=True).bind_tools(TOOLS)
    total = await summed(model, [HumanMessage(QUESTION)])

    assert total.content == TEXT  # no reasoning mixed in
    assert total.tool_calls == expected_tool_calls()
    assert total.invalid_tool_calls == []
    assert total.response_metadata["finish_reason"] == "tool_calls"
    assert total.usage_metadata is not None
    assert (total.usage_metadata["input_tokens"], total.usage_metadata["output_tokens"]) == USAGE


async def test_ainvoke_streaming_and_not_gets_what_the_upstream_sent(chain: Chain) -> None:
    replies = []
    for streaming in (True, False):
        chain.plan_tools()
        model = chat_openai(chain, streaming=streaming).bind_tools(TOOLS)
        replies.append(await model.ainvoke([HumanMessage(QUESTION)]))

    for reply in replies:
        assert isinstance(reply, AIMessage)
        assert (reply.content, reply.tool_calls) == (TEXT, expected_tool_calls())
        assert reply.response_metadata["finish_reason"] == "tool_calls"
    assert [body["stream"] for body in chain.bodies()] == [True, True]  # upstream: always streamed


async def test_the_tool_messages_reach_the_upstream_as_a_valid_conversation(chain: Chain) -> None:
    model = chat_openai(chain).bind_tools(TOOLS)
    messages: list[BaseMessage] = [HumanMessage(QUESTION)]
    chain.plan_tools()
    first = await summed(model, messages)
    results = [("call_w", json.dumps({"celsius": 18})), ("call_l", json.dumps([1, 2, 3]))]
    messages += [
        first,
        *(ToolMessage(content, tool_call_id=call_id) for call_id, content in results),
    ]
    chain.plan(tokens=["Paris: 18 °C; ", "found 1, 2, 3."])
    second = await summed(model, messages)

    assert second.content == "Paris: 18 °C; found 1, 2, 3."
    body = chain.bodies()[-1]
    expected = received_conversation(chain, QUESTION, results)
    if not chain.anthropic:
        # LangChain sends the arguments it parsed, dumped again (``°`` unescaped): the same JSON
        # value, other text; the rest exactly.
        sent_calls = body["messages"][1]["tool_calls"]
        assert [json.loads(c["function"]["arguments"]) for c in sent_calls] == [
            json.loads(arguments) for _, _, arguments in CALLS
        ]
        for sent, wanted in zip(sent_calls, expected[1]["tool_calls"], strict=True):
            sent["function"]["arguments"] = wanted["function"]["arguments"]
    assert body["messages"] == expected
    assert body["tools"] == (anthropic_tools(TOOLS) if chain.anthropic else TOOLS)


async def test_a_text_only_answer_is_the_upstreams_text(chain: Chain) -> None:
    chain.plan(tokens=TEXT_ONLY)
    total = await summed(chat_openai(chain), [HumanMessage(QUESTION)])
    chain.plan(tokens=TEXT_ONLY)
    reply = await chat_openai(chain).ainvoke([HumanMessage(QUESTION)])

    for message in (total, reply):
        assert (message.content, message.tool_calls) == ("".join(TEXT_ONLY), [])
        assert message.response_metadata["finish_reason"] == "stop"
