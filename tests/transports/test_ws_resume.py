"""WebSocket resume: a socket that drops leaves its stream running for ``resume.grace_s``; a new
socket sends ``{"type": "resume", "stream_id", "received"}`` and gets the rest, no gap, no repeat."""

from __future__ import annotations

import json

import pytest
import websockets
from conftest import SCRIPTED, base_config, script, wait_until

import streamserver
from streamserver.web.keys import SERVICE

DELTAS = [f"w{i} " for i in range(40)]
KEYS = "alice:sk-alice-0123456789,bob:sk-bob-9876543210"


def ws_url(client, path="/ws/stream") -> str:
    return client.base_url.replace("http://", "ws://") + path


async def until_done(socket) -> list[dict]:
    messages = []
    while not messages or messages[-1]["type"] != "done":
        messages.append(json.loads(await socket.recv()))
    return messages


def text(messages) -> str:
    return "".join(m["content"] for m in messages if m["type"] == "token")


async def served(serve, **resume):
    app = streamserver.create_app(base_config(resume={"grace_s": 5, **resume}, **SCRIPTED))
    client = await serve(app=app)
    return app, client


async def start_and_drop(client, deltas, received: int, **options) -> tuple[str, list[dict]]:
    """Start a stream on a socket, read ``received`` messages, close the socket."""
    async with websockets.connect(ws_url(client)) as socket:
        await socket.send(json.dumps({"prompt": script(deltas, **options), "model": "scripted"}))
        messages = [json.loads(await socket.recv()) for _ in range(received)]
    return messages[0]["stream_id"], messages


async def resume(client, **fields) -> list[dict]:
    async with websockets.connect(ws_url(client)) as socket:
        await socket.send(json.dumps({"type": "resume", **fields}))
        return await until_done(socket)


@pytest.mark.parametrize("received", [1, 4, 6])
async def test_a_new_socket_resumes_from_the_count_it_has_with_no_gap_and_no_repeat(
    serve, received
):
    app, client = await served(serve)
    provider = app[SERVICE].providers["scripted"]
    stream_id, first = await start_and_drop(client, DELTAS, 6, gap_ms=5)

    # The client says how many messages it has: the ones it lost in flight are sent again.
    rest = await resume(client, stream_id=stream_id, received=received)

    assert first[0] == {"type": "start", "stream_id": stream_id}
    assert text(first[:received]) + text(rest) == "".join(DELTAS)
    assert rest[-1] == {"type": "done", "full_response": "".join(DELTAS)}
    assert len(provider.started) == 1  # resumed, never generated again


async def test_a_finished_stream_is_replayed_from_its_retained_messages(serve):
    app, client = await served(serve)
    stream_id, first = await start_and_drop(client, ["a ", "b ", "c"], 2)
    await wait_until(lambda: app[SERVICE].streams.get(stream_id).finished)

    rest = await resume(client, stream_id=stream_id, received=2)

    assert text(first) + text(rest) == "a b c"
    assert rest[-1]["type"] == "done"


async def test_a_dropped_stream_nobody_resumes_is_cancelled_after_the_grace_time(serve):
    app, client = await served(serve, grace_s=0.3)
    provider = app[SERVICE].providers["scripted"]
    stream_id, _ = await start_and_drop(client, ["x"], 2, then="hang")
    stream = app[SERVICE].streams.get(stream_id)

    assert not stream.finished  # kept for a resume at first
    await wait_until(lambda: stream.finished, timeout=3)
    assert stream.summary.outcome == "client_gone"
    assert provider.closed


async def test_without_a_grace_time_a_dropped_socket_cancels_at_once(serve):
    app = streamserver.create_app(base_config(resume={"grace_s": 0}, **SCRIPTED))
    client = await serve(app=app)
    stream_id, _ = await start_and_drop(client, ["x"], 2, then="hang")

    await wait_until(lambda: app[SERVICE].streams.get(stream_id).finished, timeout=1)
    assert app[SERVICE].streams.get(stream_id).summary.outcome == "client_gone"


