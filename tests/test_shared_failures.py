"""What a shared stream does when a part of the deployment fails: its owner killed (readers
elsewhere get ``stream_lost`` within the lease plus a poll), Redis stopped (new streams 503,
``/health`` 503, running streams finish for their local readers, everything recovers)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time

import httpx
import pytest
from conftest import base_config, wait_until
from fakes.redis_server import RedisServer
from fakes.server_process import ServerProcess
from httpx_sse import aconnect_sse

from streamserver.replicas import POLL_S


async def test_readers_elsewhere_get_stream_lost_when_the_owner_is_killed(
    tmp_path, serve, redis_url
):
    owner = ServerProcess(
        {
            "providers": {"simulated": {"ttft_ms": 0, "tokens_per_second": 20,
                                        "answer_tokens": 400}},
            "redis": {"url": redis_url, "lease_s": 1},
            "resume": {"store": "redis", "grace_s": 10},
        },
        tmp_path / "owner",
    )  # fmt: skip
    await asyncio.to_thread(owner.start)
    try:
        other = await serve(base_config(redis={"url": redis_url, "lease_s": 1},
                                        resume={"store": "redis", "grace_s": 10}))  # fmt: skip
        async with (
            httpx.AsyncClient(base_url=owner.base_url, timeout=10) as http,
            aconnect_sse(http, "GET", "/v1/stream", params={"prompt": "x"}) as source,
        ):
            stream_id = source.response.headers["X-Stream-ID"]
            async for event in source.aiter_sse():
                if event.event == "token":
                    break
        events = []

        async def follow() -> None:
            async with aconnect_sse(other.http, "GET", f"/v1/streams/{stream_id}") as source:
                async for event in source.aiter_sse():
                    events.append(event)

        reader = asyncio.create_task(follow())
        await wait_until(lambda: any(e.event == "token" for e in events), timeout=10)
        killed = time.monotonic()
        await asyncio.to_thread(owner.kill)
        await asyncio.wait_for(reader, timeout=15)  # the bound the README states
        took = time.monotonic() - killed
    finally:
        await asyncio.to_thread(owner.kill)

    error = json.loads(events[-2].data)
    assert events[-2].event == "error" and error["code"] == "stream_lost"
    assert events[-1].event == "stream_end"
    assert len({e.id for e in events}) == len(events)
    # Not a timing target (the machine may be slow), the bound the design promises: the lease
    # (1 s here) plus one poll, with room for a slow CI machine.
    assert took < 1 + POLL_S + 10
    again = await other.sse(f"/v1/streams/{stream_id}")
    assert [e.id for e in again.events] == [e.id for e in events]  # marked lost: a replay too


@pytest.fixture
async def shared_app(serve, redis_url, redis_server):
    config = base_config(
        redis={"url": redis_url, "lease_s": 1, "timeout_s": 0.5},
        resume={"store": "redis", "grace_s": 5},
        providers={"simulated": {"ttft_ms": 0, "tokens_per_second": 40, "answer_tokens": 60}},
    )
    return await serve(config), redis_server


async def test_with_redis_down_new_streams_get_503_running_ones_finish_and_all_recovers(
    shared_app,
):
    client, redis = shared_app
    events = []
    async with aconnect_sse(client.http, "GET", "/v1/stream", params={"prompt": "x"}) as source:
        async for event in source.aiter_sse():
            events.append(event)
            if event.event == "token" and len(events) == 3:
                redis.stop()
        started = source.response.headers["X-Stream-ID"]

    refused = await client.http.get("/v1/stream", params={"prompt": "y"})
    health = await client.http.get("/health")
    chat = await client.http.post("/v1/chat/completions", json={
        "model": "simulated", "messages": [{"role": "user", "content": "hi"}]})  # fmt: skip
    redis.start()
    await wait_until_async(lambda: client.http.get("/health"), lambda r: r.status_code == 200)
    later = await client.sse("/v1/stream", params={"prompt": "z"})

    def per_stream() -> list[str]:
        return [t.get_name() for t in asyncio.all_tasks()
                if t.get_name().startswith(("stream st_", "mirror ", "replica ", "reading", "follow"))]  # fmt: skip

    with contextlib.suppress(AssertionError):  # the last stream's mirror writes its end
        await wait_until(lambda: not per_stream(), timeout=5)
    assert per_stream() == []  # nothing left behind by the outage
    assert events[-1].event == "stream_end"  # the local reader got the whole stream
    assert json.loads(events[-1].data)["finish_reason"] == "stop"
    assert started.startswith("st_")
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "store_unavailable"
    assert refused.headers["Retry-After"]
    assert health.status_code == 503 and health.json()["status"] == "unhealthy"
    assert "redis" in health.json()["reason"] and "@" not in health.json()["reason"]
    assert chat.status_code == 503
    assert chat.json()["error"]["code"] == "store_unavailable"  # in OpenAI's error shape
    assert later.status == 200 and later.events[-1].event == "stream_end"


async def wait_until_async(call, ok, within_s: float = 10.0):
    """Call ``call`` until ``ok`` of its result, for at most ``within_s``."""
    deadline = time.monotonic() + within_s
    while True:
        result = await call()
        if ok(result):
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached in {within_s} s: last {result}")
        await asyncio.sleep(0.1)


async def test_a_password_in_the_url_works_and_never_shows_in_a_message(serve, monkeypatch):
    secret = "s3cret-pass-word"
    redis = RedisServer(password=secret).start()
    try:
        monkeypatch.setenv("TEST_REDIS_URL", redis.url)
        good = base_config(redis={"url_env": "TEST_REDIS_URL"}, resume={"store": "redis"})
        wrong = base_config(redis={"url": redis.url.replace(secret, "nope"), "timeout_s": 0.5},
                            resume={"store": "redis"})  # fmt: skip
        a, b = await serve(good), await serve(good)
        stranger = await serve(wrong)
        got = await a.sse("/v1/stream", params={"prompt": "x"})
        again = await b.sse(f"/v1/streams/{got.headers['X-Stream-ID']}")
        health = await stranger.http.get("/health")
        refused = await stranger.http.get("/v1/stream", params={"prompt": "x"})
    finally:
        redis.close()

    assert [e.data for e in again.events] == [e.data for e in got.events]
    assert health.status_code == 503 and refused.status_code == 503
    for text in (health.text, refused.text):
        assert secret not in text and "nope" not in text


async def test_health_names_the_conversation_store_when_only_it_is_on_redis(serve, redis_server):
    if redis_server.process is None:
        redis_server.start()
    client = await serve(base_config(redis={"url": redis_server.url, "timeout_s": 0.5},
                                     conversations={"store": "redis"}))  # fmt: skip
    up = await client.http.get("/health")
    redis_server.stop()
    try:
        down = await client.http.get("/health")
    finally:
        redis_server.start()

    assert up.status_code == 200
    assert down.status_code == 503 and down.json()["reason"].startswith("redis:")


async def test_a_redis_pause_shorter_than_the_lease_loses_and_repeats_nothing_anywhere(
    serve, redis_server, redis_url
):
    # A hung Redis (SIGSTOP): the owner's writes time out, yet Redis runs them once it wakes.
    # The owner retries them; Redis skips what it has, so a reader elsewhere gets every event once.
    config = base_config(
        redis={"url": redis_url, "lease_s": 10, "timeout_s": 0.5},
        resume={"store": "redis", "grace_s": 10},
        providers={"simulated": {"ttft_ms": 0, "tokens_per_second": 50, "answer_tokens": 150}},
    )
    a, b = await serve(config), await serve(config)
    own: list = []
    named = asyncio.get_running_loop().create_future()

    async def read_on_a() -> None:
        async with aconnect_sse(a.http, "GET", "/v1/stream", params={"prompt": "p"}) as source:
            named.set_result(source.response.headers["X-Stream-ID"])
            async for event in source.aiter_sse():
                own.append(event)

    reading = asyncio.create_task(read_on_a())
    stream_id = await named
    followed = asyncio.create_task(b.sse(f"/v1/streams/{stream_id}"))
    await asyncio.sleep(0.5)
    redis_server.process.send_signal(signal.SIGSTOP)
    try:
        await asyncio.sleep(2.0)
    finally:
        redis_server.process.send_signal(signal.SIGCONT)
    await asyncio.wait_for(reading, timeout=30)
    remote = await asyncio.wait_for(followed, timeout=30)

    assert own[-1].event == "stream_end"
    assert [(e.id, e.data) for e in remote.events] == [(e.id, e.data) for e in own]
