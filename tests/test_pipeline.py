"""The pipeline as a client sees it: cancellation reaches the provider, tasks never leak, limits hold."""

from __future__ import annotations

import asyncio

import pytest
from conftest import SCRIPTED, base_config, script, wait_until

import streamserver
from streamserver.web.keys import SERVICE


def stream_tasks() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("stream ")]


async def open_and_read_first_event(client, prompt: str) -> None:
    """Open /v1/stream, read until the first token event, then drop the connection."""
    async with client.http.stream(
        "GET", "/v1/stream", params={"prompt": prompt, "model": "scripted"}
    ) as response:
        async for line in response.aiter_lines():
            if line.startswith("event: token"):
                break


async def test_client_disconnect_closes_the_provider_within_100ms(serve):
    app = streamserver.create_app(base_config(**SCRIPTED))
    client = await serve(app=app)
    provider = app[SERVICE].providers["scripted"]

    await open_and_read_first_event(client, script(["first"], then="hang"))
    dropped = asyncio.get_running_loop().time()
    await wait_until(lambda: bool(provider.closed), timeout=1.0)

    assert provider.closed[0] - dropped < 0.1


async def test_no_stream_task_outlives_a_disconnect(serve):
    app = streamserver.create_app(base_config(**SCRIPTED))
    client = await serve(app=app)

    for _ in range(5):
        await open_and_read_first_event(client, script(["x"], then="hang"))
    await wait_until(lambda: not stream_tasks(), timeout=1.0)

    assert app[SERVICE].streams.active == 0


async def test_a_finished_stream_leaves_no_task(client):
    got = await client.sse("/v1/stream", params={"prompt": "hello there", "model": "echo"})

    assert got.names()[-1] == "stream_end"
    await wait_until(lambda: not stream_tasks(), timeout=1.0)


async def test_disconnect_is_counted_as_client_gone(serve):
    app = streamserver.create_app(base_config(**SCRIPTED))
    client = await serve(app=app)

    await open_and_read_first_event(client, script(["x"], then="hang"))
    await wait_until(lambda: app[SERVICE].streams.active == 0)
    metrics = (await client.http.get("/v1/stream/metrics")).json()

    assert metrics["outcomes"] == {"client_gone": 1}


async def test_grace_period_keeps_generating_after_the_reader_leaves(serve):
    app = streamserver.create_app(base_config(resume={"grace_s": 0.3}, **SCRIPTED))
    client = await serve(app=app)
    provider = app[SERVICE].providers["scripted"]

    await open_and_read_first_event(client, script(["a", "b"], then="hang"))
    await asyncio.sleep(0.15)
    assert not provider.closed  # still within grace_s: waiting for a reader to resume
    await wait_until(lambda: bool(provider.closed), timeout=1.0)

    assert provider.closed[0] - provider.started[0] >= 0.3


async def test_max_tokens_stops_the_provider(serve):
    app = streamserver.create_app(base_config(**SCRIPTED))
    client = await serve(app=app)
    provider = app[SERVICE].providers["scripted"]

    got = await client.sse(
        "/v1/stream",
        params={
            "prompt": script(["a", "b", "c", "d"], then="hang"),
            "model": "scripted",
            "max_tokens": "2",
        },
    )

    end = got.json()[-1]
    assert [e["content"] for e in got.json() if "content" in e] == ["a", "b"]
    assert end["finish_reason"] == "length"
    assert provider.closed


async def test_a_provider_that_stops_at_max_tokens_keeps_its_own_finish(serve):
    # Told the cap, the provider stops there itself: its finish and usage stand; an empty
    # reasoning delta after the cap is no content and cuts nothing.
    client = await serve(base_config(**SCRIPTED))
    prompt = script(["a", "b", {"reasoning": ""}], finish="stop")

    got = await client.sse(
        "/v1/stream", params={"prompt": prompt, "model": "scripted", "max_tokens": "2"}
    )

    end = got.json()[-1]
    assert [e["content"] for e in got.json() if "content" in e] == ["a", "b"]
    assert end["finish_reason"] == "stop"
    assert end["usage"]["estimated"] is False


