"""The ``ai-sdk`` route against the AI SDK's own ``DefaultChatTransport`` (``useChat``'s), from npm
in Node.js (``ai_sdk_transport.mjs``): ``sendMessages`` posts the UI messages as useChat does, and
``reconnectToStream`` (useChat's ``resume``) replays the chat's active stream from its start."""

from __future__ import annotations

import json
from typing import Any

import pytest
from conftest import SCRIPTED, ServeFactory, base_config, script, wait_until

import streamserver
from streamserver.web.keys import SERVICE

from .conftest import CALLS, REASONING, SEQUENTIAL, TEXT, NodeAISDK, ScriptedServer
from .test_ai_sdk import tool_part, without_ids

API = "/api/chat"


@pytest.fixture
async def server(serve: ServeFactory) -> ScriptedServer:
    """streamserver with an ``ai-sdk`` route at ``/api/chat`` over the scripted provider; a stream
    whose reader leaves goes on for 30 s (``resume.grace_s``), waiting for a resume."""
    config = base_config(
        resume={"grace_s": 30},
        routes={API: {"transport": "ai-sdk", "provider": "scripted"}},
        **SCRIPTED,
    )
    app = streamserver.create_app(config)
    client = await serve(app=app)
    return ScriptedServer(client.base_url + API, app[SERVICE].providers["scripted"])


def user(text: str, message_id: str = "u1") -> dict[str, Any]:
    """A user's UI message as useChat holds it."""
    return {"id": message_id, "role": "user", "parts": [{"type": "text", "text": text}]}


def send(chat_id: str, deltas: list[Any], **options: Any) -> dict[str, Any]:
    """A ``sendMessages`` step whose user message is the scripted provider's script."""
    at = options.pop("at", None)
    step = {"do": "send", "chatId": chat_id, "messages": [user(script(deltas, **options))]}
    return {**step, "at": at} if at else step


STRUCTURED = [*SEQUENTIAL, " Both asked."]
"""Reasoning, text, two tool calls, more text."""
STRUCTURED_PARTS = [
    {"type": "step-start"},
    {"type": "reasoning", "text": "".join(REASONING), "state": "done"},
    {"type": "text", "text": TEXT, "state": "done"},
    tool_part(0),
    tool_part(1),
    {"type": "text", "text": " Both asked.", "state": "done"},
]


async def test_send_messages_streams_reasoning_text_and_tool_calls(
    server: ScriptedServer, ai_sdk: NodeAISDK
) -> None:
    [got] = await ai_sdk.transport(server.base_url, send("chat1", STRUCTURED, finish="tool_calls"))

    assert got["error"] is None
    assert without_ids(got["message"]["parts"]) == STRUCTURED_PARTS
    assert got["chunks"][-1] == {"type": "finish", "finishReason": "tool-calls"}


async def test_a_reconnect_after_the_page_left_replays_the_stream_from_its_start_and_follows_it(
    server: ScriptedServer, ai_sdk: NodeAISDK
) -> None:
    # The page leaves at the first tool call; the stream hangs after its parts until cancelled.
    leave = {"type": "tool-input-start", "action": "abort"}
    left, resumed = await ai_sdk.transport(
        server.base_url,
        send("chat2", STRUCTURED, then="hang", at=leave),
        {"do": "reconnect", "chatId": "chat2", "at": {"type": "text-end", "action": "delete"}},
    )

    assert left["aborted"] is True
    # The resumed stream starts where the first did, with the same message id, once each part.
    assert resumed["chunks"][0] == left["chunks"][0]
    assert resumed["chunks"][0]["type"] == "start"
    assert without_ids(resumed["message"]["parts"])[:3] == STRUCTURED_PARTS[:3]
    # Followed live: the DELETE sent while it was read ends it there, as an abort.
    assert resumed["deleted"] == 200
    assert resumed["chunks"][-1] == {"type": "abort"}
    assert resumed["error"] is None


async def test_a_reconnect_reads_the_stream_to_its_finish_then_finds_none(
    server: ScriptedServer, ai_sdk: NodeAISDK
) -> None:
    words = [f"w{i} " for i in range(30)]
    leave = {"type": "text-delta", "action": "abort"}
    left, resumed, after = await ai_sdk.transport(
        server.base_url,
        send("chat3", words, gap_ms=40, at=leave),
        {"do": "reconnect", "chatId": "chat3"},
        {"do": "reconnect", "chatId": "chat3"},
    )

    assert left["aborted"] is True
    [step, text] = resumed["message"]["parts"]
    assert step == {"type": "step-start"}
    assert text["text"] == "".join(words)  # every word once, from the first
    assert resumed["chunks"][-1] == {"type": "finish", "finishReason": "stop"}
    assert after == {"none": True}  # 204: the chat has no active stream


