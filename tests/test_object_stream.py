"""Object streams through the server (``format=object``): the scripted provider's JSON text cut
into any deltas, read over real connections (httpx-sse, ``websockets``); resumed with
``Last-Event-ID`` after a cut; a bad ``response_format`` refused before the stream starts; the
simulated provider's JSON validating against the request's schema."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import websockets
from conftest import SCRIPTED, base_config, script, wait_until
from hypothesis import HealthCheck, given, settings

import streamserver
from streamserver.web.keys import SERVICE

sys.path.insert(0, str(Path(__file__).parent / "builtins"))
import itertools

from object_checks import consistent, same
from test_object_formatter import written

CART = {
    "type": "object",
    "required": ["items"],
    "properties": {"items": {"type": "array", "items": {
        "type": "object", "required": ["price"], "properties": {"price": {"type": "number"}}}}},
}  # fmt: skip
CART_FORMAT = {"type": "json_schema", "json_schema": {"name": "cart", "schema": CART}}


@pytest.fixture
async def scripted(serve):
    return await serve(base_config(buffers={"word": {"min_words": 2}}, **SCRIPTED))


async def object_stream(client, deltas: list[str], gap_ms: float = 0, **fields: Any):
    body = {"prompt": script(deltas, gap_ms=gap_ms), "model": "scripted", "format": "object",
            **fields}  # fmt: skip
    got = await client.sse("/v1/stream", method="POST", json_body=body)
    assert got.status == 200, got.events
    return got


def by_name(got, name: str) -> list[Any]:
    return [json.loads(e.data) for e in got.events if e.event == name]


@pytest.mark.parametrize("buffer", ["raw", "word"])
@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(case=written())
async def test_any_json_cut_anywhere_gives_consistent_partials_and_json_loads_at_the_end(
    scripted, buffer, case
):
    _, text, pieces = case

    got = await object_stream(scripted, pieces, buffer=buffer)

    names = got.names()
    assert names[0] == "stream_start" and names[-2:] == ["object_end", "stream_end"]
    assert "".join(t["content"] for t in by_name(got, "token")) == text  # lossless
    final = by_name(got, "object_end")[0]["object"]
    assert same(final, json.loads(text))
    partials = [o["object"] for o in by_name(got, "object")]
    for earlier, later in zip(partials, [*partials[1:], final], strict=False):
        assert consistent(earlier, later)
    for before, after in itertools.pairwise(names):  # each object follows its token
        assert after != "object" or before == "token"


PIECES = ['{"items": [{"pri', 'ce": 1', '2}, {"price": ', "3}]}"]


async def test_the_events_of_an_object_stream_in_order(scripted):
    # gap_ms: each piece arrives in a loop iteration of its own, as a paced model's do.
    got = await object_stream(scripted, PIECES, gap_ms=1)

    assert [(e.event, json.loads(e.data)) for e in got.events[1:]] == [
        ("token", {"content": '{"items": [{"pri', "index": 0}),
        ("object", {"object": {"items": [{}]}}),
        ("token", {"content": 'ce": 1', "index": 1}),
        ("token", {"content": '2}, {"price": ', "index": 2}),
        ("object", {"object": {"items": [{"price": 12}, {}]}}),
        ("token", {"content": "3}]}", "index": 3}),
        ("object", {"object": {"items": [{"price": 12}, {"price": 3}]}}),
        ("object_end", {"object": {"items": [{"price": 12}, {"price": 3}]}, "valid": True,
                        "errors": []}),
        ("stream_end", by_name(got, "stream_end")[0]),
    ]  # fmt: skip


async def test_a_burst_of_segments_gets_one_object_event(scripted):
    # All four pieces in one loop iteration (no gap): one parse, one object event after them.
    got = await object_stream(scripted, PIECES)

    assert got.names()[1:] == ["token"] * 4 + ["object", "object_end", "stream_end"]
    assert by_name(got, "object") == [{"object": {"items": [{"price": 12}, {"price": 3}]}}]


async def test_a_value_against_the_schema_is_checked_with_the_first_error_s_path(scripted):
    text = '{"items": [{"price": 1}, {"price": 2}, {"price": "free"}]}'

    got = await object_stream(scripted, [text[:20], text[20:]], response_format=CART_FORMAT)

    (end,) = by_name(got, "object_end")
    assert end["valid"] is False
    assert end["errors"][0]["path"] == "$.items[2].price"


async def test_text_that_is_not_json_ends_with_invalid_json_then_the_normal_end(scripted):
    text = '{"items": [1, 2,, 3]}'

    got = await object_stream(scripted, [text[:12], text[12:]])

    assert got.names()[-2:] == ["error", "stream_end"]
    error = by_name(got, "error")[0]
    assert error["code"] == "invalid_json" and error["offset"] == 16
    assert error["stream_id"] == got.headers["X-Stream-ID"]
    assert by_name(got, "stream_end")[0]["finish_reason"] == "stop"


@pytest.mark.parametrize(
    "response_format",
    [
        {"type": "xml"},
        {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "thing"}}},
        {"type": "json_schema", "json_schema": {"name": "x", "schema": {"minimum": "1"}}},
    ],
)
async def test_a_bad_response_format_is_a_400_before_the_stream_starts(scripted, response_format):
    body = {"prompt": script(["{}"]), "model": "scripted", "format": "object",
            "response_format": response_format}  # fmt: skip

    response = await scripted.http.post("/v1/stream", json=body)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_field"


async def test_a_cut_object_stream_resumes_with_no_gap_and_no_duplicate(serve):
    app = streamserver.create_app(base_config(resume={"grace_s": 5}, **SCRIPTED))
    client = await serve(app=app)
    text = json.dumps({"items": [{"price": i, "name": f"item {i}"} for i in range(12)]})
    deltas = [text[i : i + 5] for i in range(0, len(text), 5)]
    body = {"prompt": script(deltas, gap_ms=3), "model": "scripted", "format": "object"}
    seen: list[Any] = []
    async with client.http.stream("POST", "/v1/stream", json=body) as response:
        stream_id = response.headers["X-Stream-ID"]
        lines = response.aiter_lines()
        while len(seen) < 12:  # cut after a dozen events, wherever that is
            line = await lines.__anext__()
            if line.startswith("id: "):
                seen.append(line[4:])
    await wait_until(lambda: app[SERVICE].streams.get(stream_id).log.end > 20)

    resumed = await client.sse(f"/v1/streams/{stream_id}", headers={"Last-Event-ID": seen[-1]})
    whole = await client.sse(
        f"/v1/streams/{stream_id}", headers={"Last-Event-ID": f"{stream_id}:0"}
    )

    ids = [int(i.rsplit(":", 1)[1]) for i in seen + [e.id for e in resumed.events]]
    assert ids == list(range(ids[0], ids[0] + len(ids)))  # every event once, in order
    assert [e.id for e in resumed.events] == [e.id for e in whole.events][len(seen) - 1 :]
    tail = [(e.event, e.data) for e in resumed.events]
    assert tail == [(e.event, e.data) for e in whole.events][len(seen) - 1 :]
    assert resumed.names()[-2:] == ["object_end", "stream_end"]
    assert json.loads(resumed.events[-2].data)["object"] == json.loads(text)


async def test_the_websocket_form_sends_the_same_fields_as_messages(scripted):
    url = scripted.base_url.replace("http://", "ws://") + "/ws/stream"
    request = {"prompt": script(['{"items": [{"price": ', "1}]}"], gap_ms=1), "model": "scripted",
               "format": "object", "response_format": CART_FORMAT}  # fmt: skip
    messages = []
    async with websockets.connect(url) as socket:
        await socket.send(json.dumps(request))
        while not messages or messages[-1]["type"] != "stream_end":
            messages.append(json.loads(await socket.recv()))

    assert [m["type"] for m in messages] == [
        "stream_start", "token", "object", "token", "object", "object_end", "stream_end"
    ]  # fmt: skip
    assert messages[-2] == {"type": "object_end", "object": {"items": [{"price": 1}]},
                            "valid": True, "errors": []}  # fmt: skip


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_the_simulated_provider_streams_an_object_that_validates(client, seed):
    body = {"prompt": "Two items for my cart", "format": "object", "seed": seed,
            "response_format": CART_FORMAT}  # fmt: skip

    got = await client.sse("/v1/stream", method="POST", json_body=body)

    (end,) = by_name(got, "object_end")
    assert end == {"object": end["object"], "valid": True, "errors": []}
    assert len(by_name(got, "token")) > 5 and by_name(got, "object")
    assert "".join(t["content"] for t in by_name(got, "token")) == json.dumps(end["object"])
