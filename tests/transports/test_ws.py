"""/ws/stream as clients see it, with the independent ``websockets`` client and with aiohttp's."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import aiohttp
import pytest
import websockets
from conftest import SCRIPTED, base_config, script, wait_until
from fakes.reset_client import send_then_reset

import streamserver
from streamserver.web.keys import SERVICE


def ws_url(client, path="/ws/stream") -> str:
    return client.base_url.replace("http://", "ws://") + path


async def receive_until_done(socket) -> list[dict]:
    messages = []
    while True:
        message = json.loads(await socket.recv())
        messages.append(message)
        if message.get("type") in ("done", "error"):
            return messages


async def test_a_prompt_streams_start_tokens_and_done(client):
    async with websockets.connect(ws_url(client)) as socket:
        await socket.send(json.dumps({"prompt": "Hello over WebSocket", "model": "echo"}))
        messages = await receive_until_done(socket)

    assert messages[0] == {"type": "start", "stream_id": messages[0]["stream_id"]}
    assert messages[0]["stream_id"].startswith("st_")
    assert all(m["type"] == "token" and set(m) == {"type", "content"} for m in messages[1:-1])
    assert "".join(m["content"] for m in messages[1:-1]) == "Hello over WebSocket"
    assert messages[-1] == {"type": "done", "full_response": "Hello over WebSocket"}


async def test_one_socket_serves_several_prompts_in_turn(client):
    async with websockets.connect(ws_url(client)) as socket:
        replies = []
        for prompt in ("first one", "second one"):
            await socket.send(json.dumps({"prompt": prompt, "model": "echo"}))
            replies.append((await receive_until_done(socket))[-1]["full_response"])

    assert replies == ["first one", "second one"]


async def test_an_empty_prompt_is_refused_and_the_socket_stays_open(client):
    async with websockets.connect(ws_url(client)) as socket:
        await socket.send(json.dumps({"prompt": ""}))
        refused = json.loads(await socket.recv())
        await socket.send(json.dumps({"prompt": "still here", "model": "echo"}))
        done = (await receive_until_done(socket))[-1]

    assert refused["error"] == "No prompt provided"
    assert done["full_response"] == "still here"


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{not json", "invalid_json"),
        ("[1, 2]", "invalid_json"),
        (json.dumps({"prompt": "x", "colour": "blue"}), "unknown_field"),
        (json.dumps({"type": "dance"}), "unknown_type"),
        (json.dumps({"prompt": "x", "max_tokens": "many"}), "invalid_max_tokens"),
        (json.dumps({"prompt": "x", "max_tokens": "\u00b2"}), "invalid_max_tokens"),
        (json.dumps({"prompt": "x", "max_tokens": "\u0663"}), "invalid_max_tokens"),
        (json.dumps({"prompt": "x", "model": "no-such-model"}), "unknown_model"),
        (json.dumps({"prompt": "half an emoji \ud83d"}), "invalid_text"),
        (b"\x00\x01binary", "binary_not_supported"),
        ('{"prompt": ' + "[" * 30000 + "]" * 30000 + "}", "invalid_json"),
    ],
)
async def test_bad_input_gets_an_error_message_and_the_socket_stays_usable(client, frame, code):
    async with websockets.connect(ws_url(client)) as socket:
        await socket.send(frame)
        error = json.loads(await socket.recv())
        await socket.send(json.dumps({"prompt": "works after", "model": "echo"}))
        done = (await receive_until_done(socket))[-1]

    assert error["type"] == "error"
    assert error["code"] == code
    assert done["full_response"] == "works after"


async def test_a_message_over_the_limit_is_refused_without_closing(serve):
    client = await serve(base_config(server={"ws_max_message_bytes": 1000}))
    async with websockets.connect(ws_url(client)) as socket:
        await socket.send(json.dumps({"prompt": "x" * 2000}))
        error = json.loads(await socket.recv())
        await socket.send(json.dumps({"prompt": "small", "model": "echo"}))
        done = (await receive_until_done(socket))[-1]

    assert error["code"] == "message_too_large"
    assert done["full_response"] == "small"


async def test_a_huge_message_closes_with_1009(serve):
    client = await serve(base_config(server={"ws_max_message_bytes": 1000}))
    async with websockets.connect(ws_url(client)) as socket:
        await socket.send(json.dumps({"prompt": "x" * 10_000}))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await socket.recv()

    assert closed.value.rcvd.code == 1009


async def test_repeated_violations_close_with_1008(client):
    async with websockets.connect(ws_url(client)) as socket:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            for _ in range(25):
                await socket.send("nope")
                await socket.recv()

    assert closed.value.rcvd.code == 1008


async def test_cancel_ends_the_stream_within_100ms_with_the_text_so_far(serve):
    app = streamserver.create_app(base_config(**SCRIPTED))
    client = await serve(app=app)
    provider = app[SERVICE].providers["scripted"]
    async with websockets.connect(ws_url(client)) as socket:
        await socket.send(
            json.dumps({"prompt": script(["partial ", "answer"], then="hang"), "model": "scripted"})
        )
        seen = [json.loads(await socket.recv()) for _ in range(3)]  # start, 2 tokens
        sent = time.monotonic()
        await socket.send(json.dumps({"type": "cancel"}))
        done = (await receive_until_done(socket))[-1]
        elapsed = time.monotonic() - sent

    assert [m["type"] for m in seen] == ["start", "token", "token"]
    assert done == {"type": "done", "full_response": "partial answer", "cancelled": True}
    assert elapsed < 0.1
    assert provider.closed


async def test_a_new_prompt_during_a_stream_is_refused_by_default(serve):
    client = await serve(base_config(**SCRIPTED))
    async with websockets.connect(ws_url(client)) as socket:
        await socket.send(json.dumps({"prompt": script(["a"], then="hang"), "model": "scripted"}))
        await socket.recv()  # start
        await socket.send(json.dumps({"prompt": "another", "model": "echo"}))
        messages = [json.loads(await socket.recv()) for _ in range(2)]

    assert {"type": "error", "code": "stream_in_progress"}.items() <= next(
        m for m in messages if m["type"] == "error"
    ).items()


async def test_a_route_may_let_a_new_prompt_replace_the_running_one(serve):
    routes = {
        "/ws/replace": {
            "transport": "ws",
            "formatter": "simple",
            "busy": "replace",
            "allow": ["model"],
        }
    }
    client = await serve(base_config(routes=routes, **SCRIPTED))
    async with websockets.connect(ws_url(client, "/ws/replace")) as socket:
        await socket.send(json.dumps({"prompt": script(["old"], then="hang"), "model": "scripted"}))
        first = await receive_until_done_after_types(socket, ["start", "token"])
        await socket.send(json.dumps({"prompt": "new one", "model": "echo"}))
        cancelled = (await receive_until_done(socket))[-1]
        replaced = await receive_until_done(socket)

    assert first[-1] == {"type": "token", "content": "old"}
    assert cancelled == {"type": "done", "full_response": "old", "cancelled": True}
    assert replaced[-1] == {"type": "done", "full_response": "new one"}


async def receive_until_done_after_types(socket, types):
    return [json.loads(await socket.recv()) for _ in types]


async def test_closing_the_socket_cancels_the_stream(serve):
    app = streamserver.create_app(base_config(**SCRIPTED))
    client = await serve(app=app)
    provider = app[SERVICE].providers["scripted"]
    async with websockets.connect(ws_url(client)) as socket:
        await socket.send(json.dumps({"prompt": script(["x"], then="hang"), "model": "scripted"}))
        await socket.recv()
        await socket.recv()

    await wait_until(lambda: bool(provider.closed), timeout=1)
    await wait_until(lambda: app[SERVICE].streams.active == 0, timeout=1)
    assert provider.closed  # the upstream was closed, and no stream is left running
    assert app[SERVICE].streams.active == 0


async def test_aiohttp_client_sees_the_same_protocol(client):
    async with aiohttp.ClientSession() as session, session.ws_connect(ws_url(client)) as socket:
        await socket.send_json(
            {"prompt": "aiohttp client", "model": "echo", "buffer": "word", "format": "events"}
        )
        messages = []
        while not messages or messages[-1]["type"] != "done":
            messages.append(await socket.receive_json())

    assert "".join(m.get("content", "") for m in messages) == "aiohttp client"
    assert messages[-1] == {"type": "done", "finished": True}


async def test_heartbeat_closes_a_peer_that_stops_answering_pings(serve):
    client = await serve(base_config(server={"ws_heartbeat_s": 0.1}))
    # autoping=False: this client never answers the server's pings, like a vanished peer.
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(ws_url(client), autoping=False) as socket,
    ):
        started = asyncio.get_running_loop().time()
        while True:
            message = await asyncio.wait_for(socket.receive(), timeout=3)
            if message.type in (
                aiohttp.WSMsgType.CLOSE,
                aiohttp.WSMsgType.CLOSED,
                aiohttp.WSMsgType.CLOSING,
            ):
                break
        elapsed = asyncio.get_running_loop().time() - started

    assert elapsed < 2


async def test_a_failure_while_sending_closes_the_socket_with_1011_not_silence(serve):
    config = base_config(plugins={"modules": ["broken_formatter"]})
    client = await serve(config)
    async with websockets.connect(ws_url(client)) as socket:
        await socket.send(json.dumps({"prompt": "hello", "model": "echo", "format": "broken"}))
        with pytest.raises(websockets.ConnectionClosedError) as closed:
            await asyncio.wait_for(socket.recv(), timeout=5)

    assert closed.value.rcvd.code == 1011


async def test_messages_ready_together_go_out_in_one_write_and_arrive_whole(serve):
    # The scripted provider yields 300 deltas without pausing: the socket's pump finds many
    # messages ready at a time. Count the writes on the connection's transport (asyncio's).
    app = streamserver.create_app(base_config(**SCRIPTED))
    writes: list[int] = []

    async def count_writes(request, response):
        if request.path == "/ws/stream":
            transport = request.transport
            write = transport.write
            transport.write = lambda data: (writes.append(len(data)), write(data))[1]

    app.on_response_prepare.append(count_writes)
    client = await serve(app=app)
    deltas = [f"d{i} " for i in range(300)]
    async with websockets.connect(ws_url(client), compression=None) as socket:
        await socket.send(json.dumps({"prompt": script(deltas), "model": "scripted"}))
        messages = await receive_until_done(socket)

    assert "".join(m["content"] for m in messages if m["type"] == "token") == "".join(deltas)
    assert len(messages) == 302  # start, 300 tokens, done
    assert len(writes) < 100, f"{len(writes)} writes for 302 messages"


async def test_a_client_gone_during_the_handshake_is_not_logged_as_an_error(client, caplog):
    upgrade = (
        b"GET /ws/stream HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )

    await send_then_reset(client.base_url, upgrade)
    health = await client.http.get("/health")  # the server is still serving

    assert health.status_code == 200
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_plain_get_of_a_websocket_route_is_a_json_400_that_says_to_upgrade(client):
    response = await client.http.get("/ws/stream")

    assert response.status_code == 400
    assert "Upgrade" in response.json()["error"]["message"]
