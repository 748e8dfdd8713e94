"""The ``sim-tools`` model: it calls the offered tools as an upstream streams calls (id and name,
then the arguments in token pieces, then ``Finish("tool_calls")``), which tools and how many by
``tool_choice``, ``parallel_tool_calls`` and the prompt, and answers the results it gets back.

The arguments' fit to their schemas is ``test_sim_schema.py``'s.
"""

from __future__ import annotations

import time

import pytest
from sim_helpers import request, say, simulated, tool

from streamserver import ProviderError
from streamserver.tokens import tokenize
from streamserver.types import Finish, GenerationRequest, Message, ToolCall, ToolCallDelta

WEATHER = tool("get_weather", {"type": "object", "required": ["city"], "properties": {
    "city": {"type": "string"}, "unit": {"enum": ["celsius", "fahrenheit"]}}})  # fmt: skip
TIME = tool("get_time", {"type": "object", "required": ["zone"], "properties": {
    "zone": {"type": "string", "enum": ["UTC", "CET"]}}})  # fmt: skip
NEWS = tool("get_news", {"type": "object", "properties": {"topic": {"type": "string"}}})
TOOLS = (WEATHER, TIME, NEWS)
PROVIDER = simulated()


def asking(prompt: str = "What is the weather in Paris?", **fields) -> GenerationRequest:
    return request(prompt, "sim-tools", **{"tools": TOOLS, **fields})


def after_results(*results: tuple[str, str, str], **fields) -> GenerationRequest:
    """The conversation after the model called tools (call id, name, result each)."""
    calls = tuple(ToolCall(cid, name, "{}", i) for i, (cid, name, _) in enumerate(results))
    messages = (
        Message("user", "What is the weather in Paris?"),
        Message("assistant", "", tool_calls=calls),
        *(Message("tool", result, tool_call_id=cid) for cid, _, result in results),
    )
    return GenerationRequest(messages, "sim-tools", tools=TOOLS, **fields)


# One call


async def test_it_calls_the_first_offered_tool_as_an_upstream_streams_a_call():
    said = await say(PROVIDER, asking())
    first, *fragments, finish = said.deltas

    assert isinstance(first, ToolCallDelta) and first.index == 0 and first.arguments == ""
    assert first.name == "get_weather" and first.id is not None and first.id.startswith("call_")
    assert all(isinstance(f, ToolCallDelta) and f.index == 0 and f.id is None for f in fragments)
    arguments = "".join(f.arguments for f in fragments)  # type: ignore[union-attr]
    assert [f.arguments for f in fragments] == tokenize(arguments)  # token-sized pieces
    assert len(fragments) > 3
    assert said.arguments()["city"] == "Paris"
    assert finish == Finish("tool_calls", "sim-tools", finish.usage)  # type: ignore[union-attr]


async def test_the_usage_counts_every_delta_of_the_call():
    said = await say(PROVIDER, asking())

    assert said.finish is not None and said.finish.usage is not None
    assert said.finish.usage.completion_tokens == len(said.deltas) - 1
    assert said.finish.usage.prompt_tokens > len(tokenize("What is the weather in Paris?"))


async def test_the_same_seed_gives_the_same_calls_and_another_seed_other_ones():
    first = await say(PROVIDER, asking(sampling={"seed": 4}))
    again = await say(simulated(), asking(sampling={"seed": 4}))
    other = await say(PROVIDER, asking(sampling={"seed": 5}))

    assert first.deltas == again.deltas
    assert first.calls[0].id != other.calls[0].id


async def test_tool_choice_names_the_function_it_calls():
    named = {"type": "function", "function": {"name": "get_news"}}

    said = await say(PROVIDER, asking(tool_choice=named))

    assert [c.name for c in said.calls] == ["get_news"]


async def test_a_named_function_that_is_not_offered_fails_before_the_first_token():
    named = {"type": "function", "function": {"name": "launch"}}
    deltas = PROVIDER.stream(asking(tool_choice=named))

    with pytest.raises(ProviderError) as failed:
        await anext(deltas)

    assert failed.value.code == "invalid_tool_choice"
    assert "launch" in failed.value.message and "get_weather" in failed.value.message


async def test_tool_choice_none_answers_in_text():
    said = await say(PROVIDER, asking(tool_choice="none"))

    assert said.kinds() == ["text", "finish"] and said.text
    assert said.finish is not None and said.finish.reason == "stop"


async def test_without_tools_it_says_what_simulated_says():
    plain = await say(PROVIDER, request(model="simulated", sampling={"seed": 3}))
    tools = await say(PROVIDER, request(model="sim-tools", sampling={"seed": 3}))

    assert tools.text == plain.text and tools.kinds() == ["text", "finish"]


async def test_tools_of_another_type_are_not_called():
    said = await say(PROVIDER, request(model="sim-tools", tools=({"type": "web_search"},)))

    assert said.kinds() == ["text", "finish"]


