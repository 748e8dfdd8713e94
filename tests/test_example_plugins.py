"""The example plugins in plugins/ work as a user would use them: loaded from the plugins directory."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from conftest import REPO, base_config, script

import streamserver
from streamserver.testing import assert_lossless_buffer

PLUGINS_DIR = str(REPO / "plugins")


@pytest.fixture(scope="module")
def config():
    return streamserver.load_config(base_config(server={"plugins_dir": PLUGINS_DIR}))


@pytest.fixture
def markdown(config):
    part = config.buffers["markdown"]
    return lambda: part.registration.factory(part.options)


def segments(buffer, deltas):
    out = [s for d in deltas for s in buffer.push(d)]
    rest = buffer.flush()
    return [*out, rest] if rest else out


def test_the_plugins_directory_registers_both_examples(config):
    assert config.registry.sources["markdown_buffer"].origin.endswith("markdown_buffer.py")
    assert "markdown" in config.buffers
    assert "slow_first_token" in config.registry.parts["metrics_sinks"]


def test_markdown_never_ends_a_segment_inside_a_code_span(markdown):
    got = segments(markdown(), ["Use `pip", " install", " x` now ", "please"])
    assert got == ["Use ", "`pip install x` now ", "please"]


def test_markdown_never_ends_a_segment_inside_a_link(markdown):
    got = segments(markdown(), ["See [the", " docs](https://", "example.org/a b) and", " more"])
    assert got == ["See ", "[the docs](https://example.org/a b) ", "and ", "more"]


def test_markdown_holds_a_fenced_block_until_it_closes(markdown):
    buffer = markdown()
    assert list(buffer.push("Code:\n```py\nx = 1\n")) == ["Code:\n"]
    assert list(buffer.push("y = 2\n")) == []
    assert list(buffer.push("```\nDone ")) == ["```py\nx = 1\ny = 2\n```\nDone "]


def test_markdown_brackets_that_are_not_links_do_not_hold_text(markdown):
    assert segments(markdown(), ["a[0] = 1 ", "ok"]) == ["a[0] = 1 ", "ok"]


def test_markdown_keeps_its_place_across_a_timer_flush(markdown):
    buffer = markdown()
    buffer.push("`code ")
    assert buffer.flush() == "`code "  # the core's timer released it mid-span
    assert list(buffer.push("span` after ")) == ["span` after "]


def test_markdown_timer_release_keeps_an_open_link_back(markdown):
    buffer = markdown()
    assert list(buffer.push("See [the docs](https://exa")) == ["See "]

    assert buffer.release() == ""
    assert list(buffer.push("mple.org) and")) == ["[the docs](https://example.org) "]


def test_markdown_timer_release_gives_up_the_text_before_an_open_construct(markdown):
    buffer = markdown()
    buffer.push("run`make te")

    assert buffer.release() == "run"
    assert buffer.release() == ""
    assert list(buffer.push("st` now")) == ["`make test` "]


def test_markdown_timer_release_gives_up_a_construct_open_longer_than_max_hold(config):
    part = config.buffers["markdown"]
    buffer = part.registration.factory(part.registration.options(max_hold_ms=0))
    buffer.push("[a very long link text")

    assert buffer.release() == "[a very long link text"


def test_markdown_timer_release_gives_up_a_word_outside_any_construct(markdown):
    buffer = markdown()
    buffer.push("Hello wor")

    assert buffer.release() == "wor"


MARKDOWN_PIECES = ["`", "``", "```", "[", "]", "(", ")", " ", "\n", "a", "b c", "](x)", "🙂"]


@pytest.mark.parametrize("max_hold_ms", [0, 60_000])
def test_markdown_is_lossless_and_chunk_invariant_whenever_the_timer_fires(config, max_hold_ms):
    part = config.buffers["markdown"]
    options = part.registration.options(max_hold_ms=max_hold_ms)
    assert_lossless_buffer(part.registration.factory, options, pieces=MARKDOWN_PIECES)


async def test_markdown_flush_timer_does_not_cut_an_ordinary_link(serve):
    # The timer (100 ms) fires inside the link, 200 ms before the delta that closes it.
    client = await serve(
        base_config(
            server={"plugins_dir": PLUGINS_DIR},
            buffers={"markdown": {"max_delay_ms": 100}},
            plugins={"modules": ["streamserver.testing.scripted"]},
            providers={"scripted": {}},
        )
    )
    deltas = ["See [the docs](https://exa", "mple.org) and more"]
    got = await client.sse(
        "/v1/stream",
        params={"prompt": script(deltas, gap_ms=300), "model": "scripted", "buffer": "markdown"},
    )
    contents = [json.loads(e.data)["content"] for e in got.events if e.event == "token"]

    assert contents == ["See ", "[the docs](https://example.org) and ", "more"]


async def test_markdown_buffer_per_request_over_http(serve):
    client = await serve(base_config(server={"plugins_dir": PLUGINS_DIR}))
    prompt = "Run `make test` and read [the guide](http://x/y z). Done."
    got = await client.sse(
        "/v1/stream", params={"prompt": prompt, "model": "echo", "buffer": "markdown"}
    )
    contents = [json.loads(e.data)["content"] for e in got.events if e.event == "token"]

    assert "".join(contents) == prompt
    assert all(c.count("`") % 2 == 0 for c in contents)
    assert "[the guide](http://x/y z). " in contents


async def test_slow_first_token_sink_counts_and_logs(serve, caplog):
    config = base_config(
        server={"plugins_dir": PLUGINS_DIR},
        metrics={"sinks": ["memory", "slow_first_token"], "slow_first_token": {"threshold_ms": 20}},
        providers={"simulated": {"ttft_ms": 50, "tokens_per_second": 0}},
    )
    client = await serve(config)
    with caplog.at_level(logging.WARNING, logger="streamserver.slow_first_token"):
        await client.sse("/stream", params={"prompt": "hi", "model": "echo"})
        for _ in range(100):  # the sink runs on the sinks' worker thread: its count lands shortly
            metrics = (await client.http.get("/v1/stream/metrics")).json()
            if metrics["slow_first_tokens"]:
                break
            await asyncio.sleep(0.01)

    assert metrics["slow_first_tokens"] == 1
    assert "slow first token" in caplog.text
