"""The randomised cut-and-resume trial: hundreds of streams, each cut several times by a real TCP
proxy (after a random number of bytes from the server, or at a random moment, with an RST or a
FIN), each resumed by an independent client, and each rebuilt with zero loss and zero duplicate
against the text the provider produced.

- **SSE**: the client reads with httpx + httpx-sse and resumes with ``Last-Event-ID`` on the URL it
  first used, on ``GET /v1/streams/{id}``, or with ``?last_event_id=``; every event it gets must be
  the one after the last it saw (ids ``<stream_id>:<seq>`` with no gap and no repeat).
- **WebSocket**: the client reads with the ``websockets`` library and resumes on a new socket with
  ``{"type": "resume", "stream_id", "received"}``; the messages must add up to the whole text.
- **The package's clients**, ``StreamClient`` and ``WebSocketStream``, resume by themselves through
  the same cuts.

The texts are the seeded simulated model's, or random prompts streamed back by ``model=echo``
(newlines, ``\\r``, NUL, SSE field names, JSON punctuation, combining marks, emoji and ZWJ
sequences, astral code points). Every trial draws its text and its cuts from its own
``random.Random``, so a failure names its seed and trial and can be run again alone:
``STREAMSERVER_CUT_SEED=<seed> STREAMSERVER_CUT_TRIALS=<trial> pytest tests/test_cut_and_resume.py``.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import httpx
import websockets
from conftest import base_config
from fakes.tcp_proxy import Cut, TCPProxy
from httpx_sse import aconnect_sse

import streamserver
from streamserver.client import StreamClient, StreamFailed, Token, WebSocketStream
from streamserver.types import GenerationRequest, Message
from streamserver.web.keys import SERVICE

SEED = int(os.environ.get("STREAMSERVER_CUT_SEED", "14"))
"""The trial's seed; every trial's text and cuts follow from it and the trial's number."""
ONLY = os.environ.get("STREAMSERVER_CUT_TRIALS", "")
"""Comma-separated trial numbers to run alone (to reproduce a failure); empty: all of them."""
TRIALS = 200
"""Trials per transport."""
AT_ONCE = 32
"""Trials running at the same time (each through its own proxy)."""
MAX_CONNECTIONS = 12
"""Connections one trial may open: its cuts plus some, so a trial that never ends fails instead."""
TRIAL_TIMEOUT_S = 20.0

CONFIG = base_config(
    providers={
        "simulated": {
            "ttft_ms": 2,
            "tokens_per_second": 500,
            "jitter": 0.25,
            "seed": SEED,
            "answer_tokens": 50,
        }
    },
    resume={"grace_s": 10, "retain_s": 60},
    limits={"requests_per_minute": 0, "max_concurrent_streams_per_key": 10_000},
)

WORDS = ["stream", "token", "resume", "the", "a", "cut", "event", "données", "東京", "ok"]
ODD = [
    "\n", "\r\n", "\r", "\n\n", "\x00", "\t", "\u2028", "\u2029", "\ufeff", "\uffff", "\U0010ffff",
    "🙂", "👨‍👩‍👧", "e\u0301", "🇫🇷", "data: ", "id: 1:2", "event: done", "retry: 0", ": ping", ":",
    "[DONE]", '"', "\\", "{", "}", "。", "…", "e.g. ", "3.14", "  ",
]  # fmt: skip
CODE_POINTS = [(0x21, 0x7E), (0xA0, 0x24F), (0x370, 0x3FF), (0x590, 0x6FF), (0x300, 0x36F),
               (0x4E00, 0x9FFF), (0x1F300, 0x1FAFF), (0x10000, 0x1FFFF)]  # fmt: skip


def random_text(rng: random.Random) -> str:
    """A prompt for ``echo``: words, odd strings and random code points (never a lone surrogate:
    JSON and UTF-8 cannot carry one)."""
    parts = []
    for _ in range(rng.randint(5, 60)):
        kind = rng.random()
        if kind < 0.5:
            parts.append(rng.choice(WORDS) + rng.choice(" ,. "))
        elif kind < 0.8:
            parts.append(rng.choice(ODD))
        else:
            low, high = rng.choice(CODE_POINTS)
            parts.append("".join(chr(rng.randint(low, high)) for _ in range(rng.randint(1, 6))))
    text = "".join(parts)
    return text if text.strip() else text + "x"


