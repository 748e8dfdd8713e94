"""LangChain's ``ChatOpenAI`` (langchain-openai) with ``bind_tools`` reads streamserver's
``/v1/chat/completions`` exactly: ``astream`` chunks summed give the text and the parallel tool calls
(name, parsed args, id), ``ainvoke`` gives the same, and a second turn sends the tool results back.
``reasoning_content`` is not OpenAI's API, and ``ChatOpenAI`` drops it by design (its module says
so: "Non-standard response fields ... are not extracted"): pinned here, so a change shows."""

from __future__ import annotations

import json
from typing import Any

from conftest import script
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    ToolMessage,
)
from langchain_openai import ChatOpenAI

from .conftest import CALLS, PARALLEL, REASONING, TEXT, TOOLS, ScriptedServer


def chat_openai(server: ScriptedServer, **options: Any) -> ChatOpenAI:
    """``ChatOpenAI`` on the server's OpenAI-compatible routes."""
    return ChatOpenAI(
        base_url=server.base_url + "/v1",
        api_key="test-key",
        model="scripted",
        max_retries=0,
        timeout=10,
        **options,
    )


def chat_model(server: ScriptedServer, **options: Any) -> Any:
    """``ChatOpenAI`` with the two tools bound."""
    return chat_openai(server, **options).bind_tools(TOOLS)


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


async def test_astream_chunks_sum_to_the_text_and_the_parallel_tool_calls(
    server: ScriptedServer,
) -> None:
    model = chat_model(server, stream_usage=True)
    total = await summed(model, [HumanMessage(script(PARALLEL, finish="tool_calls"))])

    assert total.content == TEXT
    assert total.tool_calls == expected_tool_calls()
    assert total.invalid_tool_calls == []
    assert total.response_metadata["finish_reason"] == "tool_calls"
    assert total.usage_metadata is not None
    assert (total.usage_metadata["input_tokens"], total.usage_metadata["output_tokens"]) == (
        1,
        len(PARALLEL),
    )


async def test_chat_openai_leaves_reasoning_content_out(server: ScriptedServer) -> None:
    deltas = [*({"reasoning": piece} for piece in REASONING), "The answer."]
    model = chat_openai(server)
    chunks = [chunk async for chunk in model.astream([HumanMessage(script(deltas))])]

    total = sum(chunks[1:], chunks[0])
    assert total.content == "The answer."  # the reasoning is not mixed into the text
    assert all("reasoning_content" not in chunk.additional_kwargs for chunk in chunks)
    assert all(isinstance(chunk.content, str) for chunk in chunks)  # no reasoning content blocks


async def test_ainvoke_of_a_streaming_model_gets_the_parallel_tool_calls(
    server: ScriptedServer,
) -> None:
    model = chat_model(server, streaming=True)
    reply = await model.ainvoke([HumanMessage(script(PARALLEL, finish="tool_calls"))])

    assert isinstance(reply, AIMessage)
    assert reply.content == TEXT
    assert reply.tool_calls == expected_tool_calls()


async def test_ainvoke_of_the_non_streamed_completion_gets_the_parallel_tool_calls(
    server: ScriptedServer,
) -> None:
    reply = await chat_model(server).ainvoke([HumanMessage(script(PARALLEL, finish="tool_calls"))])

    assert isinstance(reply, AIMessage)
    assert reply.content == TEXT
    assert reply.tool_calls == expected_tool_calls()
    assert reply.response_metadata["finish_reason"] == "tool_calls"


async def test_the_tool_results_go_back_with_the_message_langchain_summed(
    server: ScriptedServer,
) -> None:
    model = chat_model(server)
    messages: list[BaseMessage] = [HumanMessage(script(PARALLEL, finish="tool_calls"))]
    first = await summed(model, messages)
    answer = "Paris: 18 °C; found 1, 2, 3."
    messages += [
        first,
        ToolMessage(json.dumps({"celsius": 18}), tool_call_id="call_w"),
        ToolMessage(script([answer]), tool_call_id="call_l"),
    ]
    second = await summed(model, messages)

    assert second.content == answer
    sent = server.provider.requests[-1].messages
    assert [message.role for message in sent] == ["user", "assistant", "tool", "tool"]
    # LangChain sends the arguments it parsed, dumped again (``°`` unescaped): the same JSON value.
    assert [(c.id, c.name, json.loads(c.arguments)) for c in sent[1].tool_calls] == [
        (call_id, name, json.loads(arguments)) for call_id, name, arguments in CALLS
    ]
    assert [sent[2].tool_call_id, sent[3].tool_call_id] == ["call_w", "call_l"]
