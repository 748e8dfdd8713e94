"""The ``object`` formatter, fed directly: for any JSON value, written any way and cut anywhere,
the final object is ``json.loads`` of the whole text, every partial object is an earlier view of
the next and of the final one, a partial is sent exactly when the value a prefix holds changed
(never held back, never repeated), and a number or literal shows only once complete.

The checks (``object_checks``) do not use the formatter's lexer: the value each prefix holds is
computed from the prefix alone.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from object_checks import NOTHING, consistent, held, same

from streamserver.builtins.object_formatter import ObjectFormatter, ObjectOptions, SchemaCheck
from streamserver.errors import StreamRejected
from streamserver.types import StreamEnd, StreamStart

ODD_TEXT = ["", "\\", '"', "\n", "\r\n", "\t", "\x00", "\x1f", "\u2028", "é", "🙂", "👨‍👩‍👧",
            "data: x", "event: object", "\\u0041", '\\"', "{", "}", "[", "]", ",", ":", "1e5",
            "true", "null"]  # fmt: skip

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**64, max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(ODD_TEXT)
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=5) | st.sampled_from(ODD_TEXT), children, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def written(draw: Any) -> tuple[Any, str, list[str]]:
    """A value, its JSON text (compact or indented, ASCII or not) and the text cut into pieces."""
    value = draw(json_values)
    text = json.dumps(
        value,
        indent=draw(st.sampled_from([None, 0, 2])),
        ensure_ascii=draw(st.booleans()),
        separators=draw(st.sampled_from([None, (",", ":")])),
    )
    points = sorted(draw(st.sets(st.integers(1, max(1, len(text) - 1)), max_size=30)))
    points = [p for p in points if 0 < p < len(text)]
    pieces = [text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True)]
    return value, text, pieces


def start(formatter: ObjectFormatter) -> None:
    formatter.start(StreamStart("s1", "/v1/stream", "scripted", "scripted", 0.0))


def summary(**fields: Any) -> StreamEnd:
    values: dict[str, Any] = dict(stream_id="s1", model="scripted", outcome="completed",
                                  finish_reason="stop", tokens=1, segments=1, characters=1,
                                  duration_s=0.1, ttft_s=0.01)  # fmt: skip
    return StreamEnd(**{**values, **fields})


def feed(pieces: list[str], response_format: Any = None) -> tuple[list[Any], list[Any], Any]:
    """The pieces through a formatter: per piece the ``object`` values it sent (0 or 1), every
    ``object`` value, and the end events' payloads by name."""
    formatter = ObjectFormatter(ObjectOptions(response_format), "sse")
    start(formatter)
    per_piece: list[Any] = []
    sent: list[Any] = []
    for index, piece in enumerate(pieces):
        token = json.loads(formatter.segment(piece, index + 1))
        assert token == {"content": piece, "index": index}  # production's token event, as is
        events = formatter.after_segments()
        assert len(events) <= 1 and all(e.name == "object" for e in events)
        values = [json.loads(e.data)["object"] for e in events]
        per_piece.append(values)
        sent += values
    ends = {e.name: json.loads(e.data) for e in formatter.end(summary())}
    return per_piece, sent, ends


@settings(max_examples=400, deadline=None)
@given(case=written())
def test_partials_are_prefix_consistent_and_the_final_object_is_json_loads(case):
    _value, text, pieces = case

    _per_piece, sent, ends = feed(pieces)

    final = ends["object_end"]["object"]
    assert same(final, json.loads(text))
    assert ends["object_end"]["valid"] is True and ends["object_end"]["errors"] == []
    assert list(ends) == ["object_end", "stream_end"]
    for earlier, later in itertools.pairwise(sent):
        assert not same(earlier, later), "a partial is sent only when the value changed"
        assert consistent(earlier, later), (earlier, later)
    for partial in sent:
        assert consistent(partial, final), (partial, final)


@settings(max_examples=400, deadline=None)
@given(case=written())
def test_a_partial_is_sent_with_the_piece_that_changes_the_value_never_later(case):
    _value, _text, pieces = case

    per_piece, _, _ = feed(pieces)

    shown = NOTHING
    prefix = ""
    for piece, values in zip(pieces, per_piece, strict=True):
        prefix += piece
        if values:
            shown = values[0]
        expected = held(prefix)
        if expected is NOTHING:
            assert shown is NOTHING
        else:
            assert shown is not NOTHING and same(shown, expected), (prefix, shown, expected)


def test_a_number_or_literal_shows_once_something_ends_it():
    pieces = ['{"a": 1', "2", "3", ', "b": tr', "ue", "}"]

    per_piece, _, _ = feed(pieces)

    assert per_piece == [[{}], [], [], [{"a": 123}], [], [{"a": 123, "b": True}]]


def test_text_that_is_not_json_ends_with_invalid_json_at_its_offset():
    text = '{"a": [1, 2] "b"}'
    with pytest.raises(json.JSONDecodeError) as decoding:
        json.loads(text)

    _per_piece, sent, ends = feed([text[:6], text[6:14], text[14:]])

    assert list(ends) == ["error", "stream_end"]
    error = ends["error"]
    assert error["code"] == "invalid_json" and error["stream_id"] == "s1"
    assert error["offset"] == decoding.value.pos == 13
    assert "character 13" in error["message"]
    assert sent == [{}]  # nothing after the text broke


