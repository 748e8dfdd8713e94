"""Conversations with tools: /ws/chat streams the calls, takes the results as ``tool_result``
messages, continues the turn once every call has one, and keeps a history any upstream takes."""

from __future__ import annotations

import json

import pytest
import websockets
from conftest import script
from test_chat import chat_config, chat_url, history_of  # noqa: F401  (the fixture)

import streamserver
from streamserver.conversations import StoredMessage, window
from streamserver.types import Message, ToolCall
from streamserver.web.keys import SERVICE

TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}},
    {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}},
]
CALLS = [
    {"tool": 0, "id": "call_w", "name": "get_weather", "arguments": '{"city": '},
    {"tool": 0, "arguments": '"Paris"}'},
    {"tool": 1, "id": "call_t", "name": "get_time", "arguments": "{}"},
]


async def receive_until(socket, *types: str) -> list[dict]:
    replies = []
    while True:
        replies.append(json.loads(await socket.recv()))
        if replies[-1]["type"] in (*types, "error"):
            return replies


async def send(socket, **message) -> None:
    await socket.send(json.dumps(message))


@pytest.fixture
async def chat(serve, chat_config):  # noqa: F811
    app = streamserver.create_app(chat_config())
    client = await serve(app=app)
    return app, client


async def test_a_turn_with_tools_streams_the_calls_then_continues_with_their_results(chat):
    app, client = chat
    provider = app[SERVICE].providers["scripted"]
    async with websockets.connect(chat_url(client)) as socket:
        await send(socket, message=script(["Checking. ", *CALLS], finish="tool_calls"),
                   model="scripted", tools=TOOLS)  # fmt: skip
        first = await receive_until(socket, "done")
        await send(socket, type="tool_result", tool_call_id="call_w", content="sunny, 21 °C")
        (stored,) = await receive_until(socket, "tool_result_stored")
        await send(
            socket, type="tool_result", tool_call_id="call_t", content=script(["It is ", "noon."])
        )
        second = await receive_until(socket, "done")

    calls = [m for m in first if m["type"] == "tool_call"]
    assert [(c["id"], c["name"], c["arguments"]) for c in calls] == [
        ("call_w", "get_weather", '{"city": "Paris"}'),
        ("call_t", "get_time", "{}"),
    ]
    assert first[-1] == {
        "type": "done",
        "message_count": 2,
        "pending_tool_calls": ["call_w", "call_t"],
    }
    assert stored == {"type": "tool_result_stored", "tool_call_id": "call_w",
                      "pending_tool_calls": ["call_t"], "message_count": 3}  # fmt: skip
    assert "".join(m.get("content", "") for m in second if m["type"] == "token") == "It is noon."
    assert second[-1] == {"type": "done", "message_count": 5}

    # The continuation sent the upstream a valid conversation, with the turn's tools again.
    request = provider.requests[-1]
    assert [m.role for m in request.messages] == ["user", "assistant", "tool", "tool"]
    assert request.messages[1].tool_calls == (
        ToolCall("call_w", "get_weather", '{"city": "Paris"}', 0),
        ToolCall("call_t", "get_time", "{}", 1),
    )
    assert request.messages[1].content == "Checking. "
    assert [m.tool_call_id for m in request.messages[2:]] == ["call_w", "call_t"]
    assert request.messages[2].content == "sunny, 21 °C"
    assert [t["function"]["name"] for t in request.tools] == ["get_weather", "get_time"]

    history = await history_of(client)
    assert [m["role"] for m in history["messages"]] == [
        "user",
        "assistant",
        "tool",
        "tool",
        "assistant",
    ]
    assert history["messages"][1]["tool_calls"][0] == {
        "id": "call_w",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
    }
    assert history["messages"][2]["tool_call_id"] == "call_w"


