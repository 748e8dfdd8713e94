"""Resume by id, several readers, cancel by id, and the bounds on what is kept for resume."""

from __future__ import annotations

import asyncio
import json

import pytest
from conftest import SCRIPTED, base_config, script, wait_until

import streamserver
from streamserver.web.keys import SERVICE

DELTAS = [f"d{i} " for i in range(30)]


async def start_stream(client, deltas, **options) -> str:
    """Start a /v1/stream, read its stream_start, drop the connection; returns the stream id."""
    params = {"prompt": script(deltas, **options), "model": "scripted"}
    async with client.http.stream("GET", "/v1/stream", params=params) as response:
        return response.headers["X-Stream-ID"]


def text_of(got) -> str:
    return "".join(json.loads(e.data)["content"] for e in got.events if e.event == "token")


async def test_several_readers_each_get_every_event_from_their_own_position(serve):
    app = streamserver.create_app(base_config(resume={"grace_s": 5}, **SCRIPTED))
    client = await serve(app=app)
    stream_id = await start_stream(client, DELTAS, gap_ms=5)
    await wait_until(lambda: app[SERVICE].streams.get(stream_id).log.end > 11)

    first, second, late = await asyncio.gather(
        client.sse(f"/v1/streams/{stream_id}"),
        client.sse(f"/v1/streams/{stream_id}"),
        client.sse(f"/v1/streams/{stream_id}", headers={"Last-Event-ID": f"{stream_id}:10"}),
    )

    assert text_of(first) == text_of(second) == "".join(DELTAS)
    assert [e.id for e in first.events] == [e.id for e in second.events]
    assert late.events[0].id == f"{stream_id}:11"
    assert [e.id for e in late.events] == [e.id for e in first.events][11:]


async def test_resume_on_the_original_url_with_the_header_a_browser_sends(serve):
    app = streamserver.create_app(base_config(resume={"grace_s": 5}, **SCRIPTED))
    client = await serve(app=app)
    stream_id = await start_stream(client, DELTAS, gap_ms=2)
    await wait_until(lambda: app[SERVICE].streams.get(stream_id).log.end > 6)

    got = await client.sse("/v1/stream", params={"prompt": "ignored on resume", "model": "scripted"},
                           headers={"Last-Event-ID": f"{stream_id}:5"})  # fmt: skip

    assert got.events[0].id == f"{stream_id}:6"
    assert got.headers["X-Stream-ID"] == stream_id
    assert text_of(got) == "".join(DELTAS[5:])


async def test_a_last_event_id_from_another_route_is_refused(serve):
    client = await serve(base_config(resume={"grace_s": 5}, **SCRIPTED))
    stream_id = await start_stream(client, DELTAS, gap_ms=2)  # a /v1/stream stream

    got = await client.sse("/stream", params={"prompt": "hi"},
                           headers={"Last-Event-ID": f"{stream_id}:5"})  # fmt: skip

    assert got.status == 400
    assert json.loads(got.events[0].data)["error"]["code"] == "invalid_last_event_id"


async def test_a_finished_stream_replays_from_the_start_then_answers_204(serve):
    client = await serve(base_config(**SCRIPTED))
    got = await client.sse("/v1/stream", params={"prompt": script(["a", "b"]), "model": "scripted"})
    stream_id = got.headers["X-Stream-ID"]
    last_id = got.events[-1].id

    replay = await client.sse(f"/v1/streams/{stream_id}")
    after_end = await client.http.get(
        f"/v1/streams/{stream_id}", headers={"Last-Event-ID": last_id}
    )

    assert [e.data for e in replay.events] == [e.data for e in got.events]
    assert after_end.status_code == 204


