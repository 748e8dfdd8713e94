"""Streams shared through Redis (``[resume] store = "redis"``): two instances (two apps, one
Redis), a stream started on one is resumed, read, cancelled and retried on the other."""

from __future__ import annotations

import asyncio
import copy
import json
from functools import partial

import httpx
import pytest
import test_cut_and_resume as cut_trial
import websockets
from conftest import base_config, script, wait_until
from httpx_sse import aconnect_sse

import streamserver
from streamserver.replicas import LINGER_S
from streamserver.web.keys import SERVICE

PACED = {"ttft_ms": 0, "tokens_per_second": 200, "seed": 7, "answer_tokens": 60}


def shared_config(redis_url: str, **sections):
    resume = {"store": "redis", "grace_s": 5, "retain_s": 30, **sections.pop("resume", {})}
    return base_config(
        redis={"url": redis_url, "lease_s": 1, **sections.pop("redis", {})},
        resume=resume,
        providers={"simulated": {**PACED, **sections.pop("simulated", {})}},
        **sections,
    )


@pytest.fixture
async def pair(serve, redis_url):
    a = await serve(shared_config(redis_url))
    b = await serve(shared_config(redis_url))
    return a, b


async def read_some(client, path, count, **kwargs):
    """The first ``count`` events of a stream, then the connection is dropped."""
    events = []
    async with aconnect_sse(client.http, kwargs.pop("method", "GET"), path, **kwargs) as source:
        stream_id = source.response.headers["X-Stream-ID"]
        async for event in source.aiter_sse():
            events.append(event)
            if len(events) == count:
                break
    return stream_id, events


async def test_a_stream_cut_on_one_instance_resumes_on_the_other_exactly(pair):
    a, b = pair
    stream_id, head = await read_some(a, "/v1/stream", 5, params={"prompt": "hi"})
    rest = await b.sse("/v1/stream", headers={"Last-Event-ID": head[-1].id})
    whole = await a.sse(f"/v1/streams/{stream_id}")

    assert rest.status == 200
    ids = [e.id for e in head + rest.events]
    assert ids == [e.id for e in whole.events]
    assert len(set(ids)) == len(ids)
    assert [e.data for e in head + rest.events] == [e.data for e in whole.events]
    assert whole.events[-1].event == "stream_end"


def text_of(events) -> str:
    return "".join(json.loads(e.data)["content"] for e in events if e.event == "token")


def scripted_config(redis_url: str, **sections):
    config = shared_config(redis_url, **sections)
    config["plugins"] = {"modules": ["streamserver.testing.scripted"]}
    config["providers"]["scripted"] = {}
    return config


async def stored_end(app, stream_id: str) -> None:
    """Wait until the store has the stream's end (its owner writes it one iteration later)."""
    store = app[SERVICE].shared.store
    for _ in range(200):
        state = await store.state(stream_id)
        if state is not None and state.closed:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"the store never had the end of {stream_id}")


async def start_stream(client, deltas, **options) -> str:
    """Start a /v1/stream, read its headers, drop the connection; returns the stream id."""
    params = {"prompt": script(deltas, **options), "model": "scripted"}
    async with client.http.stream("GET", "/v1/stream", params=params) as response:
        return response.headers["X-Stream-ID"]


async def test_a_reader_on_the_other_instance_follows_a_live_stream_to_its_end(pair):
    a, b = pair
    stream_id, _ = await read_some(a, "/v1/stream", 1, params={"prompt": "follow me"})
    followed, whole = await asyncio.gather(
        b.sse(f"/v1/streams/{stream_id}"), a.sse(f"/v1/streams/{stream_id}")
    )

    assert [(e.id, e.data) for e in followed.events] == [(e.id, e.data) for e in whole.events]
    assert followed.events[-1].event == "stream_end"
    assert json.loads(followed.events[-1].data)["finish_reason"] == "stop"


async def test_a_websocket_stream_resumes_on_the_other_instance(pair):
    a, b = pair
    ws_a = a.base_url.replace("http", "ws") + "/ws/stream"
    ws_b = b.base_url.replace("http", "ws") + "/ws/stream"
    async with websockets.connect(ws_a) as socket:
        await socket.send(json.dumps({"prompt": "over the socket"}))
        first = [json.loads(await socket.recv()) for _ in range(4)]
    stream_id = first[0]["stream_id"]
    async with websockets.connect(ws_b) as socket:
        await socket.send(json.dumps({"type": "resume", "stream_id": stream_id, "received": 4}))
        rest = []
        while not rest or rest[-1]["type"] not in ("done", "error"):
            rest.append(json.loads(await socket.recv()))
    async with websockets.connect(ws_a) as socket:
        await socket.send(json.dumps({"type": "resume", "stream_id": stream_id, "received": 0}))
        whole = []
        while not whole or whole[-1]["type"] not in ("done", "error"):
            whole.append(json.loads(await socket.recv()))

    assert first + rest == whole
    assert whole[-1]["type"] == "done"


