"""The ``openai`` SDK's Responses API reads streamserver's ``/v1/responses`` exactly: the semantic
events of ``responses.create(stream=True)`` (numbered from 0, the reasoning summary, the text, each
function call's arguments), the SDK's accumulating ``responses.stream()`` (its final response,
``output_text``, calls parsed by strict tools), ``stream: false``, a tool round trip on the offline
``sim-tools`` model, ``sim-reasoner``'s reasoning, a failure, a 400, a cancel, and a cut stream
resumed with ``Last-Event-ID`` with nothing repeated."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest
from conftest import SCRIPTED, ServeFactory, base_config, script
from httpx_sse import aconnect_sse
from openai import AsyncOpenAI

import streamserver

from .conftest import CALLS, PARALLEL, REASONING, SEQUENTIAL, TEXT, TOOLS, ScriptedServer
from .test_openai_sdk import PARSED, STRICT_TOOLS, Weather

FLAT_TOOLS: list[Any] = [{"type": "function", **tool["function"]} for tool in TOOLS]
"""The chat tools in the Responses API's flat shape."""


def calls_of(response: Any) -> list[tuple[str, str, str]]:
    return [(item.call_id, item.name, item.arguments) for item in response.output
            if item.type == "function_call"]  # fmt: skip


async def test_create_stream_sends_the_semantic_events_numbered_in_the_models_order(
    openai_client: AsyncOpenAI,
) -> None:
    stream = await openai_client.responses.create(
        model="scripted", input=script(SEQUENTIAL, finish="tool_calls"), tools=FLAT_TOOLS,
        stream=True,
    )  # fmt: skip
    events = [event async for event in stream]

    assert [event.sequence_number for event in events] == list(range(len(events)))
    kinds = [event.type for event in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    added = [event.item.type for event in events if event.type == "response.output_item.added"]
    assert added == ["reasoning", "message", "function_call", "function_call"]
    summary = [e.delta for e in events if e.type == "response.reasoning_summary_text.delta"]
    assert summary == REASONING
    text = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert "".join(text) == TEXT
    arguments: dict[int, str] = {}
    for event in events:
        if event.type == "response.function_call_arguments.delta":
            arguments[event.output_index] = arguments.get(event.output_index, "") + event.delta
    assert list(arguments.values()) == [call[2] for call in CALLS]
    final = events[-1].response
    assert final.status == "completed"
    assert final.output_text == TEXT
    assert calls_of(final) == CALLS
    assert final.usage is not None and final.usage.output_tokens == len(SEQUENTIAL)


async def test_the_stream_helpers_final_response_has_the_text_and_calls_parsed_by_strict_tools(
    openai_client: AsyncOpenAI,
) -> None:
    async with openai_client.responses.stream(
        model="scripted", input=script(SEQUENTIAL, finish="tool_calls"), tools=STRICT_TOOLS
    ) as stream:
        text = [event.delta async for event in stream if event.type == "response.output_text.delta"]
        final = await stream.get_final_response()

    assert "".join(text) == final.output_text == TEXT
    assert calls_of(final) == CALLS
    calls = [item for item in final.output if item.type == "function_call"]
    assert [call.parsed_arguments for call in calls] == PARSED
    [reasoning] = [item for item in final.output if item.type == "reasoning"]
    assert [part.text for part in reasoning.summary] == ["".join(REASONING)]


async def test_the_stream_helper_rebuilds_interleaved_parallel_calls_whole(
    openai_client: AsyncOpenAI,
) -> None:
    async with openai_client.responses.stream(
        model="scripted", input=script(PARALLEL, finish="tool_calls"), tools=FLAT_TOOLS
    ) as stream:
        done = [(event.output_index, event.arguments) async for event in stream
                if event.type == "response.function_call_arguments.done"]  # fmt: skip
        final = await stream.get_final_response()

    assert [arguments for _, arguments in done] == [call[2] for call in CALLS]
    assert calls_of(final) == CALLS


async def test_stream_false_gives_one_response_from_the_streams_record(
    server: ScriptedServer, openai_client: AsyncOpenAI
) -> None:
    response = await openai_client.responses.create(
        model="scripted", input=script(SEQUENTIAL, finish="tool_calls"), tools=FLAT_TOOLS,
        instructions="Be brief.", max_output_tokens=50, temperature=0.5, reasoning={"effort": "low"},
        tool_choice={"type": "function", "name": "lookup"}, parallel_tool_calls=True,
    )  # fmt: skip

    assert response.status == "completed"
    assert [item.type for item in response.output] == [
        "reasoning", "message", "function_call", "function_call"
    ]  # fmt: skip
    assert response.output_text == TEXT
    assert calls_of(response) == CALLS
    assert (response.instructions, response.tool_choice.type) == ("Be brief.", "function")
    sent = server.provider.requests[-1]
    assert [m.role for m in sent.messages] == ["system", "user"]
    assert (sent.max_tokens, sent.sampling) == (50, {"temperature": 0.5, "reasoning_effort": "low"})
    assert sent.tools == tuple(TOOLS)
    assert sent.tool_choice == {"type": "function", "function": {"name": "lookup"}}
    assert sent.parallel_tool_calls is True


async def test_a_tool_round_trip_on_sim_tools_sends_the_output_back_and_gets_the_answer(
    server: ScriptedServer, openai_client: AsyncOpenAI
) -> None:
    weather = [FLAT_TOOLS[0]]
    first = await openai_client.responses.create(
        model="sim-tools", input="What is the weather in Paris?", tools=weather
    )
    [call] = [item for item in first.output if item.type == "function_call"]
    assert call.name == "get_weather" and json.loads(call.arguments)["city"]
    result = {"type": "function_call_output", "call_id": call.call_id, "output": '{"celsius": 18}'}
    second = await openai_client.responses.create(
        model="sim-tools",
        input=[{"role": "user", "content": "What is the weather in Paris?"}, *first.output,
               result],
        tools=weather, stream=True,
    )  # fmt: skip
    events = [event async for event in second]

    final = events[-1].response
    assert final.status == "completed" and not calls_of(final)
    assert final.output_text
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == (
        final.output_text
    )


async def test_sim_reasoner_streams_its_reasoning_as_a_summary_before_the_answer(
    openai_client: AsyncOpenAI,
) -> None:
    async with openai_client.responses.stream(
        model="sim-reasoner", input="Why is the sky blue?",
        reasoning={"effort": "low", "summary": "auto"},
    ) as stream:  # fmt: skip
        summary = [event.delta async for event in stream
                   if event.type == "response.reasoning_summary_text.delta"]  # fmt: skip
        final = await stream.get_final_response()

    assert [item.type for item in final.output] == ["reasoning", "message"]
    assert final.output[0].summary[0].text == "".join(summary) != ""
    assert final.output_text
    assert final.reasoning is not None and final.reasoning.effort == "low"


async def test_a_failed_stream_ends_with_an_error_event_and_response_failed(
    openai_client: AsyncOpenAI,
) -> None:
    stream = await openai_client.responses.create(
        model="scripted", input=script(["Partial ", "answer"], then="fail"), stream=True
    )
    events = [event async for event in stream]

    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == (
        "Partial answer"
    )
    error, failed = events[-2:]
    assert (error.type, error.code, error.message) == (
        "error", "upstream_error", "the scripted upstream failed"
    )  # fmt: skip
    assert failed.type == "response.failed"
    assert failed.response.status == "failed"
    assert failed.response.error is not None
    assert "the scripted upstream failed" in failed.response.error.message


async def test_a_failed_response_without_streaming_is_a_502(openai_client: AsyncOpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as raised:
        await openai_client.responses.create(
            model="scripted", input=script(["Partial"], then="fail")
        )

    assert raised.value.status_code == 502


@pytest.mark.parametrize(
    ("options", "code"),
    [
        ({"tools": [{"type": "web_search"}]}, "unsupported_parameter"),
        ({"previous_response_id": "resp_1"}, "unsupported_parameter"),
        ({"extra_body": {"frequency_penalty": 1}}, "unknown_parameter"),
        ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]},
         "unsupported_input"),
        ({"reasoning": {"summary": "detailed"}}, "unsupported_parameter"),
    ],
)  # fmt: skip
async def test_what_cannot_be_honoured_is_a_400_in_openais_error_shape(
    server: ScriptedServer, openai_client: AsyncOpenAI, options: dict[str, Any], code: str
) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        await openai_client.responses.create(
            **{"model": "scripted", "input": script(["never"]), **options}
        )

    assert raised.value.code == code
    assert server.provider.requests == []