async def test_a_tool_result_for_no_pending_call_is_refused_and_the_socket_stays_open(chat):
    _, client = chat
    async with websockets.connect(chat_url(client)) as socket:
        await send(socket, type="tool_result", tool_call_id="call_x", content="?")
        (refused,) = await receive_until(socket, "done")
        await send(socket, message=script([CALLS[2]], finish="tool_calls"), model="scripted",
                   tools=TOOLS)  # fmt: skip
        await receive_until(socket, "done")
        await send(socket, type="tool_result", tool_call_id="call_w", content="?")
        (wrong,) = await receive_until(socket, "done")
        await send(socket, type="tool_result", tool_call_id=7, content="?")
        (bad,) = await receive_until(socket, "done")

    assert refused["code"] == "unknown_tool_call"
    assert wrong["code"] == "unknown_tool_call" and "call_t" in wrong["error"]
    assert bad["code"] == "invalid_tool_result"


async def test_the_calls_survive_a_restart_and_a_result_then_continues_the_turn(serve, chat_config):  # noqa: F811
    config = chat_config()
    first = await serve(config)
    async with websockets.connect(chat_url(first)) as socket:
        await send(socket, message=script([CALLS[2]], finish="tool_calls"), model="scripted",
                   tools=TOOLS)  # fmt: skip
        await receive_until(socket, "done")

    app = streamserver.create_app(config)  # a new process: the calls come from SQLite
    again = await serve(app=app)
    async with websockets.connect(chat_url(again)) as socket:
        await send(socket, type="tool_result", tool_call_id="call_t", content=script(["Noon."]),
                   tools=TOOLS, model="scripted")  # fmt: skip
        reply = await receive_until(socket, "done")

    assert "".join(m.get("content", "") for m in reply if m["type"] == "token") == "Noon."
    request = app[SERVICE].providers["scripted"].requests[-1]
    assert [m.role for m in request.messages] == ["user", "assistant", "tool"]


def test_the_window_never_sends_an_orphaned_result_or_an_unanswered_call():
    call = ToolCall("call_1", "f", "{}")
    history = [
        StoredMessage("user", "one"),
        StoredMessage("assistant", "", tool_calls=(call,)),
        StoredMessage("tool", "result", tool_call_id="call_1"),
        StoredMessage("assistant", "after the tool"),
        StoredMessage("user", "two"),
        StoredMessage("assistant", "let me check", tool_calls=(ToolCall("call_2", "f", "{}"),)),
        StoredMessage("user", "never mind"),
    ]
    # A window that cuts between the call and its result starts after the orphaned result.
    assert window(history[:4], 2, 10_000) == (Message("assistant", "after the tool"),)
    # A call nobody answered goes as its text only (upstreams refuse an unanswered call).
    assert window(history, 10, 10_000)[-2:] == (
        Message("assistant", "let me check"),
        Message("user", "never mind"),
    )
    # An answered call keeps its calls and its result.
    kept = window(history[:4], 10, 10_000)
    assert kept[1] == Message("assistant", "", (call,)) and kept[2].tool_call_id == "call_1"


def test_the_newest_tool_run_goes_whole_even_over_the_budget_and_arguments_count():
    call = ToolCall("call_1", "f", '{"q": "' + "x" * 500 + '"}')
    history = [
        StoredMessage("user", "old question"),
        StoredMessage("assistant", "old answer"),
        StoredMessage("user", "ask the tool"),
        StoredMessage("assistant", "", tool_calls=(call,)),
        StoredMessage("tool", "y" * 1000, tool_call_id="call_1"),
    ]
    # A result larger than max_chars still goes, with the call it answers (else the turn is stuck).
    assert [m.role for m in window(history, 10, 100)] == ["assistant", "tool"]
    # The call's 509 characters of arguments count: the run is 1509, the question before it 12.
    assert [m.role for m in window(history, 10, 1515)] == ["assistant", "tool"]
    assert [m.role for m in window(history, 10, 1530)] == ["user", "assistant", "tool"]