def random_cuts(rng: random.Random) -> list[Cut]:
    """Two to five cuts, one per connection: most after some bytes (in the headers or the
    handshake, early in the stream, or well into it), some at a moment; most an RST, some a FIN."""
    cuts = []
    for _ in range(rng.randint(2, 5)):
        reset = rng.random() < 0.75
        if rng.random() < 0.75:
            span = rng.choice([300, 800, 2000])
            cuts.append(Cut(after_bytes=rng.randint(1, span), reset=reset))
        else:
            cuts.append(Cut(after_s=rng.uniform(0, 0.03), reset=reset))
    return cuts


@dataclass(frozen=True, slots=True)
class Trial:
    """One stream to cut and resume: what to ask for, what must arrive, and where to cut."""

    number: int
    transport: str
    model: str
    prompt: str
    expected: str
    cuts: tuple[Cut, ...]
    rng: random.Random

    @classmethod
    def draw(cls, transport: str, number: int, simulated_text: str) -> Trial:
        """Trial ``number`` of ``transport``, the same for the same seed."""
        rng = random.Random(f"{SEED}:{transport}:{number}")
        if rng.random() < 0.25:
            model, prompt, expected = "simulated", "Tell me about streaming", simulated_text
        else:
            model = "echo"
            prompt = expected = random_text(rng)
        return cls(number, transport, model, prompt, expected, tuple(random_cuts(rng)), rng)

    def __str__(self) -> str:
        return (
            f"seed={SEED} {self.transport} trial={self.number} model={self.model} "
            f"prompt={self.prompt[:60]!r}... ({len(self.prompt)} chars) cuts={list(self.cuts)}"
        )


@dataclass
class Outcome:
    """What the trials of one transport did, for the checks at the end."""

    failures: list[str]
    cuts: int = 0
    connections: int = 0


Addresses = str | tuple[str, ...]
"""Where a trial connects: one server, or several (instances sharing a store), taken in turn."""


def at(address: Addresses, attempt: int) -> str:
    """The address of a trial's ``attempt``-th connection: with several instances, each
    connection (so each resume) goes to the next one."""
    return address if isinstance(address, str) else address[attempt % len(address)]


async def run_trials(
    base_url: str | list[str], trials: list[Trial], read: Callable[[Trial, Any], Awaitable[str]]
) -> Outcome:
    """Run every trial through its own proxy (one per server, the cuts dealt out in turn),
    ``AT_ONCE`` at a time; check each one's text."""
    urls = [base_url] if isinstance(base_url, str) else base_url
    ports = [urlsplit(url).port for url in urls]
    outcome = Outcome([])
    gate = asyncio.Semaphore(AT_ONCE)

    async def one(trial: Trial) -> None:
        async with gate:
            proxies = [
                TCPProxy("127.0.0.1", port or 0, trial.cuts[i :: len(ports)])
                for i, port in enumerate(ports)
            ]
            addresses = tuple([f"127.0.0.1:{await proxy.start()}" for proxy in proxies])
            try:
                async with asyncio.timeout(TRIAL_TIMEOUT_S):
                    text = await read(trial, addresses[0] if len(addresses) == 1 else addresses)
                assert text == trial.expected, f"got {text!r}"
            except (AssertionError, TimeoutError) as failed:
                outcome.failures.append(f"{trial}: {type(failed).__name__} {failed}")
            finally:
                for proxy in proxies:
                    outcome.cuts += proxy.cuts
                    outcome.connections += proxy.connections
                    await proxy.close()

    await asyncio.gather(*(one(trial) for trial in trials))
    return outcome


def draw_trials(transport: str, simulated_text: str, count: int = TRIALS) -> list[Trial]:
    numbers = [int(n) for n in ONLY.split(",")] if ONLY else range(count)
    return [Trial.draw(transport, n, simulated_text) for n in numbers]