async def test_a_cancel_ends_the_stream_with_response_incomplete(
    server: ScriptedServer, openai_client: AsyncOpenAI
) -> None:
    stream = await openai_client.responses.create(
        model="scripted", input=script(["Before ", "the wait"], then="hang"), stream=True
    )
    events: list[Any] = []
    async for event in stream:
        events.append(event)
        if event.type == "response.output_text.delta" and event.delta == "Before ":
            stream_id = events[0].response.id.removeprefix("resp_")
            async with httpx.AsyncClient() as http:
                cancelled = await http.delete(f"{server.base_url}/v1/streams/{stream_id}")
            assert cancelled.status_code == 200

    assert events[-1].type == "response.incomplete"
    assert events[-1].response.status == "cancelled"
    assert server.provider.closed


async def test_a_cut_stream_resumes_with_last_event_id_and_nothing_repeated(
    serve: ServeFactory,
) -> None:
    app = streamserver.create_app(base_config(resume={"grace_s": 30}, **SCRIPTED))
    client = await serve(app=app)
    words = [f"w{i} " for i in range(40)]
    body = {"model": "scripted", "input": script(words, gap_ms=5), "stream": True}
    seen: list[tuple[str, dict[str, Any]]] = []
    async with httpx.AsyncClient(base_url=client.base_url, timeout=10) as http:
        async with aconnect_sse(http, "POST", "/v1/responses", json=body) as source:
            stream_id = source.response.headers["X-Stream-ID"]
            async for sse in source.aiter_sse():
                seen.append((sse.id, json.loads(sse.data)))
                if sse.event == "response.output_text.delta" and len(seen) > 10:
                    break  # the connection closes here, mid-stream
        headers = {"Last-Event-ID": seen[-1][0]}
        async with aconnect_sse(http, "GET", f"/v1/streams/{stream_id}", headers=headers) as rest:
            seen += [(sse.id, json.loads(sse.data)) async for sse in rest.aiter_sse()]

    numbers = [event["sequence_number"] for _, event in seen]
    assert numbers == list(range(len(seen)))
    assert [event_id for event_id, _ in seen] == [f"{stream_id}:{n}" for n in numbers]
    deltas = [e["delta"] for _, e in seen if e["type"] == "response.output_text.delta"]
    assert "".join(deltas) == "".join(words)
    assert seen[-1][1]["type"] == "response.completed"


