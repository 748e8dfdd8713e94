"""The ``sim-reasoner`` model: its thinking (``Reasoning`` deltas, as long as ``reasoning_effort``
asks) comes before its text answer, and counts like any token; then through a real server."""

from __future__ import annotations

import json

import pytest
from conftest import base_config
from sim_helpers import request, say, simulated

from streamserver import ProviderError
from streamserver.types import Reasoning

PROVIDER = simulated()


def thinking(effort: str | None = None, prompt: str = "Why do servers stream tokens?", **fields):
    sampling = {"reasoning_effort": effort} if effort else {}
    return request(prompt, "sim-reasoner", sampling={**sampling, **fields})


async def test_it_thinks_first_then_answers():
    said = await say(PROVIDER, thinking())

    assert said.kinds() == ["reasoning", "text", "finish"]
    assert said.finish is not None and said.finish.reason == "stop"
    assert said.finish.model == "sim-reasoner"
    assert said.text.endswith(".")


async def test_its_thinking_is_about_the_prompt_in_token_sized_pieces():
    said = await say(PROVIDER, thinking(prompt="Why is the sky blue?"))
    pieces = [d.text for d in said.deltas if isinstance(d, Reasoning)]

    assert '"Why is the sky blue?"' in said.reasoning
    assert len(pieces) > 10 and max(map(len, pieces)) <= 8


async def test_more_effort_thinks_longer():
    lengths = {}
    for effort in ("minimal", "low", "medium", "high"):
        said = await say(PROVIDER, thinking(effort, seed=1))
        lengths[effort] = said.reasoning.count(".") + said.reasoning.count("?")

    assert lengths["minimal"] < lengths["low"] < lengths["medium"] < lengths["high"]
    assert (await say(PROVIDER, thinking(seed=1))).reasoning == (
        await say(PROVIDER, thinking("medium", seed=1))
    ).reasoning  # medium is the default


async def test_effort_none_answers_without_thinking():
    said = await say(PROVIDER, thinking("none"))

    assert said.kinds() == ["text", "finish"]


async def test_an_unknown_effort_fails_before_the_first_token():
    with pytest.raises(ProviderError) as failed:
        await anext(PROVIDER.stream(thinking("extreme")))

    assert failed.value.code == "invalid_reasoning_effort" and "extreme" in failed.value.message


async def test_the_usage_counts_the_thinking_and_the_answer():
    said = await say(PROVIDER, thinking())

    assert said.reasoning and said.text
    assert said.finish is not None and said.finish.usage is not None
    assert said.finish.usage.completion_tokens == len(said.deltas) - 1


async def test_max_tokens_counts_the_thinking():
    said = await say(PROVIDER, request("why", "sim-reasoner", max_tokens=3))

    assert said.kinds() == ["reasoning", "finish"] and len(said.deltas) == 4
    assert said.finish is not None and said.finish.reason == "length"


async def test_the_same_seed_thinks_and_answers_the_same():
    first = await say(PROVIDER, thinking(seed=9))
    again = await say(simulated(tokens_per_second=5000, jitter=1), thinking(seed=9))

    assert first.deltas == again.deltas


async def test_stop_ends_the_answer_not_the_thinking():
    whole = await say(PROVIDER, thinking(seed=2))
    word = whole.text.split()[3]

    said = await say(PROVIDER, thinking(seed=2, stop=[word, '"Why do']))  # the 2nd: in the thinking

    assert said.reasoning == whole.reasoning
    assert said.text == whole.text[: whole.text.index(word)]


async def test_fail_after_tokens_fails_it_while_thinking():
    deltas = []
    with pytest.raises(ProviderError):
        async for delta in simulated(fail_after_tokens=2).stream(thinking()):
            deltas.append(delta)

    assert len(deltas) == 2 and all(isinstance(d, Reasoning) for d in deltas)


async def test_a_stream_of_sim_reasoner_completes_through_the_server(serve):
    client = await serve(base_config())

    got = await client.sse("/v1/stream", params={"model": "sim-reasoner", "prompt": "why"})
    text = "".join(
        e["content"] for e, n in zip(got.json(), got.names(), strict=True) if n == "token"
    )
    end = json.loads(got.events[-1].data)

    assert got.status == 200
    assert got.names()[0] == "stream_start" and got.names()[-1] == "stream_end"
    assert text.strip() and end["finish_reason"] == "stop"