async def simulated_text(app: Any) -> str:
    """The text the configured simulated model produces (it is seeded: the same every time)."""
    provider = app[SERVICE].providers["simulated"]
    request = GenerationRequest((Message("user", "Tell me about streaming"),), "simulated")
    return "".join([delta async for delta in provider.stream(request) if isinstance(delta, str)])


def check(outcome: Outcome, trials: list[Trial]) -> None:
    assert not outcome.failures, (
        f"{len(outcome.failures)} of {len(trials)} trials failed:\n"
        + "\n".join(outcome.failures[:5])
    )
    # Several cuts each: the plans' cuts landed (a few fall after their stream's end).
    assert ONLY or outcome.cuts >= 2 * len(trials), (
        f"only {outcome.cuts} cuts in {len(trials)} trials"
    )


# SSE --------------------------------------------------------------------------------------------


def sse_request(trial: Trial, stream_id: str | None, last_id: str | None) -> dict[str, Any]:
    """The request that starts the stream, or that resumes it after ``last_id``: on the URL it
    first used, on ``/v1/streams/{id}``, or with ``?last_event_id=``, as this trial's dice say."""
    start: dict[str, Any]
    if trial.model == "simulated":  # short prompt: fits in a query string
        start = {"method": "GET", "url": "/v1/stream",
                 "params": {"prompt": trial.prompt, "model": trial.model}}  # fmt: skip
    else:
        start = {"method": "POST", "url": "/v1/stream",
                 "json": {"prompt": trial.prompt, "model": trial.model}}  # fmt: skip
    if stream_id is None:
        return start
    way = trial.rng.choice(["same_url", "by_id", "by_id_query"]) if last_id else "by_id"
    if way == "same_url":
        return {**start, "headers": {"Last-Event-ID": last_id}}
    if way == "by_id_query":
        return {"method": "GET", "url": f"/v1/streams/{stream_id}",
                "params": {"last_event_id": last_id}}  # fmt: skip
    headers = {"Last-Event-ID": last_id} if last_id else {}
    return {"method": "GET", "url": f"/v1/streams/{stream_id}", "headers": headers}


async def read_sse(http: httpx.AsyncClient, trial: Trial, address: Addresses) -> str:
    """Read ``trial``'s stream through cuts; returns its text. Asserts, event by event, that each
    id follows the last one seen and each token's index the last token's."""
    stream_id: str | None = None
    last_id: str | None = None
    seq, index = -1, -1
    text: list[str] = []
    for attempt in range(MAX_CONNECTIONS):
        request = sse_request(trial, stream_id, last_id)
        request["url"] = f"http://{at(address, attempt)}{request['url']}"
        try:
            async with aconnect_sse(http, **request) as source:
                response = source.response
                assert response.status_code == 200, (response.status_code, request)
                if stream_id is None:
                    stream_id = response.headers["X-Stream-ID"]
                assert response.headers["X-Stream-ID"] == stream_id, "a new stream started"
                async for event in source.aiter_sse():
                    assert event.id == f"{stream_id}:{seq + 1}", (event.id, seq, request)
                    seq, last_id = seq + 1, event.id
                    data = json.loads(event.data)
                    if event.event == "token":
                        assert data["index"] == index + 1, (data, index)
                        index += 1
                        text.append(data["content"])
                    elif event.event == "stream_end":
                        assert data["finish_reason"] == "stop", data
                        return "".join(text)
                    else:
                        assert event.event == "stream_start", (event.event, data)
        except httpx.TransportError:
            pass  # cut: resume
    raise AssertionError(f"no end after {MAX_CONNECTIONS} connections")


async def test_sse_streams_cut_several_times_each_are_resumed_with_no_loss_and_no_duplicate(
    serve,
):
    app = streamserver.create_app(CONFIG)
    client = await serve(app=app)
    trials = draw_trials("sse", await simulated_text(app))

    # One client for every trial: an httpx client each would load the CA certificates 200 times.
    async with httpx.AsyncClient(timeout=5) as http:
        outcome = await run_trials(client.base_url, trials, partial(read_sse, http))

    check(outcome, trials)


# WebSocket --------------------------------------------------------------------------------------


