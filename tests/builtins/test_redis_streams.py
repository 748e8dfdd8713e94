"""The redis stream store on its own, against a real redis-server: what the owner writes is
stored once whatever is retried, ends and losses are final, the byte budget holds."""

from __future__ import annotations

import asyncio

import pytest
from conftest import base_config

from streamserver.builtins.redis_stream_store import RedisStreams
from streamserver.config import load_config
from streamserver.stores import Appended, SharedStream


@pytest.fixture
async def store(redis_url):
    config = load_config(base_config(redis={"url": redis_url, "lease_s": 1},
                                     resume={"store": "redis", "max_bytes_per_stream": 400}))  # fmt: skip
    opened = RedisStreams()
    await opened.open(config, "instance-a", lambda notice, stream_id: None)
    yield opened
    await opened.aclose()


def shared(stream_id: str) -> SharedStream:
    return SharedStream(stream_id, "/v1/stream", "sse", "instance-a", "", "production")


def events(start: int, count: int) -> list[bytes]:
    return [b"event %d\n\n" % i for i in range(start, start + count)]


async def stored(store, stream_id: str, start: int = 0) -> list[bytes]:
    got = []
    while True:
        entries = await store.read(stream_id, start, 0)
        got.extend(entries.events)
        start = entries.end
        if entries.closed or not entries.events:
            return got


async def test_a_retried_write_is_stored_once(store):
    await store.create([(shared("st_retry"), "")])
    first = Appended("st_retry", 0, events(0, 3))
    second = Appended("st_retry", 3, events(3, 2))

    assert await store.write([first]) == [True]
    assert await store.write([first, second]) == [True, True]  # the first again: skipped
    assert await store.write([second]) == [True]
    assert await stored(store, "st_retry") == events(0, 5)


async def test_a_write_that_would_leave_a_gap_or_follows_the_end_is_refused(store):
    await store.create([(shared("st_gap"), "")])
    await store.write([Appended("st_gap", 0, events(0, 2))])

    assert await store.write([Appended("st_gap", 5, events(5, 1))]) == [False]
    assert await store.write([Appended("st_gap", 2, events(2, 1), closed=True)]) == [True]
    assert await store.write([Appended("st_gap", 3, events(3, 1))]) == [False]
    state = await store.state("st_gap")
    assert state.closed and state.end == 3


async def test_a_lost_stream_takes_no_more_events_and_ends_after_what_it_has(store):
    await store.create([(shared("st_lost"), "")])
    await store.write([Appended("st_lost", 0, events(0, 4))])

    assert await store.mark_lost("st_lost", 2)  # a reader at 2 saw the owner gone
    assert not await store.mark_lost("st_lost", 4)  # once
    assert await store.write([Appended("st_lost", 4, events(4, 1))]) == [False]
    entries = await store.read("st_lost", 0, 0)
    assert entries.events == events(0, 4) and entries.closed and entries.lost


async def test_the_byte_budget_drops_the_oldest_entries_and_a_read_before_them_fails(store):
    await store.create([(shared("st_budget"), "")])
    for start in range(0, 100, 10):
        await store.write([Appended("st_budget", start, events(start, 10))])
    state = await store.state("st_budget")

    assert state.base > 0 and state.end == 100
    kept = await stored(store, "st_budget", state.base)
    assert kept == events(state.base, 100 - state.base)
    assert sum(map(len, kept)) <= 400 + 120  # the budget, give or take one entry
    with pytest.raises(LookupError):
        await store.read("st_budget", 0, 0)


async def test_every_key_of_a_stream_has_an_expiry_from_its_first_write(store):
    await store.create([(shared("st_ttl"), "")])
    await store.write([Appended("st_ttl", 0, events(0, 1))])
    client = store.connection.client
    keys = await client.keys("streamserver:{st_ttl}:*")

    assert {k.decode().rsplit(":", 1)[1] for k in keys} >= {"m", "l", "z"}
    assert all([await client.pttl(key) > 0 for key in keys])