async def test_a_chat_that_never_streamed_has_no_stream_to_resume(
    server: ScriptedServer, ai_sdk: NodeAISDK
) -> None:
    [got] = await ai_sdk.transport(server.base_url, {"do": "reconnect", "chatId": "nothing"})

    assert got == {"none": True}


async def test_delete_cancels_the_generation_upstream(
    server: ScriptedServer, ai_sdk: NodeAISDK
) -> None:
    stop = {"type": "text-delta", "action": "delete"}
    [got, again] = await ai_sdk.transport(
        server.base_url,
        send("chat4", ["a ", "b "], then="hang", at=stop),
        {"do": "delete", "chatId": "chat4"},
    )

    assert got["deleted"] == 200
    assert [chunk["type"] for chunk in got["chunks"][-3:]] == ["text-end", "finish-step", "abort"]
    await wait_until(lambda: len(server.provider.closed) == 1)  # the upstream was closed
    assert again["status"] == 404
    assert again["body"]["error"]["code"] == "stream_not_found"


async def test_a_new_message_cancels_the_chats_stream_still_generating(
    server: ScriptedServer, ai_sdk: NodeAISDK
) -> None:
    leave = {"type": "text-delta", "action": "abort"}
    _, second = await ai_sdk.transport(
        server.base_url,
        send("chat5", ["first "], then="hang", at=leave),
        send("chat5", ["second"]),
    )

    assert second["message"]["parts"][1]["text"] == "second"
    await wait_until(lambda: len(server.provider.closed) == 2)  # the first no longer generates


async def test_tool_results_go_upstream_as_the_calls_and_their_tool_messages(
    server: ScriptedServer, ai_sdk: NodeAISDK
) -> None:
    call_id, name, arguments = CALLS[0]
    reply = {
        "id": "a1",
        "role": "assistant",
        "parts": [
            {"type": "step-start"},
            {"type": "reasoning", "text": "thinking", "state": "done"},
            {"type": "text", "text": "Let me look.", "state": "done"},
            {"type": f"tool-{name}", "toolCallId": call_id, "state": "output-available",
             "input": json.loads(arguments), "output": {"temperature": 21}},
            {"type": "step-start"},
            {"type": "text", "text": script(["ok"]), "state": "done"},  # the provider's script
        ],
    }  # fmt: skip
    messages = [user("weather?"), reply]
    [got] = await ai_sdk.transport(
        server.base_url, {"do": "send", "chatId": "chat6", "messages": messages}
    )

    assert got["error"] is None
    # The answer continues the assistant message that made the call (useChat's id for it).
    assert got["chunks"][0] == {"type": "start", "messageId": "a1"}
    sent = server.provider.requests[-1].messages
    assert [(m.role, m.text) for m in sent] == [
        ("user", "weather?"),
        ("assistant", "Let me look."),
        ("tool", '{"temperature": 21}'),
        ("assistant", script(["ok"])),
    ]
    [call] = sent[1].tool_calls
    assert (call.id, call.name, json.loads(call.arguments)) == (
        call_id,
        name,
        json.loads(arguments),
    )
    assert sent[2].tool_call_id == call_id


async def test_a_bad_body_is_the_transports_error_and_starts_nothing(
    server: ScriptedServer, ai_sdk: NodeAISDK
) -> None:
    bad = {"do": "send", "chatId": "chat7", "messages": [{"id": "x", "role": "robot", "parts": []}]}
    [got] = await ai_sdk.transport(server.base_url, bad)

    assert json.loads(got["error"])["error"]["code"] == "invalid_messages"
    assert server.provider.requests == []


async def test_with_the_redis_stores_another_instance_resumes_and_cancels_the_chat(
    serve: ServeFactory, redis_url: str, ai_sdk: NodeAISDK
) -> None:
    config = base_config(
        redis={"url": redis_url, "lease_s": 1},
        resume={"store": "redis", "grace_s": 30},
        conversations={"store": "redis"},
        routes={API: {"transport": "ai-sdk", "provider": "scripted"}},
        **SCRIPTED,
    )
    apps = [streamserver.create_app(config) for _ in range(2)]
    first, second = [(await serve(app=app)).base_url + API for app in apps]
    leave = {"type": "tool-input-start", "action": "abort"}
    left, resumed = await ai_sdk.transport(
        first,
        send("chat8", STRUCTURED, then="hang", at=leave),
        {"do": "reconnect", "chatId": "chat8", "api": second,
         "at": {"type": "text-end", "action": "delete"}},
    )  # fmt: skip

    assert left["aborted"] is True
    assert resumed["chunks"][0] == left["chunks"][0]  # the same stream, from its start
    assert without_ids(resumed["message"]["parts"])[:3] == STRUCTURED_PARTS[:3]
    assert resumed["deleted"] == 200  # the DELETE on the second reached the first's generation
    assert resumed["chunks"][-1] == {"type": "abort"}
    provider = apps[0][SERVICE].providers["scripted"]
    await wait_until(lambda: len(provider.closed) == 1, timeout=5)
