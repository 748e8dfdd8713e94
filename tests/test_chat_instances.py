"""A conversation served by several instances: history, the reply in progress and one turn at a
time, with the ``redis`` store (two apps sharing a real redis-server) and, where the behaviour is
the same, the ``sqlite`` store (two sockets on one app, its one process)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import websockets
from aiohttp import web
from conftest import SCRIPTED, Client, base_config, script
from fakes.server_process import ServerProcess

import streamserver
from streamserver.web.keys import SERVICE

WORDS = [f"w{i} " for i in range(30)]


def chat_config(store: str, tmp_path, redis_url: str | None, **sections: Any) -> dict[str, Any]:
    """The scripted provider and the named conversation store (SQLite in ``tmp_path``)."""
    conversations: dict[str, Any] = {"store": store}
    if store == "redis":
        sections["redis"] = {"url": redis_url, **sections.get("redis", {})}
    else:
        conversations["sqlite"] = {"path": str(tmp_path / "chat.sqlite3")}
    return base_config(conversations=conversations, **SCRIPTED, **sections)


@dataclass
class Instances:
    """Two instances of the server (with ``sqlite``: one, reached twice)."""

    apps: list[web.Application]
    clients: list[Client]

    def url(self, i: int, conversation_id: str = "c1") -> str:
        base = self.clients[i].base_url.replace("http://", "ws://")
        return f"{base}/ws/chat/{conversation_id}"


@pytest.fixture(params=["sqlite", "redis"])
def store(request) -> str:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def two(serve, tmp_path, store, request):
    """Starts the two instances for ``store``."""

    async def start(**sections: Any) -> Instances:
        redis_url = request.getfixturevalue("redis_url") if store == "redis" else None
        config = chat_config(store, tmp_path, redis_url, **sections)
        apps = [streamserver.create_app(config)]
        if store == "redis":
            apps.append(streamserver.create_app(config))
        clients = [await serve(app=app) for app in apps]
        return Instances([apps[0], apps[-1]], [clients[0], clients[-1]])

    return start


async def receive_until_end(socket) -> list[dict]:
    replies = []
    while not replies or replies[-1]["type"] not in ("done", "error"):
        replies.append(json.loads(await socket.recv()))
    return replies


async def turn(socket, message: str, model: str = "scripted") -> list[dict]:
    await socket.send(json.dumps({"message": message, "model": model}))
    return await receive_until_end(socket)


async def turn_on(url: str, message: str) -> list[dict]:
    """One turn on a new socket (a socket refused again and again is closed)."""
    async with websockets.connect(url) as socket:
        return await turn(socket, message)


async def history(client: Client, conversation_id: str = "c1") -> httpx.Response:
    return await client.http.get(f"/v1/conversations/{conversation_id}")


async def test_two_turns_at_once_are_serialised_the_second_refused_never_interleaved(two):
    on = await two()
    slow = script(WORDS, gap_ms=10)
    async with websockets.connect(on.url(0)) as first, websockets.connect(on.url(1)) as second:
        await first.send(json.dumps({"message": slow, "model": "scripted"}))
        opening = json.loads(await first.recv())  # the first turn is under way
        refused = await turn(second, script(["never"]))
        rest = await receive_until_end(first)
        after = await turn(second, script(["next"]))
    stored = (await history(on.clients[1])).json()

    assert opening["type"] == "token"
    assert refused == [{**refused[0], "type": "error", "code": "conversation_busy"}]
    assert rest[-1] == {"type": "done", "message_count": 2}
    assert after[-1] == {"type": "done", "message_count": 4}
    assert [(m["role"], m["content"]) for m in stored["messages"]] == [
        ("user", slow), ("assistant", "".join(WORDS)),
        ("user", script(["next"])), ("assistant", "next"),
    ]  # fmt: skip


async def test_a_turn_longer_than_its_lease_keeps_it(two):
    # [redis] lease_s = 1 (renewed every third): the reply lasts about 1.5 s.
    on = await two(redis={"lease_s": 1})
    async with websockets.connect(on.url(0)) as first, websockets.connect(on.url(1)) as second:
        await first.send(json.dumps({"message": script(WORDS, gap_ms=50), "model": "scripted"}))
        for _ in range(25):  # 25 tokens 50 ms apart: past the first lease
            await first.recv()
        refused = await turn(second, script(["never"]))
        done = (await receive_until_end(first))[-1]

    assert refused[-1]["code"] == "conversation_busy"
    assert done == {"type": "done", "message_count": 2}


async def test_the_reply_in_progress_is_named_by_every_instance_until_it_is_stored(two):
    on = await two(resume={"grace_s": 5})
    async with websockets.connect(on.url(0)) as socket:
        await socket.send(json.dumps({"message": script(WORDS, gap_ms=10), "model": "scripted"}))
        await socket.recv()
        during = (await history(on.clients[1])).json()
        await receive_until_end(socket)
    after = (await history(on.clients[1])).json()
    (stream_id,) = on.apps[0][SERVICE].streams.streams

    assert during["reply_in_progress"] == stream_id
    assert during["message_count"] == 1  # the prompt, stored before the reply streams
    assert "reply_in_progress" not in after
    assert after["message_count"] == 2


async def test_a_turn_left_by_a_crashed_holder_is_free_once_its_lease_runs_out(two):
    on = await two()
    # An instance took the turn and died: nobody renews or ends it.
    assert await on.apps[0][SERVICE].conversations.begin_turn("c1", "crashed", 1.0)
    refused = await turn_on(on.url(1), script(["early"]))
    for _ in range(100):  # bounded: the lease is 1 s
        replies = await turn_on(on.url(1), script(["later"]))
        if replies[-1]["type"] == "done":
            break
        assert replies[-1]["code"] == "conversation_busy"
        await asyncio.sleep(0.05)

    assert refused[-1]["code"] == "conversation_busy"
    assert replies[-1] == {"type": "done", "message_count": 2}


async def test_history_is_shared_by_every_instance(serve, tmp_path, redis_url):
    config = chat_config("redis", tmp_path, redis_url)
    first_app, second_app = streamserver.create_app(config), streamserver.create_app(config)
    first, second = await serve(app=first_app), await serve(app=second_app)
    on = Instances([first_app, second_app], [first, second])
    async with websockets.connect(on.url(0)) as socket:
        await turn(socket, script(["Hi."]))
    async with websockets.connect(on.url(1)) as socket:
        done = (await turn(socket, script(["Fine."])))[-1]
    sent = second_app[SERVICE].providers["scripted"].requests[-1].messages
    seen_by_first = (await history(first)).json()
    deleted = await second.http.delete("/v1/conversations/c1")
    gone = await history(first)

    assert done == {"type": "done", "message_count": 4}
    assert [(m.role, m.content) for m in sent] == [
        ("user", script(["Hi."])), ("assistant", "Hi."), ("user", script(["Fine."])),
    ]  # fmt: skip
    assert [m["content"] for m in seen_by_first["messages"]] == [
        script(["Hi."]), "Hi.", script(["Fine."]), "Fine.",
    ]  # fmt: skip
    assert deleted.json() == {"id": "c1", "deleted": True}
    assert gone.status_code == 404


async def test_with_redis_away_a_turn_and_the_history_are_refused_cleanly_then_work_again(
    serve, tmp_path, redis_server, redis_url
):
    client = await serve(chat_config("redis", tmp_path, redis_url))
    url = client.base_url.replace("http://", "ws://") + "/ws/chat/c1"
    async with websockets.connect(url) as socket:
        hanging = script(["seen "], then="hang")
        await socket.send(json.dumps({"message": hanging, "model": "scripted"}))
        first = json.loads(await socket.recv())
        redis_server.stop()  # mid-reply: it goes on, and its end cannot be stored
        await socket.send(json.dumps({"type": "cancel"}))
        cut = [first, *await receive_until_end(socket)]
        cut.append(json.loads(await socket.recv()))  # the done after the error
        refused = await turn(socket, script(["down"]))
        read = await history(client)
        deleted = await client.http.delete("/v1/conversations/c1")
        redis_server.start()  # empty: the test server keeps nothing
        after = await turn(socket, script(["up again"]))  # the same socket, the same pool

    assert [m["type"] for m in cut] == ["token", "error", "done"]
    assert cut[1]["code"] == "store_failed"
    assert cut[-1] == {"type": "done", "message_count": 1, "status": "failed"}
    assert refused == [{**refused[0], "type": "error", "code": "store_failed"}]
    assert read.status_code == deleted.status_code == 503
    assert read.json()["error"]["code"] == deleted.json()["error"]["code"] == "store_failed"
    assert after[-1] == {"type": "done", "message_count": 2}


async def test_an_instance_killed_mid_turn_frees_the_turn_within_its_lease(
    serve, tmp_path, redis_url
):
    doomed = ServerProcess(
        {
            "providers": {"simulated": {"ttft_ms": 0, "tokens_per_second": 20,
                                        "answer_tokens": 400}},
            "conversations": {"store": "redis"},
            "redis": {"url": redis_url, "lease_s": 2},
        },
        tmp_path / "doomed",
    )  # fmt: skip
    await asyncio.to_thread(doomed.start)
    try:
        async with websockets.connect(f"ws://{doomed.address}/ws/chat/c1") as socket:
            await socket.send(json.dumps({"message": "a long answer, please"}))
            await socket.recv()  # its turn is under way
            await asyncio.to_thread(doomed.kill)  # no drain, no epilogue: the lock stays
    except websockets.ConnectionClosed:
        pass
    finally:
        await asyncio.to_thread(doomed.kill)
    survivor = await serve(chat_config("redis", tmp_path, redis_url))
    url = survivor.base_url.replace("http://", "ws://") + "/ws/chat/c1"
    refused = await turn_on(url, script(["early"]))
    for _ in range(100):  # bounded: the lease is 2 s
        replies = await turn_on(url, script(["later"]))
        if replies[-1]["type"] == "done":
            break
        assert replies[-1]["code"] == "conversation_busy"
        await asyncio.sleep(0.05)

    assert refused[-1]["code"] == "conversation_busy"
    assert replies[-1] == {"type": "done", "message_count": 3}  # after the dead turn's prompt


async def test_a_reply_dropped_on_one_instance_resumes_on_another(serve, tmp_path, redis_url):
    config = chat_config("redis", tmp_path, redis_url, resume={"store": "redis", "grace_s": 5})
    first, second = await serve(config), await serve(config)
    async with websockets.connect(first.base_url.replace("http", "ws") + "/ws/chat/c1") as socket:
        await socket.send(json.dumps({"message": script(WORDS, gap_ms=5), "model": "scripted"}))
        seen = [json.loads(await socket.recv()) for _ in range(3)]
    async with websockets.connect(second.base_url.replace("http", "ws") + "/ws/chat/c1") as socket:
        await socket.send(json.dumps({"type": "resume", "received": 3}))
        rest = await receive_until_end(socket)

    assert "".join(m.get("content", "") for m in seen + rest) == "".join(WORDS)
    assert rest[-1] == {"type": "done", "message_count": 2}
