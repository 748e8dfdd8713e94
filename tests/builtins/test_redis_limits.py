"""The ``redis`` limit store: two instances sharing one real Redis count one rate limit and one
set of concurrent streams between them; a dead holder's streams stop counting after their lease;
Redis away is a 503, and everything recovers by itself when it returns."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as redis
from aiohttp.test_utils import TestServer
from conftest import SCRIPTED, Client, base_config, script

import streamserver
from streamserver.builtins.redis_limits import RedisLimits
from streamserver.config import load_config

KEYS = "alice:sk-alice-0123456789,bob:sk-bob-9876543210"
ALICE = {"Authorization": "Bearer sk-alice-0123456789"}
BOB = {"Authorization": "Bearer sk-bob-9876543210"}
HANG = {"prompt": script(["a"], then="hang"), "model": "scripted"}
QUICK = {"prompt": "hi", "model": "echo"}
ALL_STREAMS = "streamserver:{limits}:streams"


def shared(redis_url: str, *, lease_s: float = 1.0, **limits: Any) -> dict[str, Any]:
    """A config whose limits count in the test's Redis (no rate limit unless given)."""
    return base_config(
        limits={"store": "redis", "requests_per_minute": 0, **limits},
        redis={"url": redis_url, "lease_s": lease_s, "timeout_s": 0.5},
        **SCRIPTED,
    )


async def two(serve, config: dict[str, Any]) -> tuple[Client, Client]:
    """Two instances (two apps) of one config."""
    return await serve(config), await serve(config)


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:  # noqa: ASYNC109
    """Poll an async ``check`` until true (bounded)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


async def counted(redis_url: str) -> int:
    """How many streams Redis counts now, every instance's together."""
    client = redis.Redis.from_url(redis_url)
    try:
        return int(await client.zcard(ALL_STREAMS))
    finally:
        await client.aclose()


async def test_the_rate_limit_counts_requests_on_every_instance(serve, redis_url):
    a, b = await two(serve, shared(redis_url, requests_per_minute=3))
    allowed = [
        (await a.http.get("/v1/models")).status_code,
        (await a.http.get("/v1/models")).status_code,
        (await b.http.get("/v1/models")).status_code,
    ]
    on_a = await a.http.get("/v1/models")
    on_b = await b.http.get("/v1/models")

    assert allowed == [200, 200, 200]
    assert (on_a.status_code, on_b.status_code) == (429, 429)
    assert on_b.json()["error"]["code"] == "rate_limited"
    # The bucket refills 3 a minute: a token is back within 20 s, as the memory store says.
    assert 1 <= int(on_a.headers["Retry-After"]) <= 20
    assert 1 <= int(on_b.headers["Retry-After"]) <= 20


async def test_the_stream_limit_counts_streams_on_every_instance_and_an_end_frees_a_slot(
    serve, redis_url
):
    # Leases far longer than the test: only the end's release can free the slot in time.
    a, b = await two(serve, shared(redis_url, lease_s=60, max_concurrent_streams=1))
    async with a.http.stream("GET", "/v1/stream", params=HANG) as first:
        assert first.status_code == 200
        on_b = await b.http.get("/v1/stream", params=QUICK)
        on_a = await a.http.get("/v1/stream", params=QUICK)
        cancelled = await a.http.delete(f"/v1/streams/{first.headers['X-Stream-ID']}")
        await first.aread()  # the stream's end events: its generation is over

    assert (on_b.status_code, on_a.status_code) == (429, 429)
    assert on_b.json()["error"]["code"] == "too_many_streams"
    assert on_b.headers["Retry-After"] == "1"
    assert cancelled.status_code == 200

    async def b_streams() -> bool:
        return (await b.http.get("/v1/stream", params=QUICK)).status_code == 200

    await eventually(b_streams)  # the slot A's stream held is free on B


async def test_the_per_key_stream_limit_counts_a_key_on_every_instance(
    serve, redis_url, monkeypatch
):
    monkeypatch.setenv("STREAMSERVER_API_KEYS", KEYS)
    config = shared(redis_url, max_concurrent_streams_per_key=1)
    config["auth"] = {"mode": "api_key"}
    a, b = await two(serve, config)
    async with a.http.stream("GET", "/v1/stream", params=HANG, headers=ALICE) as first:
        assert first.status_code == 200
        alice_on_b = await b.http.get("/v1/stream", params=QUICK, headers=ALICE)
        bob_on_b = await b.http.get("/v1/stream", params=QUICK, headers=BOB)

    assert alice_on_b.status_code == 429
    assert alice_on_b.json()["error"]["code"] == "too_many_streams_for_key"
    assert bob_on_b.status_code == 200


