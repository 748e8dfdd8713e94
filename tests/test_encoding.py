"""The SSE encoder: whatever a token's or an event's data holds (line breaks of every kind, odd
Unicode), an independent SSE parser (httpx-sse's) reads back the id, the event name and the data
the spec says, and the retry on the first event only."""

from __future__ import annotations

import re

from httpx_sse._decoders import SSEDecoder
from hypothesis import given
from hypothesis import strategies as st

from streamserver.encoding import SSEEncoder
from streamserver.types import Event

names = st.one_of(
    st.none(),
    st.text(st.characters(blacklist_characters="\r\n\0", blacklist_categories=("Cs",)), min_size=1),
)
datas = st.text(st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)))


def parsed(body: bytes) -> list[tuple[str, str, str, int | None]]:
    decoder = SSEDecoder()
    events = []
    *lines, rest = re.split(r"\r\n|\r|\n", body.decode("utf-8"))  # SSE's line ends only
    assert rest == ""  # every line ended
    for line in lines:
        sse = decoder.decode(line)
        if sse is not None:
            events.append((sse.id, sse.event, sse.data, sse.retry))
    return events


def spec_data(data: str) -> str:
    return data.replace("\r\n", "\n").replace("\r", "\n")


@given(st.integers(0, 10**12), names, datas, st.sampled_from([0, 3000]))
def test_an_event_reads_back_as_it_was_written(seq, name, data, retry_ms):
    encoder = SSEEncoder("stream1", None, retry_ms)

    body = encoder.event(seq, Event(name, data))

    retry = retry_ms if seq == 0 and retry_ms else None
    assert parsed(body) == [(f"stream1:{seq}", name or "message", spec_data(data), retry)]
    assert body.endswith(b"\n\n")


@given(st.integers(0, 10**12), names, datas)
def test_a_token_reads_back_as_it_was_written_under_the_routes_event_name(seq, token_event, data):
    encoder = SSEEncoder("stream1", token_event, 3000)

    body = encoder.segment(seq, data)

    retry = 3000 if seq == 0 else None
    assert parsed(body) == [(f"stream1:{seq}", token_event or "message", spec_data(data), retry)]


def test_one_line_of_data_is_the_same_bytes_as_a_token_under_that_name():
    encoder = SSEEncoder("s", "token", 0)

    assert encoder.event(7, Event("token", '{"a": 1}')) == encoder.segment(7, '{"a": 1}')
    assert encoder.event(7, Event(None, "x")) == b"id: s:7\ndata: x\n\n"
