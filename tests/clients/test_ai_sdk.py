"""The Vercel AI SDK's own client code reads streamserver's ``ai-sdk`` stream exactly: ``useChat``'s
``AbstractChat`` and its default transport (``DefaultChatTransport``: the SDK's JSON event stream
parsing and ``uiMessageChunkSchema`` validation), the ``ai`` package from npm run by Node.js
(``ai_sdk_chat.mjs``), against ``POST /v1/stream`` with ``format: "ai-sdk"``."""

from __future__ import annotations

import json
from typing import Any

from conftest import script, wait_until

from .conftest import CALLS, PARALLEL, REASONING, TEXT, NodeAISDK, ScriptedServer


def chat_case(
    server: ScriptedServer, deltas: list[Any], cancel: dict[str, str] | None = None, **options: Any
) -> dict[str, Any]:
    """One ``chat.sendMessage`` whose text is the script (it becomes the request's ``prompt``)."""
    case = {
        "api": server.base_url + "/v1/stream",
        "body": {"model": "scripted", "format": "ai-sdk"},
        "text": script(deltas, **options),
    }
    if cancel is not None:
        case["cancel"] = cancel
    return case


def without_ids(parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The message's parts without the part ids our formatter chose (``reasoning-1``...)."""
    return [{key: value for key, value in part.items() if key != "id"} for part in parts]


def tool_part(index: int) -> dict[str, Any]:
    call_id, name, arguments = CALLS[index]
    return {
        "type": f"tool-{name}",
        "toolCallId": call_id,
        "state": "input-available",
        "input": json.loads(arguments),
    }


async def test_use_chat_gets_the_reasoning_text_and_parallel_tool_calls_in_order(
    server: ScriptedServer, ai_sdk: NodeAISDK
) -> None:
    [got] = await ai_sdk.chat(chat_case(server, [*PARALLEL, " Both asked."], finish="tool_calls"))

    # The transport throws at the first chunk its schema refuses: no error, every chunk passed.
    assert (got["status"], got["error"]) == ("ready", None)
    assert got["finish"]["isError"] is False and got["finish"]["isAbort"] is False
    assert without_ids(got["parts"]) == [
        {"type": "step-start"},
        {"type": "reasoning", "text": "".join(REASONING), "state": "done"},
        {"type": "text", "text": TEXT, "state": "done"},
        tool_part(0),
        tool_part(1),
        {"type": "text", "text": " Both asked.", "state": "done"},
    ]


async def test_every_chunk_is_exactly_a_ui_message_chunk_as_the_sdk_declares_it(
    server: ScriptedServer, ai_sdk: NodeAISDK
) -> None:
    # Every kind of chunk the formatter writes: parts, a broken call, a failure, a server cancel.
    results = await ai_sdk.chat(
        chat_case(server, [*PARALLEL, " Both asked."], finish="tool_calls"),
        chat_case(server, [{"tool": 0, "id": "c", "name": "f", "arguments": '{"a": '}]),
        chat_case(server, ["Partial "], then="fail"),
        chat_case(server, ["a ", "b "], then="hang", cancel={"on": "text-delta", "how": "delete"}),
    )
    chunks = [chunk for result in results for chunk in result["chunks"]]

    assert {chunk["type"] for chunk in chunks} == {
        "start", "start-step", "reasoning-start", "reasoning-delta", "reasoning-end",
        "text-start", "text-delta", "text-end", "tool-input-start", "tool-input-delta",
        "tool-input-available", "tool-input-error", "finish-step", "finish", "error", "abort",
    }  # fmt: skip
    # The SDK's runtime schema lets unknown keys through (next test); its type does not.
    assert await ai_sdk.typecheck(chunks) == ""


async def test_the_sdk_transport_validates_each_chunk_but_lets_unknown_keys_through(
    ai_sdk: NodeAISDK,
) -> None:
    [probe] = await ai_sdk.chat(
        {"probe": [
            {"type": "text-delta", "id": "text-1", "delta": "a"},
            {"type": "text-delta", "id": "text-1"},  # no delta
            {"type": "tool-input-delta", "toolCallId": "c", "inputTextDelta": 1},  # not a string
            {"type": "text-chunk", "id": "text-1", "delta": "a"},  # no such chunk
            {"type": "text-delta", "id": "text-1", "delta": "a", "index": 0},  # an unknown key
        ]}
    )  # fmt: skip

    assert probe["accepted"] == [True, False, False, False, True], probe["errors"]
    assert probe["errors"][1].startswith("Type validation failed")


async def test_a_failed_stream_is_use_chats_error_and_keeps_the_text_so_far(
    server: ScriptedServer, ai_sdk: NodeAISDK
) -> None:
    [got] = await ai_sdk.chat(chat_case(server, ["Partial ", "answer"], then="fail"))

    assert got["status"] == "error"
    assert got["error"] == "the scripted upstream failed (upstream_error)"
    assert got["finish"]["isError"] is True
    assert without_ids(got["parts"]) == [
        {"type": "step-start"},
        {"type": "text", "text": "Partial answer", "state": "done"},
    ]


async def test_stop_aborts_the_request_and_cancels_the_stream_upstream(
    server: ScriptedServer, ai_sdk: NodeAISDK
) -> None:
    stop = {"on": "text-delta", "how": "stop"}
    [got] = await ai_sdk.chat(chat_case(server, ["a ", "b "], then="hang", cancel=stop))

    assert (got["status"], got["error"], got["cancelled"]) == ("ready", None, "stop")
    assert got["finish"]["isAbort"] is True
    [_, text] = got["parts"]
    assert text["type"] == "text" and text["text"] and "a b ".startswith(text["text"])
    await wait_until(lambda: len(server.provider.closed) == 1)  # the upstream was closed


async def test_a_stream_cancelled_on_the_server_ends_use_chat_without_an_error(
    server: ScriptedServer, ai_sdk: NodeAISDK
) -> None:
    delete = {"on": "text-delta", "how": "delete"}
    [got] = await ai_sdk.chat(chat_case(server, ["a ", "b "], then="hang", cancel=delete))

    assert got["cancelled"] == "delete 200"
    assert (got["status"], got["error"]) == ("ready", None)
    assert [chunk["type"] for chunk in got["chunks"][-3:]] == ["text-end", "finish-step", "abort"]
    [_, text] = got["parts"]
    assert text["type"] == "text" and text["state"] == "done" and text["text"]
    assert server.provider.closed


async def test_arguments_that_are_not_json_are_an_output_error_tool_part(
    server: ScriptedServer, ai_sdk: NodeAISDK
) -> None:
    broken = {"tool": 0, "id": "call_x", "name": "get_weather", "arguments": '{"city": '}
    [got] = await ai_sdk.chat(chat_case(server, [broken], finish="tool_calls"))

    assert (got["status"], got["error"]) == ("ready", None)
    [_, part] = got["parts"]
    assert part["errorText"].startswith("the arguments are not valid JSON")
    assert part == {
        "type": "tool-get_weather",
        "toolCallId": "call_x",
        "state": "output-error",
        "rawInput": '{"city": ',
        "errorText": part["errorText"],
    }