async def test_delete_on_the_other_instance_cancels_the_generation_on_its_owner(serve, redis_url):
    app_a = streamserver.create_app(scripted_config(redis_url))
    a = await serve(app=app_a)
    b = await serve(scripted_config(redis_url))
    provider = app_a[SERVICE].providers["scripted"]
    stream_id = await start_stream(a, ["x"], then="hang")
    reader = asyncio.create_task(a.sse(f"/v1/streams/{stream_id}"))
    await wait_until(lambda: app_a[SERVICE].streams.get(stream_id).log.readers == 1)

    deleted = await b.http.delete(f"/v1/streams/{stream_id}")
    got = await asyncio.wait_for(reader, 5)
    await stored_end(app_a, stream_id)  # A writes its end events to Redis in a moment
    again = await b.http.delete(f"/v1/streams/{stream_id}")

    assert deleted.json() == {"id": stream_id, "cancelled": True}
    assert json.loads(got.events[-1].data)["finish_reason"] == "cancelled"
    assert provider.closed
    assert again.status_code == 409
    assert (await b.http.delete("/v1/streams/st_nope")).status_code == 404


async def test_the_grace_period_counts_readers_on_every_instance(serve, redis_url):
    # The client leaves A and comes back on B: A's grace (0.5 s) passes while B reads, and the
    # generation goes on to its end; a stream nobody comes back to is cancelled after it.
    config = scripted_config(redis_url, resume={"grace_s": 0.5})
    app_a = streamserver.create_app(config)
    a, b = await serve(app=app_a), await serve(config)
    deltas = [f"t{i} " for i in range(40)]
    kept = await start_stream(a, deltas, gap_ms=40)  # ~1.6 s: longer than the grace
    dropped = await start_stream(a, deltas, gap_ms=40)
    resumed = await b.sse(f"/v1/streams/{kept}")
    await wait_until(lambda: app_a[SERVICE].streams.get(dropped).finished, timeout=5)
    gone = await a.sse(f"/v1/streams/{dropped}")
    outcomes = (await a.http.get("/v1/stream/metrics")).json()["outcomes"]

    assert text_of(resumed.events) == "".join(deltas)
    assert json.loads(resumed.events[-1].data)["finish_reason"] == "stop"
    assert json.loads(gone.events[-1].data)["finish_reason"] == "cancelled"
    assert len(text_of(gone.events)) < len("".join(deltas))
    assert outcomes == {"completed": 1, "client_gone": 1}


async def test_an_idempotent_retry_on_the_other_instance_reads_the_first_stream(serve, redis_url):
    apps = [streamserver.create_app(scripted_config(redis_url)) for _ in range(2)]
    a, b = [await serve(app=app) for app in apps]
    body = {"prompt": script(["one ", "two"], gap_ms=20), "model": "scripted"}
    headers = {"Idempotency-Key": "retry-1"}
    first = await a.sse("/v1/stream", method="POST", json_body=body, headers=headers)
    again = await b.sse("/v1/stream", method="POST", json_body=body, headers=headers)
    changed = await b.http.post(
        "/v1/stream", json={**body, "prompt": script(["other"])}, headers=headers
    )
    chat = {"model": "scripted", "messages": [{"role": "user", "content": script(["Hi"])}]}
    chat_first = await a.http.post(
        "/v1/chat/completions", json=chat, headers=headers | {"Idempotency-Key": "c"}
    )
    chat_again = await b.http.post(
        "/v1/chat/completions", json=chat, headers=headers | {"Idempotency-Key": "c"}
    )

    assert again.headers["X-Stream-ID"] == first.headers["X-Stream-ID"]
    assert [(e.id, e.data) for e in again.events] == [(e.id, e.data) for e in first.events]
    assert changed.status_code == 409
    assert changed.json()["error"]["code"] == "idempotency_key_reused"
    assert chat_again.json() == chat_first.json()
    started = [len(app[SERVICE].providers["scripted"].started) for app in apps]
    assert started == [2, 0]  # one stream, one completion, both on A


