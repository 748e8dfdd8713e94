"""Structured parts keep every guarantee text has: a cut stream resumes with no gap and no
duplicate, ``max_tokens`` counts every part, a cancel ends the stream cleanly, and the usage
(generated, delivered, replayed, upstream or estimated) is reported."""

from __future__ import annotations

import asyncio
import json

import pytest
from conftest import SCRIPTED, base_config, script, wait_until
from test_structured_lossless import Rebuilt

import streamserver
from streamserver.web.keys import SERVICE

DELTAS = [
    {"reasoning": "Think "},
    {"reasoning": "first."},
    "Calling ",
    {"tool": 0, "id": "call_a", "name": "lookup", "arguments": '{"q": '},
    {"tool": 1, "id": "call_b", "name": "clock", "arguments": "{}"},
    {"tool": 0, "arguments": '"cats"}'},
    "done.",
]
WANTED = {
    "text": "Calling done.",
    "reasoning": "Think first.",
    "calls": {"call_a": ["lookup", '{"q": "cats"}'], "call_b": ["clock", "{}"]},
}


@pytest.fixture
async def scripted(serve):
    app = streamserver.create_app(
        base_config(metrics={"sinks": ["memory", "prometheus"]}, **SCRIPTED)
    )
    return app, await serve(app=app)


def rebuild(fmt: str, events) -> Rebuilt:
    rebuilt = Rebuilt()
    for event in events:
        if event.data != "[DONE]":
            rebuilt.read(json.loads(event.data), event.event)
    return rebuilt


def as_wanted(rebuilt: Rebuilt) -> dict:
    return {
        "text": "".join(rebuilt.text),
        "reasoning": "".join(rebuilt.reasoning),
        "calls": rebuilt.calls,
    }


@pytest.mark.parametrize("fmt", ["production", "events", "openai", "ai-sdk"])
async def test_a_cut_structured_stream_resumes_at_every_event_with_no_gap_or_duplicate(
    scripted, fmt
):
    _, client = scripted
    body = {"prompt": script(DELTAS, finish="tool_calls"), "model": "scripted", "format": fmt}
    whole = await client.sse("/v1/stream", method="POST", json_body=body)
    stream_id = whole.headers["X-Stream-ID"]
    assert as_wanted(rebuild(fmt, whole.events)) == WANTED

    for cut in range(len(whole.events) - 1):
        last_id = whole.events[cut].id
        rest = await client.sse(f"/v1/streams/{stream_id}", headers={"Last-Event-ID": last_id})
        # The events up to the cut, then the resumed ones: the same stream, event for event.
        joined = whole.events[: cut + 1] + rest.events
        assert [e.id for e in joined] == [e.id for e in whole.events], cut
        assert as_wanted(rebuild(fmt, joined)) == WANTED


async def test_max_tokens_counts_reasoning_and_tool_call_pieces(scripted):
    _, client = scripted
    body = {"prompt": script(DELTAS), "model": "scripted", "max_tokens": 4}
    got = await client.sse("/v1/stream", method="POST", json_body=body)
    end = got.json()[-1]

    assert end["finish_reason"] == "length"
    assert end["tokens_generated"] == 4
    # Two reasoning pieces, one text piece, then the first fragment of the first call.
    assert as_wanted(rebuild("production", got.events)) == {
        "text": "Calling ",
        "reasoning": "Think first.",
        "calls": {"call_a": ["lookup", '{"q": ']},
    }
    assert end["tool_calls"] == [
        {"index": 0, "id": "call_a", "name": "lookup", "arguments": '{"q": '}
    ]


async def test_a_stream_cancelled_mid_call_ends_with_the_call_as_far_as_it_got(scripted):
    app, client = scripted
    provider = app[SERVICE].providers["scripted"]
    deltas = DELTAS[:4]
    params = {"prompt": script(deltas, then="hang"), "model": "scripted", "format": "ai-sdk"}
    reader = asyncio.create_task(client.sse("/v1/stream", params=params))
    await wait_until(lambda: provider.yielded == len(deltas))
    (stream,) = app[SERVICE].streams.live()
    await client.http.delete(f"/v1/streams/{stream.id}")
    got = await reader
    parts = [json.loads(e.data) for e in got.events if e.data != "[DONE]"]

    # The AI SDK gets the call's input as far as it got, as an input error (not valid JSON).
    error = next(p for p in parts if p["type"] == "tool-input-error")
    assert (error["toolCallId"], error["input"]) == ("call_a", '{"q": ')
    assert [p["type"] for p in parts[-2:]] == ["finish-step", "abort"]
    assert provider.closed  # the upstream was closed


async def test_usage_reports_generated_delivered_and_replayed_tokens(scripted):
    _, client = scripted
    deltas = ["one ", "two ", "three ", "four"]
    body = {"prompt": script(deltas), "model": "scripted", "buffer": "raw"}
    whole = await client.sse("/v1/stream", method="POST", json_body=body)
    stream_id = whole.headers["X-Stream-ID"]
    end = whole.json()[-1]
    assert end["usage"] == {  # the scripted provider reports its own usage
        "prompt_tokens": 1,
        "completion_tokens": 4,
        "total_tokens": 5,
        "estimated": False,
    }

    async def figures() -> dict:
        return (await client.http.get("/v1/stream/metrics")).json()

    first = await figures()
    assert first["tokens_delivered"] == 4
    # A resume after the second token event replays the two after it.
    second_token = whole.events[2].id
    await client.sse(f"/v1/streams/{stream_id}", headers={"Last-Event-ID": second_token})
    after = await figures()
    assert after["tokens_replayed"] == 2
    assert after["tokens_delivered"] == 4  # nothing new reached a client

    metrics = (await client.http.get("/metrics")).text.splitlines()
    labels = '{model="scripted",provider="scripted",route="/v1/stream"}'
    assert f"streamserver_tokens_delivered_total{labels} 4.0" in metrics
    assert f"streamserver_tokens_replayed_total{labels} 2.0" in metrics
    usage = (
        'streamserver_usage_tokens_total{kind="completion",model="scripted",'
        'provider="scripted",source="upstream"} 4.0'
    )
    assert usage in metrics


