"""/ws/chat/{conversation_id} and /v1/conversations/{id}: history that survives reloads and restarts."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time

import pytest
import websockets
from aiohttp.test_utils import TestServer
from conftest import SCRIPTED, Client, base_config, script, wait_until

import streamserver
from streamserver.web.keys import SERVICE


@pytest.fixture
def chat_config(tmp_path):
    def make(resume=None, **conversations):
        return base_config(
            conversations={"sqlite": {"path": str(tmp_path / "chat.sqlite3")}, **conversations},
            resume=resume or {},
            **SCRIPTED,
        )

    return make


def chat_url(client, conversation_id="c1") -> str:
    return client.base_url.replace("http://", "ws://") + f"/ws/chat/{conversation_id}"


async def turn(socket, message, **fields) -> list[dict]:
    await socket.send(json.dumps({"message": message, **fields}))
    replies = []
    while True:
        reply = json.loads(await socket.recv())
        replies.append(reply)
        if reply["type"] in ("done", "error"):
            return replies


async def test_a_turn_streams_tokens_then_done_with_the_message_count(serve, chat_config):
    client = await serve(chat_config())
    async with websockets.connect(chat_url(client)) as socket:
        first = await turn(socket, "hello there", model="echo")
        second = await turn(socket, "and again", model="echo")

    assert [m["type"] for m in first] == ["token", "token", "done"]
    assert "".join(m.get("content", "") for m in first) == "hello there"
    assert first[-1] == {"type": "done", "message_count": 2}
    assert second[-1] == {"type": "done", "message_count": 4}


async def test_the_provider_gets_the_whole_history_plus_the_new_message(serve, chat_config):
    app = streamserver.create_app(chat_config())
    client = await serve(app=app)
    provider = app[SERVICE].providers["scripted"]
    async with websockets.connect(chat_url(client)) as socket:
        await turn(socket, script(["Hi."]), model="scripted")
        await turn(socket, script(["Fine."]), model="scripted")

    sent = [(m.role, m.content) for m in provider.requests[-1].messages]
    assert sent == [
        ("user", script(["Hi."])), ("assistant", "Hi."), ("user", script(["Fine."])),
    ]  # fmt: skip


async def test_the_history_window_limits_what_the_provider_gets_not_what_is_stored(
    serve, chat_config
):
    app = streamserver.create_app(chat_config(max_messages=3))
    client = await serve(app=app)
    provider = app[SERVICE].providers["scripted"]
    async with websockets.connect(chat_url(client)) as socket:
        for word in ("one", "two", "three"):
            await turn(socket, script([word]), model="scripted")
    stored = (await client.http.get("/v1/conversations/c1")).json()

    assert len(provider.requests[-1].messages) == 3
    assert provider.requests[-1].messages[-1].content == script(["three"])
    assert stored["message_count"] == 6


async def test_the_history_window_also_stops_at_max_chars_keeping_the_newest_message(
    serve, chat_config
):
    app = streamserver.create_app(chat_config(max_messages=50, max_chars=60))
    client = await serve(app=app)
    provider = app[SERVICE].providers["scripted"]
    async with websockets.connect(chat_url(client)) as socket:
        await turn(socket, script(["a" * 30]), model="scripted")
        await turn(socket, script(["b" * 5]), model="scripted")
        await turn(socket, script(["c" * 100]), model="scripted")  # alone over the limit

    # Second turn: its 21-character prompt and the 30-character reply fit in 60; the first
    # 46-character prompt does not.
    assert [m.content for m in provider.requests[1].messages] == ["a" * 30, script(["b" * 5])]
    # Third turn: a 116-character prompt is over the limit alone, and still goes.
    assert [m.content for m in provider.requests[2].messages] == [script(["c" * 100])]


async def test_history_survives_a_server_restart(serve, chat_config):
    config = chat_config()
    first_server = TestServer(streamserver.create_app(config), host="127.0.0.1")
    await first_server.start_server()
    first = Client(str(first_server.make_url("")).rstrip("/"))
    async with websockets.connect(chat_url(first)) as socket:
        await turn(socket, "remember me", model="echo")
    await first.close()
    await first_server.close()  # the app shuts down: its store is closed

    second = await serve(config)  # a new app on the same database file
    async with websockets.connect(chat_url(second)) as socket:
        done = (await turn(socket, "still there?", model="echo"))[-1]
    history = (await second.http.get("/v1/conversations/c1")).json()

    assert done == {"type": "done", "message_count": 4}
    assert [m["content"] for m in history["messages"]] == [
        "remember me",
        "remember me",
        "still there?",
        "still there?",
    ]


async def test_a_cancelled_reply_is_stored_as_delivered_and_marked(serve, chat_config):
    client = await serve(chat_config())
    async with websockets.connect(chat_url(client)) as socket:
        await socket.send(
            json.dumps({"message": script(["half ", "a reply"], then="hang"), "model": "scripted"})
        )
        tokens = [json.loads(await socket.recv()) for _ in range(2)]
        await socket.send(json.dumps({"type": "cancel"}))
        done = json.loads(await socket.recv())
    history = (await client.http.get("/v1/conversations/c1")).json()

    assert [t["content"] for t in tokens] == ["half ", "a reply"]
    assert done == {"type": "done", "message_count": 2, "status": "cancelled"}
    assert history["messages"][1] == {
        **history["messages"][1],
        "content": "half a reply",
        "status": "cancelled",
    }


async def test_a_failed_reply_is_stored_as_delivered_and_marked(serve, chat_config):
    client = await serve(chat_config())
    async with websockets.connect(chat_url(client)) as socket:
        replies = await turn_until_done(socket, script(["before the fault"], then="fail"))
    history = (await client.http.get("/v1/conversations/c1")).json()

    assert [r["type"] for r in replies] == ["token", "error", "done"]
    assert replies[-1]["status"] == "failed"
    assert history["messages"][1]["content"] == "before the fault"
    assert history["messages"][1]["status"] == "failed"


async def turn_until_done(socket, message):
    await socket.send(json.dumps({"message": message, "model": "scripted"}))
    replies = []
    while not replies or replies[-1]["type"] != "done":
        replies.append(json.loads(await socket.recv()))
    return replies


async def test_a_socket_closed_mid_reply_stores_what_was_delivered(serve, chat_config):
    app = streamserver.create_app(chat_config())
    client = await serve(app=app)
    async with websockets.connect(chat_url(client)) as socket:
        await socket.send(
            json.dumps({"message": script(["seen "], then="hang"), "model": "scripted"})
        )
        await socket.recv()

    async def stored():
        return (await client.http.get("/v1/conversations/c1")).json()

    await wait_until(lambda: app[SERVICE].streams.active == 0, timeout=2)
    for _ in range(50):
        history = await stored()
        if history["message_count"] == 2:
            break
    assert history["messages"][1]["content"] == "seen "
    assert history["messages"][1]["status"] == "cancelled"


async def test_an_empty_message_is_refused_and_nothing_is_stored(serve, chat_config):
    client = await serve(chat_config())
    async with websockets.connect(chat_url(client)) as socket:
        await socket.send(json.dumps({"message": "  "}))
        error = json.loads(await socket.recv())
    missing = await client.http.get("/v1/conversations/c1")

    assert error["error"] == "No prompt provided"
    assert missing.status_code == 404


async def test_a_message_with_a_lone_surrogate_is_refused_as_bad_input_and_nothing_is_stored(
    serve, chat_config
):
    client = await serve(chat_config())
    async with websockets.connect(chat_url(client)) as socket:
        refused = await turn(socket, "half an emoji: \ud83d", model="echo")  # sent as "\\ud83d"
        after = await turn(socket, "a whole one: 🙂", model="echo")
    history = (await client.http.get("/v1/conversations/c1")).json()

    assert refused == [refused[0]] and refused[0]["type"] == "error"
    assert refused[0]["code"] == "invalid_text"
    assert after[-1] == {"type": "done", "message_count": 2}  # the socket stayed usable
    assert [m["content"] for m in history["messages"]] == ["a whole one: 🙂"] * 2


async def test_a_reply_with_a_lone_surrogate_from_a_broken_upstream_is_stored_losslessly(
    serve, chat_config
):
    client = await serve(chat_config())
    async with websockets.connect(chat_url(client)) as socket:
        replies = await turn(socket, script(["half ", "\ud83d", " emoji"]), model="scripted")
    history = (await client.http.get("/v1/conversations/c1")).json()

    assert replies[-1] == {"type": "done", "message_count": 2}
    assert history["messages"][1]["content"] == "half \ud83d emoji"
    assert history["messages"][1]["status"] == "complete"


@pytest.mark.parametrize(
    "bad_id", ["x" * 65, "has%20space", "semi;colon", "dot.dot", "%C3%A9t%C3%A9"]
)
async def test_invalid_conversation_ids_are_refused(serve, chat_config, bad_id):
    client = await serve(chat_config())
    response = await client.http.get(f"/v1/conversations/{bad_id}")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_conversation_id"
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with websockets.connect(chat_url(client, bad_id)):
            pass
    assert refused.value.response.status_code == 400


async def test_delete_removes_a_conversation(serve, chat_config):
    client = await serve(chat_config())
    async with websockets.connect(chat_url(client, "gone")) as socket:
        await turn(socket, "bye", model="echo")

    deleted = await client.http.delete("/v1/conversations/gone")
    again = await client.http.delete("/v1/conversations/gone")
    fetched = await client.http.get("/v1/conversations/gone")

    assert deleted.json() == {"id": "gone", "deleted": True}
    assert again.status_code == 404
    assert fetched.status_code == 404


async def history_of(client, conversation_id="c1") -> dict:
    return (await client.http.get(f"/v1/conversations/{conversation_id}")).json()


WORDS = [f"w{i} " for i in range(30)]


async def test_a_dropped_reply_resumes_on_a_new_socket_and_is_stored_once_whole(serve, chat_config):
    app = streamserver.create_app(chat_config(resume={"grace_s": 5}))
    client = await serve(app=app)
    async with websockets.connect(chat_url(client)) as socket:
        await socket.send(json.dumps({"message": script(WORDS, gap_ms=5), "model": "scripted"}))
        first = [json.loads(await socket.recv()) for _ in range(5)]
    async with websockets.connect(chat_url(client)) as socket:
        # Two of the five were lost in flight: the client says it has three.
        await socket.send(json.dumps({"type": "resume", "received": 3}))
        rest = await turn_until_done_resumed(socket)
    history = await history_of(client)

    assert "".join(m["content"] for m in first[:3] + rest[:-1]) == "".join(WORDS)
    assert rest[-1] == {"type": "done", "message_count": 2}
    assert [(m["role"], m["status"]) for m in history["messages"]] == [
        ("user", "complete"), ("assistant", "complete"),
    ]  # fmt: skip
    assert history["messages"][1]["content"] == "".join(WORDS)
    assert len(app[SERVICE].providers["scripted"].started) == 1


async def turn_until_done_resumed(socket) -> list[dict]:
    replies = []
    while not replies or replies[-1]["type"] != "done":
        replies.append(json.loads(await socket.recv()))
    return replies


async def test_a_reply_that_completes_while_disconnected_is_stored_whole(serve, chat_config):
    app = streamserver.create_app(chat_config(resume={"grace_s": 5}))
    client = await serve(app=app)
    async with websockets.connect(chat_url(client)) as socket:
        await socket.send(json.dumps({"message": script(WORDS, gap_ms=2), "model": "scripted"}))
        await socket.recv()
    await wait_until(lambda: app[SERVICE].streams.active == 0, timeout=3)
    stored = await history_of(client)
    async with websockets.connect(chat_url(client)) as socket:
        await socket.send(json.dumps({"type": "resume", "received": 1}))
        rest = await turn_until_done_resumed(socket)

    assert stored["messages"][1]["content"] == "".join(WORDS)
    assert stored["messages"][1]["status"] == "complete"
    assert WORDS[0] + "".join(m.get("content", "") for m in rest) == "".join(WORDS)
    assert rest[-1] == {"type": "done", "message_count": 2}


async def test_a_dropped_reply_nobody_resumes_is_stored_as_delivered_after_the_grace_time(
    serve, chat_config
):
    app = streamserver.create_app(chat_config(resume={"grace_s": 0.3}))
    client = await serve(app=app)
    async with websockets.connect(chat_url(client)) as socket:
        await socket.send(
            json.dumps({"message": script(["seen "], then="hang"), "model": "scripted"})
        )
        await socket.recv()
    assert app[SERVICE].streams.active == 1  # kept for a resume at first

    await wait_until(lambda: app[SERVICE].streams.active == 0, timeout=3)
    history = await history_of(client)
    assert history["messages"][1]["content"] == "seen "
    assert history["messages"][1]["status"] == "cancelled"


async def test_resume_without_a_reply_in_progress_is_refused(serve, chat_config):
    client = await serve(chat_config(resume={"grace_s": 5}))
    async with websockets.connect(chat_url(client, "fresh")) as socket:
        await socket.send(json.dumps({"type": "resume", "received": 0}))
        refused = json.loads(await socket.recv())

    assert refused["type"] == "error"
    assert refused["code"] == "stream_not_found"


async def test_a_resume_without_an_id_never_replays_an_earlier_finished_turn(serve, chat_config):
    # A page whose new prompt was lost in a drop asks for "the reply in progress" with nothing
    # received: the last turn is over, so it is told to read the history instead.
    client = await serve(chat_config(resume={"grace_s": 5}))
    async with websockets.connect(chat_url(client)) as socket:
        await turn(socket, "the old answer", model="echo")
    async with websockets.connect(chat_url(client)) as socket:
        await socket.send(json.dumps({"type": "resume", "received": 0}))
        refused = json.loads(await socket.recv())

    assert refused["code"] == "stream_not_found"
    assert "history" in refused["error"]


async def turn_with_errors(socket, message) -> list[dict]:
    await socket.send(json.dumps({"message": message, "model": "echo"}))
    return await turn_until_done_resumed(socket)


def fail_inserts(path, role: str) -> None:
    """Make the real SQLite database refuse to store ``role`` messages from now on."""
    with sqlite3.connect(path) as db:
        db.execute(
            f"CREATE TRIGGER refuse_{role} BEFORE INSERT ON messages WHEN NEW.role = '{role}' "
            "BEGIN SELECT RAISE(ABORT, 'disk says no'); END"
        )


async def test_a_reply_that_cannot_be_stored_ends_with_an_error_and_done(
    serve, chat_config, tmp_path
):
    client = await serve(chat_config())
    async with websockets.connect(chat_url(client, "warm-up")) as socket:
        await turn(socket, "creates the tables", model="echo")
    fail_inserts(tmp_path / "chat.sqlite3", "assistant")
    async with websockets.connect(chat_url(client)) as socket:
        replies = await turn_with_errors(socket, "lost reply")
        after = await turn_with_errors(socket, "still usable")

    assert [r["type"] for r in replies] == ["token", "token", "error", "done"]
    assert replies[2]["code"] == "store_failed"
    assert replies[3] == {"type": "done", "message_count": 1, "status": "failed"}
    assert after[-1]["status"] == "failed"  # the socket goes on; the store still refuses


async def test_a_prompt_that_cannot_be_stored_is_refused_and_leaves_no_stream(
    serve, chat_config, tmp_path
):
    app = streamserver.create_app(chat_config())
    client = await serve(app=app)
    async with websockets.connect(chat_url(client, "warm-up")) as socket:
        await turn(socket, "creates the tables", model="echo")
    fail_inserts(tmp_path / "chat.sqlite3", "user")
    async with websockets.connect(chat_url(client)) as socket:
        await socket.send(json.dumps({"message": script(["never"]), "model": "scripted"}))
        refused = json.loads(await socket.recv())
        await socket.send(json.dumps({"type": "resume", "received": 0}))
        nothing = json.loads(await socket.recv())
    await wait_until(lambda: not app[SERVICE].streams.live())
    history = await client.http.get("/v1/conversations/c1")

    assert refused == {**refused, "type": "error", "code": "store_failed"}
    assert nothing["code"] == "stream_not_found"
    assert history.status_code == 404  # no reply stored to a prompt that was not
    assert all(s.finished for s in app[SERVICE].streams.streams.values())


async def test_a_stalled_reader_holds_the_reply_store_only_briefly(serve, chat_config):
    app = streamserver.create_app(chat_config(resume={"grace_s": 5}))
    client = await serve(app=app)
    async with websockets.connect(chat_url(client)) as socket:
        await socket.send(
            json.dumps({"message": script(["a ", "b "], gap_ms=100), "model": "scripted"})
        )
        await wait_until(lambda: bool(app[SERVICE].streams.streams))
        stream = next(iter(app[SERVICE].streams.streams.values()))
        stalled = stream.attach(0)  # a second reader that never writes (a peer that stopped)
        began = time.monotonic()
        replies = await asyncio.wait_for(turn_until_done_resumed(socket), timeout=10)
        waited = time.monotonic() - began
        stream.detach(stalled)

    assert replies[-1] == {"type": "done", "message_count": 2}
    assert 1.0 < waited < 3.5  # 0.2 s of tokens, then ~1 s for it, not send_timeout_s (30 s)