async def test_idempotent_starts_racing_on_two_instances_generate_once(serve, redis_url):
    apps = [streamserver.create_app(scripted_config(redis_url)) for _ in range(2)]
    a, b = [await serve(app=app) for app in apps]
    body = {"prompt": script(["same ", "answer"], gap_ms=20), "model": "scripted"}
    headers = {"Idempotency-Key": "race"}
    got = await asyncio.gather(
        *(c.sse("/v1/stream", method="POST", json_body=body, headers=headers) for c in (a, b) * 3)
    )

    assert len({g.headers["X-Stream-ID"] for g in got}) == 1
    assert all(text_of(g.events) == "same answer" for g in got)
    assert sum(len(app[SERVICE].providers["scripted"].started) for app in apps) == 1


async def test_retention_holds_in_redis_too(serve, redis_url):
    config = scripted_config(redis_url, resume={"max_bytes_per_stream": 2000, "retain_s": 1})
    app_a = streamserver.create_app(config)
    a, b = await serve(app=app_a), await serve(config)
    deltas = [f"{i:04d}" * 10 for i in range(60)]
    got = await a.sse("/v1/stream", params={"prompt": script(deltas), "model": "scripted"})
    stream_id = got.headers["X-Stream-ID"]
    await stored_end(app_a, stream_id)

    early = await b.http.get(
        f"/v1/streams/{stream_id}", headers={"Last-Event-ID": f"{stream_id}:1"}
    )
    recent = await b.sse(f"/v1/streams/{stream_id}", headers={"Last-Event-ID": got.events[-3].id})
    await asyncio.sleep(1.3)
    expired = await b.http.get(f"/v1/streams/{stream_id}")

    assert early.status_code == 410
    assert early.json()["error"]["code"] == "events_expired"
    assert [(e.id, e.data) for e in recent.events] == [(e.id, e.data) for e in got.events[-2:]]
    assert expired.status_code == 404


async def test_at_most_max_streams_finished_streams_are_kept_in_redis(serve, redis_url):
    config = scripted_config(redis_url, resume={"max_streams": 2})
    app_a = streamserver.create_app(config)
    a, b = await serve(app=app_a), await serve(config)
    ids = []
    for _ in range(4):
        got = await a.sse("/v1/stream", params={"prompt": script(["a"]), "model": "scripted"})
        ids.append(got.headers["X-Stream-ID"])
        await stored_end(app_a, ids[-1])

    # The owner evicts with its lease renewal (every lease_s / 3: a third of a second here).
    for _ in range(50):
        statuses = [(await b.http.get(f"/v1/streams/{i}")).status_code for i in ids]
        if statuses[0] == 404:
            break
        await asyncio.sleep(0.1)

    assert statuses == [404, 404, 200, 200]


async def test_a_burst_of_starts_beyond_the_redis_pool_waits_for_connections(serve, redis_url):
    # Both apps share one pool of 3 (one loop, one URL); their cancel channels hold two, so every
    # start, write and renewal queues for the third instead of failing with a 503.
    config = shared_config(redis_url, redis={"max_connections": 3})
    a, b = await serve(config), await serve(config)
    got = await asyncio.gather(*(a.sse("/v1/stream", params={"prompt": "hi"}) for _ in range(16)))
    assert [g.status for g in got] == [200] * 16
    again = [await b.sse(f"/v1/streams/{g.headers['X-Stream-ID']}") for g in got]

    assert [[(e.id, e.data) for e in r.events] for r in again] == [
        [(e.id, e.data) for e in g.events] for g in got
    ]


# The randomised cut-and-resume trial across instances: every cut's resume lands on the other one.


def across_config(redis_url: str) -> dict:
    config = copy.deepcopy(cut_trial.CONFIG)
    config["redis"] = {"url": redis_url}
    config["resume"] = {**config["resume"], "store": "redis"}
    return config


@pytest.mark.parametrize(("transport", "count"), [("sse", 150), ("ws", 80)])
async def test_streams_cut_and_resumed_on_alternate_instances_lose_and_repeat_nothing(
    serve, redis_url, transport, count
):
    apps = [streamserver.create_app(across_config(redis_url)) for _ in range(2)]
    clients = [await serve(app=app) for app in apps]
    trials = cut_trial.draw_trials(
        f"across-{transport}", await cut_trial.simulated_text(apps[0]), count
    )
    urls = [client.base_url for client in clients]

    async with httpx.AsyncClient(timeout=5) as http:
        read = partial(cut_trial.read_sse, http) if transport == "sse" else cut_trial.read_ws
        outcome = await cut_trial.run_trials(urls, trials, read)

    cut_trial.check(outcome, trials)
    # Streams ran on both, and both served resumes of the other's streams (from Redis).
    services = [app[SERVICE] for app in apps]
    assert all(service.streams.total > 0 for service in services)
    assert all(service.shared.replicas.opened > 0 for service in services)
    assert sum(s.shared.replicas.opened for s in services) >= len(trials) // 2