async def test_a_running_stream_keeps_counting_past_its_first_lease(serve, redis_url):
    a, b = await two(serve, shared(redis_url, lease_s=1, max_concurrent_streams=1))
    async with a.http.stream("GET", "/v1/stream", params=HANG) as first:
        assert first.status_code == 200
        await asyncio.sleep(2.5)  # two and a half leases: only renewals keep it counted
        on_b = await b.http.get("/v1/stream", params=QUICK)

    assert on_b.status_code == 429


async def test_the_streams_of_a_holder_that_stopped_renewing_stop_counting_after_the_lease(
    serve, redis_url
):
    config = shared(redis_url, lease_s=1, max_concurrent_streams=2)
    crashed = RedisLimits()  # an instance that took a slot, then died without releasing it
    await crashed.open(load_config(config), "crashed")
    assert await crashed.acquire("st_crashed", "addr:10.0.0.9") is None
    await crashed.aclose()
    a = await serve(config)
    # A live stream on A keeps the count's key alive: the dead slot must go by its own lease.
    async with a.http.stream("GET", "/v1/stream", params=HANG) as live:
        assert live.status_code == 200
        refused = await a.http.get("/v1/stream", params=QUICK)

        async def a_streams() -> bool:
            return (await a.http.get("/v1/stream", params=QUICK)).status_code == 200

        await eventually(a_streams)  # the dead slot's lease ran out: nobody renews it

    assert refused.status_code == 429


async def test_redis_away_is_a_503_and_the_limits_recover_when_it_returns(
    serve, redis_url, redis_server
):
    a, b = await two(serve, shared(redis_url, requests_per_minute=600, max_concurrent_streams=1))
    async with a.http.stream("GET", "/v1/stream", params=HANG) as held:
        assert held.status_code == 200
        redis_server.stop()
        rate = await a.http.get("/v1/models")
        stream = await b.http.get("/v1/stream", params=QUICK)
        redis_server.start()  # empty: no persistence, every count lost

        async def a_answers() -> bool:
            return (await a.http.get("/v1/models")).status_code == 200

        await eventually(a_answers)
        # The stream A still runs counts again (its renewal went on through the outage) ...
        await eventually(lambda: _equals(counted(redis_url), 1))
        again = await b.http.get("/v1/stream", params=QUICK)

    for refused in (rate, stream):
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "store_unavailable"
        assert int(refused.headers["Retry-After"]) >= 1
    assert again.status_code == 429  # ... so the limit holds again across both


async def test_health_says_when_the_limit_store_is_away(serve, redis_url, redis_server):
    a = await serve(shared(redis_url))  # streams in memory: only the limits are on Redis
    healthy = await a.http.get("/health")
    redis_server.stop()
    away = await a.http.get("/health")

    assert healthy.status_code == 200
    assert away.status_code == 503
    assert away.json()["status"] == "unhealthy"
    assert away.json()["reason"].startswith("redis: ")


async def test_a_stream_start_on_a_stalled_redis_is_a_503_within_the_timeout(
    serve, redis_url, redis_server
):
    a = await serve(shared(redis_url))
    assert redis_server.process is not None
    redis_server.process.send_signal(signal.SIGSTOP)  # accepts connections, answers nothing
    try:
        stalled = await a.http.get("/v1/stream", params=QUICK)
    finally:
        redis_server.process.send_signal(signal.SIGCONT)

    assert stalled.status_code == 503
    assert stalled.json()["error"]["code"] == "store_unavailable"
    assert (await a.http.get("/v1/stream", params=QUICK)).status_code == 200


async def test_closing_an_instance_leaves_no_task_of_the_store_behind(redis_url):
    app = streamserver.create_app(shared(redis_url, max_concurrent_streams=1))
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    client = Client(str(server.make_url("")).rstrip("/"))
    got = await client.sse("/v1/stream", params=QUICK)
    await client.close()
    await server.close()

    assert got.status == 200
    assert [t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith("limit")] == []
    assert await counted(redis_url) == 0  # its stream's end reached Redis before it closed


async def _equals(value: Awaitable[int], expected: int) -> bool:
    return await value == expected


@pytest.mark.parametrize("store", ["memory", "redis"])
async def test_both_stores_refuse_the_same_requests(serve, redis_url, store):
    config = shared(redis_url, requests_per_minute=2, max_concurrent_streams=1)
    config["limits"]["store"] = store
    client = await serve(config)
    statuses = [(await client.http.get("/v1/models")).status_code for _ in range(3)]

    assert statuses == [200, 200, 429]


async def test_a_stream_started_after_another_ended_on_one_instance_never_counts_the_ended_one(
    serve, redis_url
):
    a = await serve(shared(redis_url, lease_s=60, max_concurrent_streams=1))
    statuses = [(await a.sse("/v1/stream", params=QUICK)).status for _ in range(10)]

    assert statuses == [200] * 10