async def test_a_cancelled_stream_reports_an_estimated_usage(scripted):
    app, client = scripted
    provider = app[SERVICE].providers["scripted"]
    params = {"prompt": script(["a ", "b "], then="hang"), "model": "scripted"}
    reader = asyncio.create_task(client.sse("/v1/stream", params=params))
    await wait_until(lambda: provider.yielded == 2)
    (stream,) = app[SERVICE].streams.live()
    await client.http.delete(f"/v1/streams/{stream.id}")
    end = (await reader).json()[-1]

    assert end["finish_reason"] == "cancelled"
    assert end["usage"]["estimated"] is True
    assert end["usage"]["completion_tokens"] == 2
    assert end["usage"]["prompt_tokens"] > 0


async def test_a_post_takes_fields_from_its_query_string_too_and_refuses_one_given_twice(scripted):
    _, client = scripted
    body = {"prompt": script(["Hi"]), "model": "scripted"}
    got = await client.sse("/v1/stream?format=ai-sdk", method="POST", json_body=body)
    twice = await client.http.post("/v1/stream?model=scripted", json=body)

    assert got.headers["x-vercel-ai-ui-message-stream"] == "v1"
    assert json.loads(got.events[0].data)["type"] == "start"
    assert twice.status_code == 400
    assert twice.json()["error"]["code"] == "duplicate_field"


@pytest.mark.parametrize("path", ["/v1/stream", "/v1/chat/completions"])
async def test_a_request_the_provider_cannot_meet_is_a_400_before_the_stream(client, path):
    # The echo model calls no tools: a forced call is refused up front (Provider.check), not a
    # stream that fails at once.
    tools = [{"type": "function", "function": {"name": "f"}}]
    body = {"messages": [{"role": "user", "content": "hi"}], "model": "echo", "tools": tools,
            "tool_choice": "required"}  # fmt: skip
    response = await client.http.post(path, json=body)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_tool_choice"
    assert "sim-tools" in response.json()["error"]["message"]


@pytest.mark.parametrize("path", ["/v1/stream", "/v1/chat/completions"])
async def test_a_number_of_400_digits_is_a_400_not_a_500(client, path):
    body = (
        '{"messages": [{"role": "user", "content": "hi"}], "model": "echo", "temperature": 1'
        + "0" * 400
        + "}"
    )
    response = await client.http.post(
        path, content=body, headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 400
    assert "temperature" in response.json()["error"]["message"]


async def test_an_odd_finish_from_a_provider_still_ends_the_stream_in_every_shape(scripted):
    _, client = scripted
    for fmt in ("production", "openai", "ai-sdk"):
        body = {
            "prompt": script(["Hi"], finish=["not", "a", "reason"]),
            "model": "scripted",
            "format": fmt,
        }
        got = await client.sse("/v1/stream", method="POST", json_body=body)
        last = got.events[-1].data
        assert last == "[DONE]" or json.loads(last)["finish_reason"] == "stop", fmt


def test_the_upstreams_reasoning_token_count_wins_over_ours():
    from streamserver.builtins.ecosystem_formatters import openai_usage
    from streamserver.builtins.openai_parts import usage_of
    from streamserver.types import StreamEnd

    reported = usage_of({"prompt_tokens": 3, "completion_tokens": 40,
                         "completion_tokens_details": {"reasoning_tokens": 32}})  # fmt: skip
    silent = usage_of({"prompt_tokens": 3, "completion_tokens": 40})

    def summary(usage):
        return StreamEnd(
            "s", "m", "completed", "stop", 12, 3, 30, 1.0, 0.1, usage, reasoning_tokens=9
        )

    assert reported.reasoning_tokens == 32 and silent.reasoning_tokens is None
    assert openai_usage(summary(reported))["completion_tokens_details"] == {"reasoning_tokens": 32}
    # An upstream that does not say (Anthropic): the count of reasoning deltas stands in.
    assert openai_usage(summary(silent))["completion_tokens_details"] == {"reasoning_tokens": 9}


@pytest.mark.parametrize(
    ("parameters", "arguments"),
    [
        ({}, {}),
        ({"description": "no type"}, {}),
        ({"type": "string"}, None),
        ({"type": "strnig"}, None),
    ],
)
async def test_sim_tools_calls_with_an_object_or_refuses_the_schema(client, parameters, arguments):
    tools = [{"type": "function", "function": {"name": "f", "parameters": parameters}}]
    body = {"messages": [{"role": "user", "content": "go"}], "model": "sim-tools", "tools": tools}
    response = await client.http.post("/v1/chat/completions", json=body)

    if arguments is None:  # a call's arguments are an object: a schema for anything else is refused
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "invalid_tool_schema"
    else:
        call = response.json()["choices"][0]["message"]["tool_calls"][0]
        assert json.loads(call["function"]["arguments"]) == arguments
