"""The offline ``simulated`` provider: repeatable text, an exact echo, realistic pacing, the
failure and length limits that exercise a client's error paths, and the request parameters it
honours (``seed``, ``stop``, ``temperature``, ``user``).

The provider is built the way the server builds it (the registered factory, called with options
validated from a config section) and driven through the ``Provider`` interface; the last tests go
through an HTTP route. Its structured models have their own files: ``test_sim_tools.py``,
``test_sim_schema.py``, ``test_sim_reasoner.py``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time

import pytest
from conftest import FAST_SIMULATED, base_config
from hypothesis import given, settings
from hypothesis import strategies as st
from sim_helpers import QUESTION, request, say, simulated

from streamserver import ProviderError
from streamserver.builtins import simulated as simulated_module
from streamserver.types import REQUEST_PARAMETERS, Finish, GenerationRequest, Message, Provider

ECHOED = "Echo keeps\r\nevery character: spaces  , tabs\t, 🙂 and data: lines.\n"


async def generate(
    provider: Provider, req: GenerationRequest | None = None
) -> tuple[list[str], Finish | None]:
    """Every text delta, and the ``Finish`` (if one came)."""
    tokens: list[str] = []
    finish = None
    async for delta in provider.stream(req or request()):
        if isinstance(delta, Finish):
            finish = delta
        else:
            tokens.append(delta)
    return tokens, finish


async def timed(
    provider: Provider, req: GenerationRequest
) -> tuple[float | None, list[float], float]:
    """Seconds to the first token, the arrival time of every token, and the total, from the call."""
    started = time.monotonic()
    arrivals = []
    async for delta in provider.stream(req):
        if isinstance(delta, str):
            arrivals.append(time.monotonic() - started)
    return (arrivals[0] if arrivals else None), arrivals, time.monotonic() - started


# Repeatable text


async def test_the_same_seed_gives_the_same_tokens():
    first, _ = await generate(simulated(seed=11))
    second, _ = await generate(simulated(seed=11))

    assert first == second
    assert len(first) >= FAST_SIMULATED["answer_tokens"]


async def test_one_seeded_provider_repeats_itself_on_every_request():
    provider = simulated(seed=11)

    assert (await generate(provider))[0] == (await generate(provider))[0]


async def test_a_different_seed_gives_different_tokens():
    first, _ = await generate(simulated(seed=11))
    second, _ = await generate(simulated(seed=12))

    assert first != second


async def test_generated_text_is_words_and_sentences():
    tokens, finish = await generate(simulated(seed=11))
    text = "".join(tokens)

    assert text.endswith(".")
    assert len(text.split()) >= 10
    assert finish is not None and finish.reason == "stop"


@pytest.mark.parametrize("answer_tokens", [10, 60, 300])
async def test_answer_tokens_sets_the_answer_length_to_the_sentence_that_passes_it(answer_tokens):
    tokens, _ = await generate(simulated(seed=5, answer_tokens=answer_tokens))

    assert answer_tokens <= len(tokens) < answer_tokens + 80  # a sentence has at most 40 words
    assert "".join(tokens).endswith(".")


# Echo


async def test_echo_streams_back_the_last_user_message_exactly():
    messages = (
        Message("system", "Be brief."),
        Message("user", "an earlier question"),
        Message("assistant", "an earlier answer"),
        Message("user", ECHOED),
    )
    tokens, finish = await generate(simulated(), GenerationRequest(messages, "echo"))

    assert "".join(tokens) == ECHOED
    assert finish is not None and finish.reason == "stop" and finish.model == "echo"


async def test_echo_sends_token_sized_pieces_not_one_blob():
    text = "Streaming servers deliver internationalization-heavy sentences piece by piece."
    tokens, _ = await generate(simulated(), request(text, "echo"))

    assert "".join(tokens) == text
    assert len(tokens) > len(text.split())  # long words become several sub-word pieces
    assert max(len(t) for t in tokens) <= 8


async def test_echo_of_no_user_message_is_empty():
    only_system = GenerationRequest((Message("system", "no question"),), "echo")

    tokens, finish = await generate(simulated(), only_system)

    assert tokens == []
    assert finish is not None and finish.reason == "stop"


ECHO_PROVIDER = simulated()
AWKWARD = ["", "\n", "\r", "\r\n", "\n\n", " ", "data: x\n\n", "event: done", ":", "🙂", "👨‍👩‍👧", "\x00",
           "\u2028", "é", "ﬁ", "a" * 30, " " * 20, "\t\t", "日本語の文", "1234567", "'s'll"]  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(AWKWARD), st.text()), max_size=8).map("".join))
async def test_echo_gives_back_any_text_exactly_in_non_empty_pieces(text):
    tokens, finish = await generate(ECHO_PROVIDER, request(text, "echo"))

    assert "".join(tokens) == text
    assert all(tokens)
    assert finish is not None and finish.usage is not None
    assert finish.usage.completion_tokens == len(tokens)


# Pacing


async def test_tokens_per_second_paces_the_stream():
    provider = simulated(tokens_per_second=100, ttft_ms=0)

    _, arrivals, _ = await timed(provider, request(max_tokens=30))

    spread = arrivals[-1] - arrivals[0]  # 29 gaps of 10 ms (+-25 % jitter each) = 0.29 s
    assert len(arrivals) == 30
    assert spread >= 0.8 * 29 / 100
    assert spread < 29 / 100 + 1.5


async def test_paced_tokens_keep_their_schedule_and_are_never_early():
    # Paced streams due in the same millisecond share one timer; none may be woken before its
    # time, and late wakeups must not add up (the schedule is absolute).
    provider = simulated(tokens_per_second=200, ttft_ms=0, jitter=0)
    runs = await asyncio.gather(*(timed(provider, request(max_tokens=20)) for _ in range(50)))

    for _, arrivals, _ in runs:
        # From the call, not from the first token: a stream's schedule starts after the call, so
        # a process descheduled before the first arrival (a loaded machine) makes no token early.
        assert len(arrivals) == 20
        assert all(arrival >= i * 0.005 - 0.0005 for i, arrival in enumerate(arrivals))
        assert arrivals[-1] < 19 * 0.005 + 1.0


async def test_a_cancelled_paced_stream_does_not_disturb_the_others():
    provider = simulated(tokens_per_second=200, ttft_ms=0, jitter=0)
    doomed = asyncio.create_task(generate(provider, request(max_tokens=20)))
    survivor = asyncio.create_task(generate(provider, request(max_tokens=20)))
    await asyncio.sleep(0.02)
    doomed.cancel()

    tokens, finish = await survivor
    assert len(tokens) == 20 and finish is not None
    with pytest.raises(asyncio.CancelledError):
        await doomed


def test_one_provider_paces_streams_on_successive_event_loops():
    # An app can be started, stopped and started again on a new loop (tests, embedding).
    provider = simulated(tokens_per_second=500, ttft_ms=0, jitter=0)
    for _ in range(2):
        tokens, finish = asyncio.run(generate(provider, request(max_tokens=5)))
        assert len(tokens) == 5 and finish is not None


async def test_ttft_ms_delays_the_first_token():
    first, _, _ = await timed(simulated(ttft_ms=150), request("hi there", "echo"))

    assert first is not None
    assert 0.15 - 0.005 <= first < 0.15 + 1.5


async def test_ttft_ms_applies_to_echo_and_generated_text_alike():
    provider = simulated(ttft_ms=100)
    echoed, _, _ = await timed(provider, request("hi", "echo"))
    generated, _, _ = await timed(provider, request(max_tokens=2))

    assert echoed is not None and echoed >= 0.095
    assert generated is not None and generated >= 0.095


async def test_zero_tokens_per_second_is_as_fast_as_possible():
    provider = simulated(tokens_per_second=0, ttft_ms=0, answer_tokens=5000)

    _, arrivals, total = await timed(provider, request())

    assert len(arrivals) >= 5000
    assert total < 3.0


async def test_flat_out_generation_still_lets_other_tasks_run():
    provider = simulated(tokens_per_second=0, ttft_ms=0, answer_tokens=5000)
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    ticker = asyncio.create_task(tick())
    try:
        await generate(provider)
    finally:
        ticker.cancel()

    assert ticks >= 10


class _CountingLoop(asyncio.SelectorEventLoop):
    """The standard loop, counting its iterations."""

    iterations = 0

    def _run_once(self) -> None:
        self.iterations += 1
        super()._run_once()


def _bursts(streams: int, tokens: int) -> dict[int, list[int]]:
    """Run ``streams`` unpaced streams of ``tokens`` tokens together on a counting loop: for each
    stream, the loop iteration each token was produced in."""
    provider = simulated(tokens_per_second=0, ttft_ms=0, answer_tokens=tokens)
    loop = _CountingLoop()

    async def one() -> list[int]:
        return [loop.iterations async for _ in provider.stream(request(max_tokens=tokens))]

    async def run() -> list[list[int]]:
        return await asyncio.gather(*(one() for _ in range(streams)))

    try:
        produced = loop.run_until_complete(run())
    finally:
        loop.close()
    return dict(enumerate(produced))


def test_unpaced_streams_take_turns_a_loop_iteration_holds_a_few_bursts():
    # 23 streams flat out: after its first burst (a new stream's first tokens do not wait),
    # each iteration runs at most TURNS_PER_ITERATION of their bursts, so a new stream's accept
    # or first write never waits behind all of them; and each stream gets its turn in order:
    # none waits more than its share of iterations.
    streams = 23
    iterations = _bursts(streams, 600)
    running: dict[int, set[int]] = {}
    for stream, produced in iterations.items():
        assert len(produced) >= 600
        for iteration in produced:
            if iteration != produced[0]:
                running.setdefault(iteration, set()).add(stream)
    assert max(len(s) for s in running.values()) <= simulated_module.TURNS_PER_ITERATION
    share = -(-streams // simulated_module.TURNS_PER_ITERATION)
    for produced in iterations.values():
        bursts = sorted(set(produced))
        assert max(b - a for a, b in itertools.pairwise(bursts)) <= share + 1


def test_a_few_unpaced_streams_each_run_in_every_loop_iteration():
    iterations = _bursts(simulated_module.TURNS_PER_ITERATION, 400)
    for produced in iterations.values():
        bursts = sorted(set(produced))
        assert len(bursts) > 2
        assert all(b - a == 1 for a, b in itertools.pairwise(bursts))


async def test_a_cancelled_stream_waiting_its_turn_gives_it_up():
    provider = simulated(tokens_per_second=0, ttft_ms=0, answer_tokens=3000)
    tasks = [asyncio.create_task(generate(provider, request(max_tokens=3000))) for _ in range(12)]
    for _ in range(3):
        await asyncio.sleep(0)
    for task in tasks[::2]:
        task.cancel()
    done = await asyncio.gather(*tasks, return_exceptions=True)

    assert [isinstance(d, asyncio.CancelledError) for d in done] == [True, False] * 6
    assert all(len(d[0]) == 3000 for d in done[1::2])  # type: ignore[index]
    pacer = provider._pacer
    assert pacer is not None
    for _ in range(3):
        await asyncio.sleep(0)
    assert not pacer.turns and not pacer.ticking


# Failure and limits


async def test_fail_after_tokens_raises_after_exactly_that_many_tokens():
    provider = simulated(fail_after_tokens=7, seed=1)
    tokens: list[str] = []

    with pytest.raises(ProviderError) as failed:
        async for delta in provider.stream(request()):
            assert isinstance(delta, str), "no Finish before the failure"
            tokens.append(delta)

    assert len(tokens) == 7
    assert failed.value.code == "provider_error"
    assert "7" in failed.value.message


async def test_fail_after_tokens_fails_echo_too():
    with pytest.raises(ProviderError):
        await generate(simulated(fail_after_tokens=2), request("one two three four", "echo"))


async def test_max_tokens_cuts_the_answer_short_with_reason_length():
    tokens, finish = await generate(simulated(seed=2), request(max_tokens=5))
    full, _ = await generate(simulated(seed=2), request())

    assert tokens == full[:5]
    assert finish is not None and finish.reason == "length"
    assert finish.usage is not None and finish.usage.completion_tokens == 5


async def test_max_tokens_that_fits_the_whole_answer_is_not_a_cut():
    text = "one two three"
    tokens, finish = await generate(simulated(), request(text, "echo", max_tokens=3))

    assert "".join(tokens) == text
    assert finish is not None and finish.reason == "stop"


async def test_usage_counts_prompt_and_answer_tokens():
    tokens, finish = await generate(simulated(), request("four tokens right here", "echo"))

    assert finish is not None and finish.usage is not None
    assert finish.usage.prompt_tokens == len(tokens) == 4
    assert finish.usage.completion_tokens == 4


# The request's parameters


def test_it_honours_the_documented_request_parameters_and_no_others():
    honoured = simulated().parameters

    assert set(honoured) == {"tools", "tool_choice", "parallel_tool_calls", "response_format",
                             "reasoning_effort", "seed", "stop", "user", "temperature"}  # fmt: skip
    assert set(honoured) <= set(REQUEST_PARAMETERS)
    assert not {"top_p", "logit_bias"} & set(honoured)


async def test_the_request_seed_repeats_the_text_and_wins_over_the_configured_one():
    first = await say(simulated(seed=None), request(sampling={"seed": 21}))
    again = await say(simulated(seed=3), request(sampling={"seed": 21}))
    other = await say(simulated(seed=None), request(sampling={"seed": 22}))

    assert first.text == again.text != other.text


async def test_a_seed_gives_the_same_text_whatever_the_pacing():
    flat_out = await say(simulated(seed=8), request())
    paced = await say(simulated(seed=8, tokens_per_second=5000, jitter=1), request())

    assert paced.text == flat_out.text


async def test_user_is_accepted_and_changes_nothing():
    plain = await say(simulated(), request(sampling={"seed": 4}))
    with_user = await say(simulated(), request(sampling={"seed": 4, "user": "u-42"}))

    assert with_user.deltas == plain.deltas


async def test_temperature_zero_is_greedy_the_conversation_decides_the_text():
    provider = simulated(seed=None)
    greedy = [await say(provider, request(sampling={"temperature": 0, "seed": s})) for s in (1, 2)]
    other_prompt = await say(provider, request("Another question", sampling={"temperature": 0}))
    sampled = [await say(provider, request(sampling={"temperature": 1})) for _ in range(2)]

    assert greedy[0].text == greedy[1].text != other_prompt.text
    assert sampled[0].text != sampled[1].text


async def test_stop_ends_the_text_before_the_first_stop_sequence():
    whole = await say(simulated(), request())
    words = whole.text.split()
    stops = [words[5] + " " + words[6], words[9]]  # the first one spans two pieces

    said = await say(simulated(), request(sampling={"stop": stops}))

    assert said.text == whole.text[: whole.text.index(stops[0])]
    assert said.finish is not None and said.finish.reason == "stop"
    assert said.finish.usage is not None
    assert said.finish.usage.completion_tokens == len(said.deltas) - 1


async def test_a_stop_sequence_that_never_comes_changes_nothing():
    whole = await say(simulated(), request())

    said = await say(simulated(), request(sampling={"stop": "never said"}))

    assert said.deltas == whole.deltas


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from(["ab", "a", "b", " ", "\n", "stop", "🙂", "xyz"]), max_size=12).map(
        "".join
    ),
    st.lists(st.text("ab \n🙂stopxyz", min_size=1, max_size=4), min_size=1, max_size=3),
)
async def test_stop_cuts_any_text_at_the_first_sequence_to_complete(text, stops):
    said = await say(ECHO_PROVIDER, request(text, "echo", sampling={"stop": stops}))

    text_before, matched = first_stop(text, stops)
    assert said.text == text_before
    assert said.finish is not None and said.finish.stop_sequence == matched
    assert all(isinstance(d, str) and d for d in said.deltas[:-1])


def first_stop(text: str, stops: list[str]) -> tuple[str, str | None]:
    """The text before the stop sequence that completes first (the longest of those completing
    together), and that sequence; the whole text and None if none occurs."""
    found = [(text.find(s) + len(s), -len(s), s) for s in stops if s in text]
    if not found:
        return text, None
    end, _, matched = min(found)
    return text[: end - len(matched)], matched


@settings(max_examples=300, deadline=None)
@given(
    st.text("abc d🙂", max_size=14),
    st.lists(st.text("abc d🙂", min_size=1, max_size=4), min_size=1, max_size=3),
    st.lists(st.integers(1, 5), min_size=1, max_size=14),
)
def test_where_the_stop_falls_does_not_depend_on_how_the_pieces_cut_the_text(text, stops, sizes):
    from streamserver.builtins.simulated import _before_stop, _Script

    pieces, rest = [], text
    for size in sizes * (len(text) + 1):
        if not rest:
            break
        pieces.append(rest[:size])
        rest = rest[size:]
    script = _Script.__new__(_Script)
    script.stop_sequence = None
    said = "".join(_before_stop(iter(pieces), tuple(stops), script))

    assert (said, script.stop_sequence) == first_stop(text, stops)


# Through the server


async def test_an_sse_route_turns_the_failure_into_an_error_event_after_those_tokens(serve):
    client = await serve(
        base_config(providers={"simulated": {**FAST_SIMULATED, "fail_after_tokens": 4}})
    )

    got = await client.sse("/v1/stream", params={"prompt": QUESTION})
    names = got.names()
    error, end = got.json()[-2:]

    assert names == ["stream_start"] + ["token"] * 4 + ["error", "stream_end"]
    assert error["code"] == "provider_error"
    assert end["finish_reason"] == "error" and end["tokens_generated"] == 4


async def test_an_sse_route_reports_max_tokens_as_finish_reason_length(serve):
    client = await serve(base_config())

    got = await client.sse("/v1/stream", params={"prompt": QUESTION, "max_tokens": "6"})
    end = json.loads(got.events[-1].data)

    assert got.names() == ["stream_start"] + ["token"] * 6 + ["stream_end"]
    assert end["finish_reason"] == "length" and end["tokens_generated"] == 6


async def test_the_configured_model_names_are_what_the_provider_offers(serve):
    client = await serve(
        base_config(providers={"simulated": {**FAST_SIMULATED, "models": ["tiny", "echo"]}})
    )

    models = (await client.http.get("/v1/models")).json()
    got = await client.sse("/v1/stream", params={"prompt": QUESTION, "model": "tiny"})

    assert {m["id"] for m in models["data"]} == {"tiny", "echo"}
    assert json.loads(got.events[0].data)["model"] == "tiny"
    assert got.names()[-1] == "stream_end"


async def test_the_structured_models_are_offered_with_no_configuration(serve):
    client = await serve(base_config())

    models = (await client.http.get("/v1/models")).json()

    assert {m["id"] for m in models["data"]} == {"simulated", "echo", "sim-tools", "sim-reasoner"}
