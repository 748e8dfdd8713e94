"""The offline ``simulated`` provider: repeatable text, an exact echo, realistic pacing, and the
failure and length limits that exercise a client's error paths.

The provider is built the way the server builds it (the registered factory, called with options
validated from a config section) and driven through the ``Provider`` interface; the last tests go
through an HTTP route.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from conftest import FAST_SIMULATED, base_config
from hypothesis import given, settings
from hypothesis import strategies as st

from streamserver import ProviderError, load_config
from streamserver.types import Finish, GenerationRequest, Message, Provider

QUESTION = "Tell me about streaming."
ECHOED = "Echo keeps\r\nevery character: spaces  , tabs\t, 🙂 and data: lines.\n"


def simulated(**options: Any) -> Provider:
    """A provider from the ``[providers.simulated]`` section ``FAST_SIMULATED | options``."""
    config = load_config(base_config(providers={"simulated": {**FAST_SIMULATED, **options}}))
    part = config.providers["simulated"]
    return part.registration.factory(part.options)  # type: ignore[operator,no-any-return]


def request(
    prompt: str = QUESTION, model: str = "simulated", max_tokens: int | None = None
) -> GenerationRequest:
    return GenerationRequest((Message("user", prompt),), model, max_tokens)


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
        assert len(arrivals) == 20
        offsets = [t - arrivals[0] for t in arrivals]
        assert all(offset >= i * 0.005 - 0.0005 for i, offset in enumerate(offsets))
        assert offsets[-1] < 19 * 0.005 + 1.0


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