async def test_resume_then_cancel_reaches_the_stream(serve):
    app, client = await served(serve)
    stream_id, _ = await start_and_drop(client, ["x "], 2, then="hang")
    async with websockets.connect(ws_url(client)) as socket:
        await socket.send(json.dumps({"type": "resume", "stream_id": stream_id, "received": 2}))
        await wait_until(lambda: app[SERVICE].streams.get(stream_id).log.readers == 1)
        await socket.send(json.dumps({"type": "cancel"}))
        done = await until_done(socket)

    assert done == [{"type": "done", "full_response": "x ", "cancelled": True}]


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"stream_id": "st_nope", "received": 0}, "stream_not_found"),
        ({"received": 0}, "invalid_resume"),
        ({"stream_id": "{id}", "received": -1}, "invalid_resume"),
        ({"stream_id": "{id}", "received": "3"}, "invalid_resume"),
        ({"stream_id": "{id}", "received": True}, "invalid_resume"),
        ({"stream_id": 7, "received": 0}, "invalid_resume"),
        ({"stream_id": "{id}", "received": 0, "prompt": "x"}, "unknown_field"),
        ({"stream_id": "{id}", "received": 5}, "stream_finished"),
        ({"stream_id": "{id}", "received": 6}, "invalid_resume"),  # more than it ever had
    ],
)
async def test_a_bad_resume_gets_an_error_message_and_the_socket_stays_usable(serve, fields, code):
    app, client = await served(serve)
    stream_id, _ = await start_and_drop(client, ["a", "b", "c"], 1)
    await wait_until(lambda: app[SERVICE].streams.get(stream_id).finished)
    fields = {k: stream_id if v == "{id}" else v for k, v in fields.items()}
    async with websockets.connect(ws_url(client)) as socket:
        await socket.send(json.dumps({"type": "resume", **fields}))
        error = json.loads(await socket.recv())
        await socket.send(json.dumps({"prompt": "still usable", "model": "echo"}))
        done = (await until_done(socket))[-1]

    assert error["type"] == "error"
    assert error["code"] == code
    assert done["full_response"] == "still usable"


async def test_a_stream_of_another_route_cannot_be_resumed_here(serve):
    _, client = await served(serve)
    async with client.http.stream(
        "GET", "/v1/stream", params={"prompt": script(["a"]), "model": "scripted"}
    ) as response:
        stream_id = response.headers["X-Stream-ID"]
    async with websockets.connect(ws_url(client)) as socket:
        await socket.send(json.dumps({"type": "resume", "stream_id": stream_id, "received": 0}))
        error = json.loads(await socket.recv())

    assert error["code"] == "invalid_resume"
    assert "/v1/stream" in error["error"]


async def test_messages_no_longer_kept_are_refused_as_expired(serve):
    _, client = await served(serve, grace_s=0, max_bytes_per_stream=300)
    deltas = [f"{i:03d}" * 8 for i in range(30)]
    async with websockets.connect(ws_url(client)) as socket:
        await socket.send(json.dumps({"prompt": script(deltas), "model": "scripted"}))
        stream_id = json.loads(await socket.recv())["stream_id"]
        await until_done(socket)

    async with websockets.connect(ws_url(client)) as socket:
        await socket.send(json.dumps({"type": "resume", "stream_id": stream_id, "received": 1}))
        error = json.loads(await socket.recv())

    assert error["code"] == "events_expired"


async def test_with_auth_only_the_key_that_started_a_stream_may_resume_it(serve, monkeypatch):
    monkeypatch.setenv("STREAMSERVER_API_KEYS", KEYS)
    app = streamserver.create_app(
        base_config(auth={"mode": "api_key"}, resume={"grace_s": 5}, **SCRIPTED)
    )
    client = await serve(app=app)
    alice = {"Authorization": "Bearer sk-alice-0123456789"}
    bob = {"Authorization": "Bearer sk-bob-9876543210"}
    async with websockets.connect(ws_url(client), additional_headers=alice) as socket:
        await socket.send(
            json.dumps({"prompt": script(["a ", "b"], gap_ms=50), "model": "scripted"})
        )
        stream_id = json.loads(await socket.recv())["stream_id"]

    async with websockets.connect(ws_url(client), additional_headers=bob) as socket:
        await socket.send(json.dumps({"type": "resume", "stream_id": stream_id, "received": 1}))
        refused = json.loads(await socket.recv())
    async with websockets.connect(ws_url(client), additional_headers=alice) as socket:
        await socket.send(json.dumps({"type": "resume", "stream_id": stream_id, "received": 1}))
        resumed = await until_done(socket)

    assert refused["code"] == "stream_not_found"
    assert text(resumed) == "a b"