async def test_a_provider_not_told_the_cap_is_cut_at_it_without_waiting(serve):
    # No max_tokens in the request: the cap is limits.max_tokens, which the provider never saw,
    # so the stream ends at the cap instead of waiting for a delta that may never come.
    app = streamserver.create_app(base_config(**SCRIPTED, limits={"max_tokens": 2}))
    client = await serve(app=app)
    prompt = script(["a", "b"], then="hang")

    got = await asyncio.wait_for(
        client.sse("/v1/stream", params={"prompt": prompt, "model": "scripted"}), 10
    )

    end = got.json()[-1]
    assert [e["content"] for e in got.json() if "content" in e] == ["a", "b"]
    assert end["finish_reason"] == "length"
    assert app[SERVICE].providers["scripted"].closed


async def test_route_max_tokens_is_the_default_for_requests(serve):
    config = base_config(
        routes={"/s": {"formatter": "events", "max_tokens": 3, "allow": ["model"]}}
    )
    client = await serve(config)

    got = await client.sse("/s", params={"prompt": "one two three four five six", "model": "echo"})

    assert [e.data for e in got.events if e.event == "token"] == [
        '{"content": "one"}',
        '{"content": " two"}',
        '{"content": " three"}',
    ]


@pytest.mark.parametrize(
    "resume",
    [{"grace_s": 0, "retain_s": 0}, {"grace_s": 10, "retain_s": 60}],
    ids=["no-resume", "shipped"],
)
async def test_a_reader_that_reads_nothing_for_5s_holds_the_producer_still(serve, resume):
    endless = {"ttft_ms": 0, "tokens_per_second": 0, "answer_tokens": 1_000_000}
    config = base_config(
        limits={"high_water_events": 64, "max_tokens": 1_000_000},
        resume=resume,
        providers={"simulated": endless},
    )
    app = streamserver.create_app(config)
    client = await serve(app=app)
    params = {"prompt": "go", "max_tokens": "300000"}

    async with client.http.stream("GET", "/v1/stream", params=params) as response:
        lines = response.aiter_lines()
        await anext(lines)
        # Read nothing: the socket buffers fill, then the log, then the producer waits.
        await asyncio.sleep(1)
        (stream,) = app[SERVICE].streams.live()
        produced_after_1s, held_after_1s = stream.log.end, stream.log.nbytes
        await asyncio.sleep(4)
        produced_after_5s, held_after_5s = stream.log.end, stream.log.nbytes
        unread = stream.log.end - stream.log.floor
        tokens = sum(1 for line in [line async for line in lines] if line == "event: token")

    assert produced_after_5s == produced_after_1s < 300_000  # the stream's length stopped growing
    assert held_after_5s == held_after_1s  # and so did what the log holds
    assert unread <= 64 + 1
    assert tokens == 300_000  # then the reader got every token


def awaiting(task: asyncio.Task[object]) -> list[str]:
    """The qualified names of the coroutines (and generators) ``task`` is suspended in, outermost
    first."""
    names = []
    frame_holder: object = task.get_coro()
    while frame_holder is not None:
        code = getattr(frame_holder, "cr_code", None) or getattr(frame_holder, "gi_code", None)
        if code is None:
            break
        names.append(code.co_qualname)
        frame_holder = getattr(frame_holder, "cr_await", None) or getattr(
            frame_holder, "gi_yieldfrom", None
        )
    return names


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/v1/stream", None),
        ("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}]}),
    ],
)
async def test_a_live_stream_holds_no_frame_of_the_error_middleware(serve, method, path, body):
    # A frame held for a stream's whole life is memory paid by every open stream: the middleware
    # that shapes aiohttp's own 404/405 hands a stream route's request straight on.
    app = streamserver.create_app(base_config(**SCRIPTED))
    client = await serve(app=app)
    request = {"params": {"prompt": script(["a"], then="hang"), "model": "scripted"}}
    if body is not None:
        request = {"json": {**body, "model": "scripted", "stream": True,
                            "messages": [{"role": "user", "content": script(["a"], then="hang")}]}}  # fmt: skip
    async with client.http.stream(method, path, **request) as response:
        assert response.status_code == 200
        async for _ in response.aiter_bytes():
            break
        handlers = [
            names for t in asyncio.all_tasks() if "Application._handle" in (names := awaiting(t))
        ]
        assert handlers, "no request task found"
        for names in handlers:
            assert not any("http_errors" in name for name in names), names
    missing = await client.http.get("/v1/nope")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"  # the others still get the JSON shape