async def test_a_replica_nobody_reads_stops_following_and_is_forgotten(serve, redis_url):
    apps = [streamserver.create_app(shared_config(redis_url)) for _ in range(2)]
    a, b = [await serve(app=app) for app in apps]
    stream_id, _ = await read_some(a, "/v1/stream", 2, params={"prompt": "linger"})
    _, seen = await read_some(b, f"/v1/streams/{stream_id}", 2)
    registry = apps[1][SERVICE].streams
    assert registry.get(stream_id) is not None and registry.get(stream_id).replica

    await wait_until(lambda: registry.get(stream_id) is None, timeout=LINGER_S + 5)
    tasks = [t.get_name() for t in asyncio.all_tasks() if t.get_name() == f"replica {stream_id}"]
    again = await b.sse(f"/v1/streams/{stream_id}")  # a later reader gets a fresh replica

    assert tasks == []
    assert again.events[-1].event == "stream_end"
    assert [e.id for e in again.events[:2]] == [e.id for e in seen]


async def test_with_no_grace_a_reader_elsewhere_keeps_the_stream_going(serve, redis_url):
    config = scripted_config(redis_url, resume={"grace_s": 0})
    apps = [streamserver.create_app(config) for _ in range(2)]
    a, b = [await serve(app=app) for app in apps]
    deltas = [f"w{i} " for i in range(30)]
    params = {"prompt": script(deltas, gap_ms=30), "model": "scripted"}
    named = asyncio.get_running_loop().create_future()
    leave = asyncio.Event()

    async def read_on_a_until_told() -> None:
        async with aconnect_sse(a.http, "GET", "/v1/stream", params=params) as source:
            named.set_result(source.response.headers["X-Stream-ID"])
            async for _ in source.aiter_sse():
                if leave.is_set():
                    return

    on_a = asyncio.create_task(read_on_a_until_told())
    stream_id = await named
    followed = asyncio.create_task(b.sse(f"/v1/streams/{stream_id}"))
    owner = apps[0][SERVICE].streams.get(stream_id)
    for _ in range(200):  # B's reader is marked in Redis
        if await owner.remote_readers():
            break
        await asyncio.sleep(0.01)
    leave.set()  # A's only reader leaves: with grace 0 the stream would be cancelled now
    await on_a
    got = await asyncio.wait_for(followed, timeout=10)

    assert text_of(got.events) == "".join(deltas)
    assert json.loads(got.events[-1].data)["finish_reason"] == "stop"


async def test_a_burst_of_starts_waits_for_a_pooled_connection_instead_of_a_503(serve, redis_url):
    client = await serve(shared_config(redis_url, redis={"max_connections": 4}))
    got = await asyncio.gather(
        *(client.http.get("/v1/stream", params={"prompt": f"b{i}"}) for i in range(60))
    )

    assert [r.status_code for r in got] == [200] * 60


async def test_idempotent_starts_racing_with_two_bodies_never_attach_to_the_other(serve, redis_url):
    apps = [streamserver.create_app(scripted_config(redis_url)) for _ in range(2)]
    a, b = [await serve(app=app) for app in apps]
    headers = {"Idempotency-Key": "two-bodies"}
    bodies = [{"prompt": script([f"body {n}"], gap_ms=20), "model": "scripted"} for n in (1, 2)]
    got = await asyncio.gather(
        *(c.sse("/v1/stream", method="POST", json_body=body, headers=headers)
          for c, body in zip((a, b) * 3, bodies * 3, strict=True))
    )  # fmt: skip

    answered = {text_of(g.events) for g in got if g.status == 200}
    refused = [json.loads(g.events[0].data)["error"]["code"] for g in got if g.status != 200]
    assert len(answered) == 1  # one body won the key; the other's requests are refused
    assert refused and set(refused) == {"idempotency_key_reused"}
    assert sum(len(app[SERVICE].providers["scripted"].started) for app in apps) == 1


