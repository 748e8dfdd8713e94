"""Metrics sinks cannot hurt a stream: one that raises is logged and skipped, one that blocks runs on
the sinks' worker thread and never delays a stream, and once a stuck sink's queue is full its calls
are dropped with a warning. The sinks are real plugins (``tests/plugin_fixtures/misbehaving_sinks.py``)
loaded by module name; the streams go over real HTTP."""

from __future__ import annotations

import logging
import time

import pytest
from conftest import base_config, wait_until

import streamserver
from streamserver.web.keys import SERVICE

PROMPT = "Sinks must never touch this text: 🙂, tabs\t and\r\nline ends."


def with_sinks(*sinks: str, **sink_options: dict) -> dict:
    """A test config with the misbehaving sinks plugin and these sinks (after ``memory``);
    ``sink_options`` become their ``[metrics.<sink>]`` sections."""
    return base_config(
        plugins={"modules": ["misbehaving_sinks"]},
        metrics={"sinks": ["memory", *sinks], **sink_options},
    )


def text_of(got) -> str:
    return "".join(data["content"] for data in got.json() if "content" in data)


def sink_failures(caplog, sink: str) -> set[str]:
    """The methods of ``sink`` whose failure was logged (with its traceback) by the fan-out."""
    return {
        r.getMessage().rsplit(" ", 1)[1]
        for r in caplog.records
        if r.name == "streamserver.sinks"
        and r.levelno == logging.ERROR
        and r.getMessage().startswith(f"metrics sink {sink} failed in ")
        and r.exc_info is not None
    }


@pytest.mark.parametrize(
    ("sink", "cls"), [("raising", "RaisingSink"), ("raising-inline", "InlineRaisingSink")]
)
async def test_a_sink_that_raises_everywhere_is_logged_and_streams_complete(
    serve, caplog, sink, cls
):
    client = await serve(with_sinks(sink))

    with caplog.at_level(logging.ERROR, logger="streamserver.sinks"):
        got = [await client.sse("/v1/stream", params={"prompt": PROMPT, "model": "echo"})
               for _ in range(2)]  # fmt: skip
        refused = await client.http.get("/v1/stream")  # no prompt: request_rejected raises too
        metrics_response = await client.http.get("/v1/stream/metrics")
        metrics = metrics_response.json()
        calls = {"stream_started", "first_token", "stream_finished", "request_rejected"}
        # a worker-thread sink's failures are logged a moment later
        await wait_until(lambda: sink_failures(caplog, cls) == calls)

    assert [g.status for g in got] == [200, 200]
    assert [text_of(g) for g in got] == [PROMPT, PROMPT]
    assert [g.names()[-1] for g in got] == ["stream_end", "stream_end"]
    assert [g.json()[-1]["finish_reason"] for g in got] == ["stop", "stop"]
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "missing_prompt"
    # the memory sink beside it still saw everything, and its figures are still served
    assert metrics_response.status_code == 200
    assert metrics["outcomes"] == {"completed": 2}
    assert metrics["rejected"] == {"missing_prompt": 1}


async def test_a_blocking_sink_does_not_delay_streams(serve):
    app = streamserver.create_app(with_sinks("blocking", blocking={"block_s": 5}))
    client = await serve(app=app)
    (blocking,) = [s for s in app[SERVICE].metrics_sinks if type(s).__name__ == "BlockingSink"]

    try:
        began = time.monotonic()
        first = await client.sse("/v1/stream", params={"prompt": PROMPT, "model": "echo"})
        await wait_until(lambda: blocking.calls == ["stream_started"])  # stuck in its first call
        second = await client.sse("/v1/stream", params={"prompt": PROMPT, "model": "echo"})
        elapsed = time.monotonic() - began
        metrics = (await client.http.get("/v1/stream/metrics")).json()
    finally:
        blocking.release()

    assert [text_of(first), text_of(second)] == [PROMPT, PROMPT]
    assert [first.names()[-1], second.names()[-1]] == ["stream_end", "stream_end"]
    assert elapsed < 1.0  # one blocked call alone lasts 5 s
    assert metrics["blocking_sink_calls"] == 1  # still inside stream_started
    assert metrics["outcomes"] == {"completed": 2}


async def test_calls_for_a_stuck_sink_beyond_its_queue_are_dropped_with_a_warning(
    serve, monkeypatch, caplog
):
    monkeypatch.setattr(streamserver.sink_fanout, "QUEUE_LIMIT", 4)
    app = streamserver.create_app(with_sinks("blocking", blocking={"block_s": 5}))
    client = await serve(app=app)
    (blocking,) = [s for s in app[SERVICE].metrics_sinks if type(s).__name__ == "BlockingSink"]
    fanout = app[SERVICE].sinks

    try:
        with caplog.at_level(logging.WARNING, logger="streamserver.sinks"):
            # 3 calls per stream: the worker takes the first and blocks, two wait in the queue
            first = await client.sse("/v1/stream", params={"prompt": PROMPT, "model": "echo"})
            await wait_until(lambda: blocking.calls == ["stream_started"])
            # 6 more: two fill the queue (4), four are dropped
            rest = [await client.sse("/v1/stream", params={"prompt": PROMPT, "model": "echo"})
                    for _ in range(2)]  # fmt: skip
        dropped = fanout.dropped
        warnings = [r.getMessage() for r in caplog.records if r.name == "streamserver.sinks"]
        blocking.release()
        # once unstuck, the worker runs exactly what was queued: 1 + 4 calls, never the dropped
        await wait_until(lambda: len(blocking.calls) == 5)
    finally:
        blocking.release()

    assert [text_of(g) for g in (first, *rest)] == [PROMPT] * 3
    assert dropped == 4
    assert warnings == ["a metrics sink is not keeping up: 1 calls dropped"]
    assert blocking.calls == [
        "stream_started", "first_token", "stream_finished", "stream_started", "first_token"
    ]  # fmt: skip
