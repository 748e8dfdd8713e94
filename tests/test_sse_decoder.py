"""The incremental SSE decoder (used by the ``openai`` provider and the Python client): whatever
the line endings and however the bytes are split, it returns the events that were sent."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from streamserver.sse_decoder import SSEDecoder, SSEEvent

# Field values cannot hold line breaks; data can (it is sent as several data: lines).
names = st.text(
    st.characters(blacklist_characters="\r\n\0", blacklist_categories=("Cs",)), max_size=8
)
datas = st.text(st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)), max_size=40)
events = st.lists(st.tuples(datas, names, st.one_of(st.none(), names)), max_size=8)
line_ends = st.sampled_from(["\n", "\r\n", "\r"])


def encode(sent: list[tuple[str, str, str | None]], end: str, comments: bool) -> bytes:
    out = []
    for data, name, event_id in sent:
        if comments:
            out.append(": keep-alive" + end)
        if name:
            out.append(f"event: {name}{end}")
        if event_id is not None:
            out.append(f"id: {event_id}{end}")
        out.extend(
            f"data: {line}{end}"
            for line in data.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        )
        out.append(end)
    return "".join(out).encode()


def decode_in_pieces(body: bytes, cuts: list[int]) -> list[SSEEvent]:
    decoder = SSEDecoder()
    got: list[SSEEvent] = []
    start = 0
    for cut in [*sorted({c % (len(body) + 1) for c in cuts}), len(body)]:
        got.extend(decoder.feed(body[start:cut]))
        start = cut
    return got


@given(events, line_ends, st.booleans(), st.lists(st.integers(0, 10_000), max_size=12))
def test_every_event_comes_back_whatever_the_line_endings_and_the_splits(sent, end, comments, cuts):
    body = encode(sent, end, comments)

    got = decode_in_pieces(body, cuts)

    expected = []
    last_id = None
    for data, name, event_id in sent:
        last_id = event_id if event_id is not None else last_id
        text = data.replace("\r\n", "\n").replace("\r", "\n")
        expected.append((text, name or "message", last_id))
    assert [(e.data, e.event, e.id) for e in got] == expected


def test_a_utf8_character_split_across_reads_is_whole():
    body = 'data: {"content": "héllo 👋"}\n\n'.encode()
    cut = body.index("👋".encode()) + 2

    got = decode_in_pieces(body, [cut])

    assert [e.data for e in got] == ['{"content": "héllo 👋"}']


def test_a_byte_order_mark_at_the_start_is_ignored_and_retry_is_read():
    got = SSEDecoder().feed(b"\xef\xbb\xbfretry: 1500\ndata: x\n\n")

    assert [(e.data, e.retry) for e in got] == [("x", 1500)]


def test_data_without_a_space_after_the_colon_and_a_lone_event_line():
    got = SSEDecoder().feed(b"event: ping\n\ndata:tight\n\n")

    assert [(e.data, e.event) for e in got] == [("tight", "message")]