async def test_an_id_from_another_stream_is_refused(serve):
    client = await serve(base_config(**SCRIPTED))
    got = await client.sse("/v1/stream", params={"prompt": script(["a"]), "model": "scripted"})
    stream_id = got.headers["X-Stream-ID"]

    response = await client.http.get(
        f"/v1/streams/{stream_id}", headers={"Last-Event-ID": "st_other:1"}
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_last_event_id"


async def test_delete_cancels_and_readers_get_the_end_event(serve):
    app = streamserver.create_app(base_config(resume={"grace_s": 5}, **SCRIPTED))
    client = await serve(app=app)
    provider = app[SERVICE].providers["scripted"]
    stream_id = await start_stream(client, ["x"], then="hang")
    reader = asyncio.create_task(client.sse(f"/v1/streams/{stream_id}"))
    await wait_until(lambda: app[SERVICE].streams.get(stream_id).log.readers == 1)

    deleted = await client.http.delete(f"/v1/streams/{stream_id}")
    got = await reader
    again = await client.http.delete(f"/v1/streams/{stream_id}")
    unknown = await client.http.delete("/v1/streams/st_nope")

    assert deleted.json() == {"id": stream_id, "cancelled": True}
    assert json.loads(got.events[-1].data)["finish_reason"] == "cancelled"
    assert provider.closed
    assert again.status_code == 409
    assert unknown.status_code == 404


async def test_retained_events_beyond_the_byte_budget_are_dropped_and_resume_before_them_is_410(
    serve,
):
    config = base_config(resume={"max_bytes_per_stream": 2000}, **SCRIPTED)
    client = await serve(config)
    deltas = [f"{i:04d}" * 10 for i in range(60)]
    got = await client.sse("/v1/stream", params={"prompt": script(deltas), "model": "scripted"})
    stream_id = got.headers["X-Stream-ID"]

    early = await client.http.get(
        f"/v1/streams/{stream_id}", headers={"Last-Event-ID": f"{stream_id}:1"}
    )
    recent = await client.sse(
        f"/v1/streams/{stream_id}", headers={"Last-Event-ID": got.events[-3].id}
    )
    metrics = (await client.http.get("/v1/stream/metrics")).json()

    assert text_of(got) == "".join(deltas)
    assert early.status_code == 410
    assert early.json()["error"]["code"] == "events_expired"
    assert len(recent.events) == 2
    assert metrics["trimmed_events"] > 0


async def test_the_oldest_finished_streams_are_evicted_past_max_streams(serve):
    client = await serve(base_config(resume={"max_streams": 2}, **SCRIPTED))
    ids = []
    for _ in range(4):
        got = await client.sse("/v1/stream", params={"prompt": script(["a"]), "model": "scripted"})
        ids.append(got.headers["X-Stream-ID"])

    statuses = [(await client.http.get(f"/v1/streams/{i}")).status_code for i in ids]
    metrics = (await client.http.get("/v1/stream/metrics")).json()

    assert statuses == [404, 404, 200, 200]
    assert metrics["evicted_streams"] == 2


async def test_retained_streams_expire_after_retain_s(serve):
    client = await serve(base_config(resume={"retain_s": 0.2}, **SCRIPTED))
    got = await client.sse("/v1/stream", params={"prompt": script(["a"]), "model": "scripted"})
    stream_id = got.headers["X-Stream-ID"]

    kept = await client.http.get(f"/v1/streams/{stream_id}")
    await asyncio.sleep(0.4)
    expired = await client.http.get(f"/v1/streams/{stream_id}")

    assert kept.status_code == 200
    assert expired.status_code == 404


async def refused_resume(client, stream_id: str, **request) -> str:
    """The error code of a ``GET /v1/streams/{id}`` that must be refused with a 400."""
    response = await client.http.get(f"/v1/streams/{stream_id}", **request)
    assert response.status_code == 400
    return response.json()["error"]["code"]


@pytest.mark.parametrize("seq", ["\u00b2", "\u0663", "9" * 5000])
async def test_a_last_event_id_whose_seq_is_not_ascii_digits_is_refused(serve, seq):
    client = await serve(base_config(**SCRIPTED))
    got = await client.sse("/v1/stream", params={"prompt": script(["a"]), "model": "scripted"})
    stream_id = got.headers["X-Stream-ID"]

    code = await refused_resume(client, stream_id, params={"last_event_id": f"{stream_id}:{seq}"})

    assert code == "invalid_last_event_id"


async def test_a_last_event_id_past_the_end_of_a_live_stream_is_refused(serve):
    client = await serve(base_config(resume={"grace_s": 5}, **SCRIPTED))
    stream_id = await start_stream(client, ["x"], then="hang")

    code = await refused_resume(client, stream_id, headers={"Last-Event-ID": f"{stream_id}:99"})

    assert code == "invalid_last_event_id"


async def test_a_websocket_stream_is_not_resumed_over_sse(serve):
    import websockets

    client = await serve(base_config(resume={"grace_s": 5}, **SCRIPTED))
    url = client.base_url.replace("http://", "ws://") + "/ws/stream"
    async with websockets.connect(url) as socket:
        await socket.send(json.dumps({"prompt": script(["a "], then="hang"), "model": "scripted"}))
        stream_id = json.loads(await socket.recv())["stream_id"]
        response = await client.http.get(f"/v1/streams/{stream_id}")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "not_an_sse_stream"