def test_prose_gives_no_object_and_an_invalid_json_at_offset_0():
    _per_piece, sent, ends = feed(["Hello", " world"])

    assert sent == []
    assert ends["error"]["code"] == "invalid_json" and ends["error"]["offset"] == 0


def test_a_value_that_breaks_the_schema_is_not_valid_with_the_first_error_s_path():
    schema = {
        "type": "object",
        "required": ["items"],
        "properties": {
            "items": {
                "type": "array",
                "items": {"type": "object", "properties": {"price": {"type": "number"}}},
            }
        },
    }
    response_format = {"type": "json_schema", "json_schema": {"name": "cart", "schema": schema}}
    text = '{"items": [{"price": 1}, {"price": 2.5}, {"price": "cheap"}]}'

    _, _, ends = feed([text], response_format)

    end = ends["object_end"]
    assert end["valid"] is False and end["object"] == json.loads(text)
    assert end["errors"][0]["path"] == "$.items[2].price"
    assert "'cheap' is not of type 'number'" in end["errors"][0]["message"]


def test_a_valid_value_against_a_schema_is_valid():
    response_format = {
        "type": "json_schema",
        "json_schema": {
            "name": "n",
            "schema": {"type": "object", "properties": {"n": {"enum": [1, 2]}}, "required": ["n"]},
        },
    }

    _, _, ends = feed(['{"n": ', "2}"], response_format)

    assert ends["object_end"] == {"object": {"n": 2}, "valid": True, "errors": []}


def test_a_schema_that_is_not_a_json_schema_is_a_400():
    response_format = {
        "type": "json_schema",
        "json_schema": {
            "name": "x",
            "schema": {"type": "object", "properties": {"a": {"type": 12}}},
        },
    }

    with pytest.raises(StreamRejected) as refused:
        ObjectFormatter(ObjectOptions(response_format), "sse")

    assert refused.value.status == 400 and refused.value.code == "invalid_field"
    assert "response_format.json_schema.schema.properties.a.type" in refused.value.message


def test_a_schema_whose_ref_cannot_be_resolved_is_a_400_not_a_failure_at_the_end():
    schema = {"type": "object", "properties": {"a": {"$ref": "https://127.0.0.1:9/a.json"}}}
    response_format = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}

    with pytest.raises(StreamRejected) as refused:
        ObjectFormatter(ObjectOptions(response_format), "sse")

    assert refused.value.status == 400 and refused.value.code == "invalid_field"
    assert "https://127.0.0.1:9/a.json" in refused.value.message


SCHEMAS = [
    {"type": "object", "required": ["items"], "additionalProperties": False, "properties": {
        "items": {"type": "array", "maxItems": 3, "items": {
            "type": "object", "required": ["price"],
            "properties": {"price": {"type": "number", "minimum": 0, "exclusiveMaximum": 10}}}}}},
    {"anyOf": [{"type": "string", "minLength": 2, "pattern": "^[a-z]+$"}, {"enum": [1, None]}]},
    {"type": "array", "uniqueItems": True, "items": {"$ref": "#/$defs/n"},
     "$defs": {"n": {"type": "integer", "multipleOf": 3}}},
]  # fmt: skip
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-20, 20) | st.floats(-20, 20) | st.text(max_size=4),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(["items", "price", "x"]), inner, max_size=3)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(schema=st.sampled_from(SCHEMAS), value=JSON_VALUES)
def test_the_fast_check_agrees_with_jsonschema_on_every_value(schema, value):
    check = SchemaCheck(schema)

    assert (check.errors(value) == []) is check.full.is_valid(value)


def test_after_a_failure_it_ends_as_production_does_without_an_object_end():
    from streamserver.types import StreamFailure

    formatter = ObjectFormatter(ObjectOptions(), "sse")
    start(formatter)
    formatter.segment('{"a": ', 1)
    failure = StreamFailure("provider_error", "it failed", "s1")

    events = formatter.error(
        failure, summary(outcome="error", finish_reason="error", error=failure)
    )

    assert [e.name for e in events] == ["error", "stream_end"]
    assert json.loads(events[0].data)["code"] == "provider_error"


def test_the_websocket_form_has_the_same_fields_in_one_message():
    formatter = ObjectFormatter(ObjectOptions(), "json")
    start(formatter)

    token = json.loads(formatter.segment('{"a": "b', 1))
    (event,) = formatter.after_segments()
    (end, stream_end) = formatter.end(summary())

    assert token == {"type": "token", "content": '{"a": "b', "index": 0}
    assert event.name is None and json.loads(event.data) == {"type": "object", "object": {"a": "b"}}
    assert json.loads(end.data)["type"] == "error"  # '{"a": "b' is not a whole value
    assert json.loads(stream_end.data)["type"] == "stream_end"