async def test_other_models_answer_in_text_and_refuse_a_required_call():
    auto = await say(PROVIDER, request(model="simulated", tools=TOOLS))
    with pytest.raises(ProviderError) as failed:
        await say(PROVIDER, request(model="simulated", tools=TOOLS, tool_choice="required"))

    assert auto.kinds() == ["text", "finish"]
    assert failed.value.code == "invalid_tool_choice" and "sim-tools" in failed.value.message


async def test_required_without_a_function_to_call_fails():
    with pytest.raises(ProviderError) as failed:
        await say(PROVIDER, request(model="sim-tools", tool_choice="required"))

    assert failed.value.code == "invalid_tool_choice"


# Several calls


@pytest.mark.parametrize(
    "prompt", ["Use all tools.", "call every tool please", "Try each of the tools", "ALL TOOLS"]
)
async def test_asking_for_all_tools_calls_each_in_the_order_offered(prompt):
    said = await say(PROVIDER, asking(prompt))

    assert [(c.index, c.name) for c in said.calls] == [
        (0, "get_weather"), (1, "get_time"), (2, "get_news")]  # fmt: skip
    assert len({c.id for c in said.calls}) == 3
    assert all(isinstance(said.arguments(i), dict) for i in range(3))
    assert said.finish is not None and said.finish.reason == "tool_calls"


async def test_naming_two_tools_calls_those_two():
    said = await say(PROVIDER, asking("First get_news, then get_weather for Paris"))

    assert [c.name for c in said.calls] == ["get_weather", "get_news"]


async def test_each_call_is_whole_before_the_next_begins():
    said = await say(PROVIDER, asking("use all tools"))
    indexes = [d.index for d in said.deltas if isinstance(d, ToolCallDelta)]

    assert indexes == sorted(indexes) and set(indexes) == {0, 1, 2}


@pytest.mark.parametrize(
    "fields",
    [{"parallel_tool_calls": False}, {"tool_choice": {"type": "function",
                                                      "function": {"name": "get_time"}}}],
    ids=["parallel_tool_calls false", "a named function"],
)  # fmt: skip
async def test_one_call_only_when_parallel_calls_are_off_or_a_function_is_named(fields):
    said = await say(PROVIDER, asking("use all tools", **fields))

    assert len(said.calls) == 1


async def test_one_call_when_the_prompt_asks_for_no_more():
    said = await say(PROVIDER, asking("What time is it?", tool_choice="required"))

    assert [c.name for c in said.calls] == ["get_weather"]


# The results


async def test_after_a_tool_result_it_answers_in_text_quoting_it():
    said = await say(PROVIDER, after_results(("call_1", "get_weather", '{"temp_c": 21}')))

    assert said.kinds() == ["text", "finish"]
    assert said.text.startswith('get_weather returned {"temp_c": 21}.')
    assert said.finish is not None and said.finish.reason == "stop"


async def test_after_several_results_it_quotes_each_under_its_call_name():
    said = await say(
        PROVIDER, after_results(("call_a", "get_weather", "sunny"), ("call_b", "get_time", "9:00"))
    )

    assert said.text.startswith("get_weather returned sunny. get_time returned 9:00.")


async def test_required_calls_again_even_after_a_result():
    said = await say(PROVIDER, after_results(("c", "get_weather", "sunny"), tool_choice="required"))

    assert said.kinds() == ["tool_call", "finish"]


# Limits, failures, pacing, closing


async def test_max_tokens_counts_the_call_deltas_and_cuts_with_reason_length():
    whole = await say(PROVIDER, asking(sampling={"seed": 1}))
    cut = await say(PROVIDER, asking(max_tokens=4, sampling={"seed": 1}))

    assert cut.deltas[:-1] == whole.deltas[:4]
    assert all(isinstance(d, ToolCallDelta) for d in cut.deltas[:-1])
    assert cut.finish is not None and cut.finish.reason == "length"
    assert cut.finish.usage is not None and cut.finish.usage.completion_tokens == 4


async def test_fail_after_tokens_fails_in_the_middle_of_a_call():
    deltas = []
    with pytest.raises(ProviderError):
        async for delta in simulated(fail_after_tokens=3).stream(asking()):
            deltas.append(delta)

    assert len(deltas) == 3 and all(isinstance(d, ToolCallDelta) for d in deltas)


async def test_call_deltas_are_paced_like_text_tokens():
    provider = simulated(tokens_per_second=100, jitter=0)
    started = time.monotonic()

    said = await say(provider, asking("use all tools"))

    assert len(said.calls) == 3
    # Never early (a lower bound only): 100 a second, the first one at once.
    assert time.monotonic() - started >= (len(said.deltas) - 2) / 100 * 0.95


async def test_closing_the_iterator_mid_call_ends_it_at_once():
    deltas = simulated(tokens_per_second=1, jitter=0).stream(asking())
    first = await anext(deltas)
    await deltas.aclose()  # type: ignore[attr-defined]  # the next token is a second away

    assert isinstance(first, ToolCallDelta)
    with pytest.raises(StopAsyncIteration):
        await anext(deltas)