async def test_instances_evicting_at_once_keep_max_streams_between_them(redis_url):
    # Each instance evicts with its lease renewal. Counting, then taking the oldest, in two
    # round trips, lets a second instance count before the first one's removal and take as many
    # again: the newest streams went too (seen under load). The script takes the excess once.
    config = load_config(base_config(redis={"url": redis_url, "lease_s": 1},
                                     resume={"store": "redis", "max_streams": 2}))  # fmt: skip
    stores = [RedisStreams() for _ in range(4)]
    for number, opened in enumerate(stores):
        await opened.open(config, f"instance-{number}", lambda notice, stream_id: None)
    try:
        for round_ in range(20):
            ids = [f"st_r{round_}s{i}" for i in range(4)]
            for stream_id in ids:
                await stores[0].create([(shared(stream_id), "")])
                await stores[0].write([Appended(stream_id, 0, events(0, 1), True)])
            await asyncio.gather(*(evict_after(opened, i) for i, opened in enumerate(stores)))
            kept = [stream_id for stream_id in ids if await stores[1].state(stream_id)]
            assert kept == ids[2:], f"round {round_}"
    finally:
        for opened in stores:
            await opened.aclose()


async def evict_after(store, iterations: int) -> None:
    for _ in range(iterations):  # staggered, so one's count can come between another's steps
        await asyncio.sleep(0)
    await store.evict()


async def test_a_first_write_publishes_its_stream_and_a_retry_of_it_changes_nothing(store):
    # While the store answers, a stream starts without a round trip and its first write
    # publishes it. A retry of that write (a timeout after Redis ran it) must not publish it
    # afresh: that would reset where its stored events end, and store them twice.
    first = Appended("st_first", 0, events(0, 3), publish=shared("st_first"))
    assert await store.write([first]) == [True]
    assert await store.write([first]) == [True]
    assert await store.write([Appended("st_first", 3, events(3, 2), True)]) == [True]

    state = await store.state("st_first")
    assert state is not None and state.closed
    assert await stored(store, "st_first") == events(0, 5)


async def test_one_write_of_many_streams_stores_each_whole_and_in_order(store):
    # The writer's batch of every stream with new events (a lazy round of hundreds), packed a
    # slice at a time: each stream's events, WebSocket text as UTF-8, its end and its record.
    ids = [f"st_many{i}" for i in range(300)]
    first = [Appended(i, 0, events(0, 2), publish=shared(i)) for i in ids]
    assert await store.write(first) == [True] * 300
    text = [f"é 🙂 {n}" for n in range(3)]
    second = [
        Appended(i, 2, list(text) if n % 2 else events(2, 3), closed=n % 3 == 0,
                 record={"n": n} if n % 3 == 0 else None)
        for n, i in enumerate(ids)
    ]  # fmt: skip
    assert await store.write(second) == [True] * 300

    for n, stream_id in enumerate(ids):
        later = [t.encode() for t in text] if n % 2 else events(2, 3)
        assert await stored(store, stream_id) == events(0, 2) + later
        state = await store.state(stream_id)
        assert state is not None and state.closed == (n % 3 == 0) and state.end == 5
        if n % 3 == 0:
            assert state.record == {"n": n}


async def test_a_renewal_keeps_every_owned_stream_alive_and_forgets_the_others(store):
    client = store.connection.client
    for stream_id in ("st_kept", "st_gone"):
        await store.write([Appended(stream_id, 0, events(0, 1), publish=shared(stream_id))])
        for key in await client.keys(f"streamserver:{{{stream_id}}}:*"):
            await client.pexpire(key, 5_000)

    await store.renew(["st_kept"], [])

    kept = await client.keys("streamserver:{st_kept}:*")
    assert len(kept) == 3 and all([await client.pttl(key) > 5_000 for key in kept])
    assert all(
        [await client.pttl(key) <= 5_000 for key in await client.keys("streamserver:{st_gone}:*")]
    )
    assert await client.pttl(f"streamserver:i:{store.instance_id}") > 0  # the lease
    assert list(store._packed) == ["st_kept"]