async def read_ws(trial: Trial, address: Addresses) -> str:
    """Read ``trial``'s stream through cuts, resuming on a new socket from the count of messages
    received; returns its text (checked against the ``done`` message's ``full_response``)."""
    stream_id: str | None = None
    messages: list[dict[str, Any]] = []
    for attempt in range(MAX_CONNECTIONS):
        try:
            async with websockets.connect(
                f"ws://{at(address, attempt)}/ws/stream",
                open_timeout=5,
                ping_interval=None,
                max_size=None,
            ) as socket:
                if stream_id is None:
                    await socket.send(json.dumps({"prompt": trial.prompt, "model": trial.model}))
                else:
                    resume = {"type": "resume", "stream_id": stream_id, "received": len(messages)}
                    await socket.send(json.dumps(resume))
                while True:
                    message = json.loads(await socket.recv())
                    assert message["type"] in ("start", "token", "done"), message
                    assert (message["type"] == "start") == (not messages), (message, messages)
                    messages.append(message)
                    if message["type"] == "start":
                        stream_id = message["stream_id"]
                    elif message["type"] == "done":
                        text = "".join(m["content"] for m in messages if m["type"] == "token")
                        assert message == {"type": "done", "full_response": text}, message
                        return text
        except (OSError, EOFError, TimeoutError, websockets.WebSocketException):
            pass  # cut: resume (or start again if the stream never named itself)
    raise AssertionError(f"no done after {MAX_CONNECTIONS} connections")


async def test_websocket_streams_cut_several_times_each_are_resumed_with_no_loss_and_no_duplicate(
    serve,
):
    app = streamserver.create_app(CONFIG)
    client = await serve(app=app)
    trials = draw_trials("ws", await simulated_text(app))

    outcome = await run_trials(client.base_url, trials, read_ws)

    check(outcome, trials)


# The package's own clients --------------------------------------------------------------------

CLIENT_TRIALS = 100
"""Trials per client: what they add is the clients' own resume logic, read by nobody else."""


async def read_with_stream_client(trial: Trial, address: str) -> str:
    """``StreamClient``: it resumes by itself; a cut before the stream named itself is a
    ``StreamFailed`` (nothing to resume), and the caller starts again."""
    for _ in range(MAX_CONNECTIONS):
        async with StreamClient(f"http://{address}", backoff_s=0.001, max_reconnects=12) as client:
            try:
                tokens = [
                    event.content
                    async for event in client.stream(trial.prompt, model=trial.model)
                    if isinstance(event, Token)
                ]
            except StreamFailed:
                assert client.last is not None and client.last.stream_id is None, client.last
                continue
            assert "".join(tokens) == client.last.text
            return "".join(tokens)
    raise AssertionError(f"no end after {MAX_CONNECTIONS} streams")


async def read_with_websocket_stream(trial: Trial, address: str) -> str:
    """``WebSocketStream``: it resumes by itself; a cut during the handshake or before ``start``
    is an error (nothing to resume), and the caller starts again."""
    for _ in range(MAX_CONNECTIONS):
        try:
            async with WebSocketStream(f"http://{address}", backoff_s=0.001,
                                       max_reconnects=12) as socket:  # fmt: skip
                messages = [m async for m in socket.stream(trial.prompt, model=trial.model)]
        except (StreamFailed, aiohttp.ClientError, ConnectionError):
            continue
        text = "".join(m["content"] for m in messages if m["type"] == "token")
        assert messages[-1] == {"type": "done", "full_response": text}, messages[-1]
        return text
    raise AssertionError(f"no done after {MAX_CONNECTIONS} sockets")


async def test_stream_client_resumes_every_cut_with_no_loss_and_no_duplicate(serve):
    app = streamserver.create_app(CONFIG)
    client = await serve(app=app)
    trials = draw_trials("sse-client", await simulated_text(app), CLIENT_TRIALS)

    outcome = await run_trials(client.base_url, trials, read_with_stream_client)

    check(outcome, trials)


async def test_websocket_stream_resumes_every_cut_with_no_loss_and_no_duplicate(serve):
    app = streamserver.create_app(CONFIG)
    client = await serve(app=app)
    trials = draw_trials("ws-client", await simulated_text(app), CLIENT_TRIALS)

    outcome = await run_trials(client.base_url, trials, read_with_websocket_stream)

    check(outcome, trials)