async def test_the_stream_helpers_output_goes_back_as_input_with_the_function_call_outputs(
    server: ScriptedServer, openai_client: AsyncOpenAI
) -> None:
    question: list[Any] = [{"role": "user", "content": script(SEQUENTIAL, finish="tool_calls")}]
    async with openai_client.responses.stream(
        model="scripted", input=question, tools=STRICT_TOOLS
    ) as stream:
        final = await stream.get_final_response()
    answer = "Paris: 18 °C; found 1, 2, 3."
    # As the SDK's documentation does it: the output items themselves (parsed arguments and all),
    # then one function_call_output per call (the scripted provider reads its script from the last).
    results = [
        {"type": "function_call_output", "call_id": "call_w", "output": '{"celsius": 18}'},
        {"type": "function_call_output", "call_id": "call_l", "output": script([answer])},
    ]
    second = await openai_client.responses.create(
        model="scripted", input=[*question, *final.output, *results], tools=FLAT_TOOLS
    )

    assert second.output_text == answer
    sent = server.provider.requests[-1].messages
    assert [message.role for message in sent] == ["user", "assistant", "tool", "tool"]
    assert [(c.id, c.name, c.arguments) for c in sent[1].tool_calls] == CALLS
    assert sent[1].text == TEXT
    assert [sent[2].tool_call_id, sent[3].tool_call_id] == ["call_w", "call_l"]


async def test_max_output_tokens_cuts_the_response_short_as_incomplete(
    openai_client: AsyncOpenAI,
) -> None:
    stream = await openai_client.responses.create(
        model="scripted", input=script(["one ", "two ", "three ", "four"]), max_output_tokens=2,
        stream=True,
    )  # fmt: skip
    events = [event async for event in stream]

    last = events[-1]
    assert last.type == "response.incomplete"
    assert last.response.status == "incomplete"
    assert last.response.incomplete_details is not None
    assert last.response.incomplete_details.reason == "max_output_tokens"
    assert last.response.output_text == "one two "


async def test_parse_with_a_pydantic_text_format_sends_its_json_schema_and_parses_the_answer(
    server: ScriptedServer, openai_client: AsyncOpenAI
) -> None:
    answer = ['{"city": "Paris", ', '"units": "°C"}']
    response = await openai_client.responses.parse(
        model="scripted", input=script(answer), text_format=Weather
    )

    assert response.output_parsed == Weather(city="Paris", units="°C")
    sent = server.provider.requests[-1].response_format
    assert sent is not None and sent["type"] == "json_schema"
    assert sent["json_schema"]["name"] == "Weather"
    assert sent["json_schema"]["schema"]["required"] == ["city", "units"]
