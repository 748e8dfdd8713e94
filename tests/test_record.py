"""The record beside the log: what a stream said, kept only when a consumer asks for it."""

from __future__ import annotations

import json

import pytest
from conftest import SCRIPTED, base_config, script
from hypothesis import HealthCheck, given, settings
from test_lossless import BUFFERS, text_of_object

import streamserver
from streamserver import inprocess
from streamserver.record import StreamRecord
from streamserver.request_input import parse_stream_params
from streamserver.service import StreamService
from streamserver.settings import RouteSettings
from streamserver.testing.strategies import text_deltas

ROUTE = RouteSettings(transport="ws", formatter="production", allow=("model", "buffer"))


async def run_stream(service, parts, buffer, *, keep_record=True, form="json"):
    params = parse_stream_params(
        {"prompt": script(parts), "model": "scripted", "buffer": buffer}, ROUTE, service.config
    )
    stream = await service.start("/test", ROUTE, params, form, keep_record=keep_record)
    assert stream.task is not None
    await stream.task
    return stream


def test_the_record_text_below_a_position_is_what_the_events_before_it_carried():
    record = StreamRecord()
    for position, text in [(1, "a "), (2, "b "), (4, "c")]:
        record.add(position, text)

    assert record.text() == "a b c"
    assert [record.text(below=n) for n in range(6)] == ["", "", "a ", "a b ", "a b ", "a b c"]


@pytest.mark.parametrize("buffer", BUFFERS)
@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(parts=text_deltas)
async def test_the_record_holds_what_the_client_receives_for_every_buffer(buffer, parts):
    service = await StreamService.open(streamserver.load_config(base_config(**SCRIPTED)))
    try:
        stream = await run_stream(service, parts, buffer)
        items = stream.log.read(0)
    finally:
        await service.close()
    received = "".join(text_of_object(json.loads(item)) for item in items)
    assert stream.record is not None
    assert stream.record.text() == received == "".join(parts)
    tokens = [i for i, item in enumerate(items) if json.loads(item).get("type") == "token"]
    assert stream.record.positions == tokens
    assert stream.record.summary is stream.summary


async def test_a_stream_nobody_reads_back_keeps_no_record():
    service = await StreamService.open(streamserver.load_config(base_config(**SCRIPTED)))
    try:
        stream = await run_stream(service, ["plain ", "text"], "word", keep_record=False)
    finally:
        await service.close()

    assert stream.record is None


async def test_delivered_is_the_furthest_a_reader_wrote_those_that_left_included():
    service = await StreamService.open(streamserver.load_config(base_config(**SCRIPTED)))
    try:
        stream = await run_stream(service, ["one ", "two ", "three"], "raw")
        first, second = stream.attach(0), stream.attach(2)
        first.delivered = 3
        stream.detach(first)
        assert stream.record is not None
        assert stream.delivered == 3
        assert stream.record.text(below=stream.delivered) == "one two "  # events 1 and 2
        second.delivered = 4
        assert stream.record.text(below=stream.delivered) == "one two three"
        stream.detach(second)
    finally:
        await service.close()


@pytest.mark.parametrize("formatter", ["text", "production", "events", "openai"])
async def test_generate_reads_the_record_whatever_the_formatter(formatter, monkeypatch):
    import dataclasses

    monkeypatch.setattr(
        inprocess, "_ROUTE", dataclasses.replace(inprocess._ROUTE, formatter=formatter)
    )
    segments = [
        s
        async for s in streamserver.generate(
            "One. Two. Three.", config=base_config(), model="echo", buffer="sentence"
        )
    ]

    assert [(s.text, s.index, s.model, s.finish_reason) for s in segments] == [
        ("One. ", 0, "echo", None),
        ("Two. ", 1, "echo", None),
        ("Three.", 2, "echo", "stop"),
    ]


def test_a_record_written_by_a_newer_version_reads_back_without_its_unknown_fields():
    # A rolling upgrade shares one Redis store: an older instance reads a newer one's records.
    from streamserver.types import StreamEnd, Usage

    record = StreamRecord()
    record.add(0, "hi")
    record.summary = StreamEnd("st_x", "m", "completed", "stop", 1, 1, 2, 0.1, 0.01,
                               usage=Usage(3, 1), stop_sequence="###")  # fmt: skip
    data = json.loads(json.dumps(record.to_data()))
    data["summary"]["a_field_from_the_future"] = {"nested": True}

    again = StreamRecord.from_data(data)

    assert again.summary == record.summary
    assert again.text() == "hi"