async def test_every_key_of_a_live_stream_expires_if_its_owner_vanishes(serve, redis_url):
    import redis.asyncio as redis

    app = streamserver.create_app(scripted_config(redis_url))
    a = await serve(app=app)
    stream_id, _ = await read_some(
        a, "/v1/stream", 2, params={"prompt": script(["x "] * 5, then="hang"), "model": "scripted"}
    )
    await stored_events(app, stream_id)
    client = redis.Redis.from_url(redis_url)
    try:
        keys = await client.keys(f"streamserver:{{{stream_id}}}:*")
        ttls = {key.decode().rsplit(":", 1)[1]: await client.pttl(key) for key in keys}
    finally:
        await client.aclose()

    assert {"m", "l", "z"} <= set(ttls)
    assert all(ttl > 0 for ttl in ttls.values()), ttls


async def stored_events(app, stream_id: str) -> None:
    """Wait until the store has some of the stream's events (the owner writes every LAZY_S)."""
    store = app[SERVICE].shared.store
    for _ in range(200):
        state = await store.state(stream_id)
        if state is not None and state.end > 0:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"the store never had events of {stream_id}")


async def test_a_read_elsewhere_before_the_owner_has_published_the_stream_waits_for_it(
    serve, redis_url
):
    # The owner publishes a stream with its first write, one round trip after the start; a
    # client that got the id and went to another instance at once must not get a 404. Redis's
    # CLIENT PAUSE WRITE holds the owner's writes (the reads of the other instance go on).
    import time

    import redis.asyncio as redis

    from streamserver.streams import new_stream_id

    a, b = await serve(shared_config(redis_url)), await serve(shared_config(redis_url))
    assert (await a.sse("/v1/stream", params={"prompt": "warm"})).status == 200
    client = redis.Redis.from_url(redis_url)
    try:
        await client.execute_command("CLIENT", "PAUSE", 600, "WRITE")
        stream_id, head = await read_some(a, "/v1/stream", 2, params={"prompt": "hi"})
        assert await client.exists(f"streamserver:{{{stream_id}}}:m") == 0  # not published yet
        whole = await b.sse(f"/v1/streams/{stream_id}")
    finally:
        await client.aclose()
    assert whole.status == 200
    assert [e.data for e in whole.events[:2]] == [e.data for e in head]
    assert whole.events[-1].event == "stream_end"

    # An id nobody minted is a 404 at once; one minted now that never starts, after lease_s.
    started = time.monotonic()
    assert (await b.http.get("/v1/streams/st_nobody")).status_code == 404
    assert (await b.http.get(f"/v1/streams/st_{'A' * 24}")).status_code == 404  # minted in 1970
    assert time.monotonic() - started < 0.5
    started = time.monotonic()
    assert (await b.http.get(f"/v1/streams/{new_stream_id()}")).status_code == 404
    assert 0.9 < time.monotonic() - started < 3  # lease_s = 1


async def test_each_stream_keeps_its_own_lazy_round_so_writes_spread_out(serve, redis_url):
    # A stream nobody follows elsewhere is written LAZY_S after its first unwritten event: two
    # streams started half a round apart are written half a round apart, not in one burst (at
    # a thousand streams one burst held Redis, on the load generator's core, for tens of ms).
    from streamserver.shared_streams import LAZY_S

    app = streamserver.create_app(scripted_config(redis_url))
    client = await serve(app=app)
    store = app[SERVICE].shared.store
    prompt = script(["x "] * 60, gap_ms=40, then="hang")
    params = {"prompt": prompt, "model": "scripted"}
    loop = asyncio.get_running_loop()
    first, _ = await read_some(client, "/v1/stream", 2, params=params)
    await asyncio.sleep(LAZY_S / 2)
    second, _ = await read_some(client, "/v1/stream", 2, params=params)
    writes: dict[str, list[float]] = {first: [], second: []}
    ends = dict.fromkeys(writes, -1)
    deadline = loop.time() + 3 * LAZY_S
    while loop.time() < deadline:  # bounded: three rounds
        for stream_id in writes:
            state = await store.state(stream_id)
            end = state.end if state is not None else -1
            if end != ends[stream_id]:
                ends[stream_id] = end
                writes[stream_id].append(loop.time())
        await asyncio.sleep(0.005)

    later = {stream_id: times[1:] for stream_id, times in writes.items()}  # after the first read
    assert all(len(times) >= 2 for times in later.values()), writes
    closest = min(abs(a - b) for a in later[first] for b in later[second])
    assert closest > LAZY_S / 5, writes
