"""``sim-tools``' call arguments satisfy the tool's JSON schema, feature by feature and for every
schema hypothesis builds; checked with ``jsonschema`` (formats included), not with our own code.

Every argument is read from the provider's stream: the fragments of a call, joined and parsed.
"""

from __future__ import annotations

import datetime
import urllib.parse
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft4Validator, Draft202012Validator, FormatChecker
from sim_helpers import request, say, simulated, tool

from streamserver import ProviderError

PROVIDER = simulated()
SEEDS = range(12)

FORMATS = FormatChecker()  # jsonschema's own, plus the formats it checks only with extra packages


@FORMATS.checks("date-time", raises=ValueError)
def _date_time(value: object) -> bool:
    return not isinstance(value, str) or datetime.datetime.fromisoformat(value).tzinfo is not None


@FORMATS.checks("time", raises=ValueError)
def _time(value: object) -> bool:
    return not isinstance(value, str) or datetime.time.fromisoformat(value).tzinfo is not None


@FORMATS.checks("uri")
def _uri(value: object) -> bool:
    parts = urllib.parse.urlsplit(str(value))
    return not isinstance(value, str) or bool(parts.scheme and parts.netloc)


@FORMATS.checks("hostname")
def _hostname(value: object) -> bool:
    return not isinstance(value, str) or all(p.isalnum() for p in value.split("."))


async def arguments(schema: Any, seed: int = 0, prompt: str = "go", validator: Any = None) -> Any:
    """The arguments ``sim-tools`` calls a tool of this ``parameters`` schema with, checked."""
    said = await say(
        PROVIDER, request(prompt, "sim-tools", tools=(tool("f", schema),), sampling={"seed": seed})
    )
    assert said.finish is not None and said.finish.reason == "tool_calls"
    value = said.arguments()
    (validator or Draft202012Validator)(schema, format_checker=FORMATS).validate(value)
    return value


def obj(**properties: Any) -> dict[str, Any]:
    """An object schema whose properties are all required."""
    return {"type": "object", "properties": properties, "required": list(properties)}


# Each feature, over several seeds


FEATURES = {
    "required and optional properties": {"type": "object", "required": ["a"],
        "properties": {"a": {"type": "string"}, "b": {"type": "integer"}}},
    "no additional properties": {"type": "object", "properties": {"a": {"type": "boolean"}},
                                 "additionalProperties": False},
    "min and max properties": {"type": "object", "minProperties": 2, "maxProperties": 2,
        "properties": {"a": {"type": "null"}, "b": {"type": "null"}, "c": {"type": "null"}}},
    "a required key without a property schema": {"type": "object", "required": ["x"],
        "additionalProperties": {"type": "integer", "minimum": 5, "maximum": 6}},
    "string enum": obj(unit={"type": "string", "enum": ["celsius", "fahrenheit"]}),
    "const": obj(version={"const": {"major": 2, "tags": ["x"]}}),
    "string lengths": obj(s={"type": "string", "minLength": 30, "maxLength": 31},
                          t={"type": "string", "maxLength": 1}, u={"type": "string", "minLength": 1}),
    "string formats": obj(**{f: {"type": "string", "format": f} for f in
        ("date", "date-time", "time", "email", "uri", "uuid", "hostname", "ipv4", "ipv6")}),
    "integer bounds": obj(i={"type": "integer", "minimum": -3, "maximum": -1},
                          j={"type": "integer", "exclusiveMinimum": 10, "exclusiveMaximum": 12}),
    "integer multipleOf": obj(i={"type": "integer", "multipleOf": 7, "minimum": 1, "maximum": 30},
                              j={"type": "integer", "multipleOf": 1.5}),
    "number bounds": obj(x={"type": "number", "minimum": 0.5, "maximum": 0.75},
                         y={"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 0.01}),
    "number multipleOf": obj(x={"type": "number", "multipleOf": 0.1, "minimum": 1, "maximum": 2},
                             y={"type": "number", "multipleOf": 0.25, "exclusiveMaximum": 0}),
    "booleans and null": obj(b={"type": "boolean"}, n={"type": "null"}),
    "array bounds": obj(xs={"type": "array", "items": {"type": "integer"}, "minItems": 2,
                            "maxItems": 4}, empty={"type": "array", "maxItems": 0}),
    "unique items": obj(xs={"type": "array", "uniqueItems": True, "minItems": 5, "maxItems": 5,
                            "items": {"type": "integer", "minimum": 0, "maximum": 6}}),
    "tuple items": obj(pair={"type": "array", "prefixItems": [{"type": "string"},
        {"type": "integer"}], "items": False, "minItems": 2}),
    "nested objects": obj(outer=obj(inner=obj(leaf={"type": "string", "format": "date"}))),
    "anyOf": obj(v={"anyOf": [{"type": "string", "maxLength": 3}, {"type": "integer"}]}),
    "oneOf": obj(v={"oneOf": [{"type": "boolean"}, {"type": "null"}, {"const": "x"}]}),
    "$ref to $defs": {"$defs": {"point": obj(x={"type": "number"}, y={"type": "number"})},
                      **obj(a={"$ref": "#/$defs/point"}, b={"$ref": "#/$defs/point"})},
    "$ref to definitions": {"definitions": {"id": {"type": "string", "format": "uuid"}},
                            **obj(ids={"type": "array", "items": {"$ref": "#/definitions/id"}})},
    "recursive $ref": {"$defs": {"node": {"type": "object", "required": ["name"], "properties": {
        "name": {"type": "string"}, "children": {"type": "array",
                                                 "items": {"$ref": "#/$defs/node"}}}}},
        **obj(root={"$ref": "#/$defs/node"})},
    "type lists": obj(v={"type": ["integer", "null"], "minimum": 3, "maximum": 3}),
    "allOf": {"allOf": [obj(a={"type": "integer"}), obj(b={"type": "boolean"})]},
    "no constraints at all": obj(anything={}, truth=True),
}  # fmt: skip


@pytest.mark.parametrize("schema", FEATURES.values(), ids=FEATURES.keys())
async def test_the_arguments_satisfy_each_schema_feature(schema):
    validator = Draft202012Validator(schema, format_checker=FORMATS)
    for seed in SEEDS:
        value = await arguments(schema, seed)
        assert validator.is_valid(value), (seed, value)


async def test_optional_properties_are_sometimes_given_and_required_ones_always():
    seen = [await arguments(FEATURES["required and optional properties"], s) for s in SEEDS]

    assert all("a" in args for args in seen)
    assert any("b" in args for args in seen) and any("b" not in args for args in seen)


async def test_anyof_oneof_and_type_lists_take_each_branch_over_seeds():
    any_of = {type(a["v"]) for a in [await arguments(FEATURES["anyOf"], s) for s in SEEDS]}
    one_of = {repr(a["v"]) for a in [await arguments(FEATURES["oneOf"], s) for s in range(30)]}
    typed = {repr(a["v"]) for a in [await arguments(FEATURES["type lists"], s) for s in SEEDS]}

    assert any_of == {str, int}
    assert {"None", "'x'"} <= one_of and one_of & {"True", "False"}
    assert typed == {"3", "None"}


async def test_the_draft_4_form_of_exclusive_bounds_is_honoured():
    schema = obj(i={"type": "integer", "minimum": 1, "maximum": 3, "exclusiveMinimum": True,
                    "exclusiveMaximum": True})  # fmt: skip
    for seed in SEEDS:
        assert (await arguments(schema, seed, validator=Draft4Validator)) == {"i": 2}


async def test_values_are_plausible_for_their_names_and_the_prompt():
    schema = obj(city={"type": "string"}, query={"type": "string"}, when={"type": "string",
                 "format": "date"}, max_results={"type": "integer"})  # fmt: skip

    args = await arguments(schema, prompt="What is on in Lisbon this week?")

    assert args["city"] == "Lisbon"
    assert args["query"] == "What is on in Lisbon this week?"
    assert 1 <= args["max_results"] <= 10


async def test_a_tool_without_parameters_is_called_with_an_empty_object():
    said = await say(PROVIDER, request("go", "sim-tools", tools=(tool("ping"),)))

    assert said.calls[0].name == "ping" and said.arguments() == {}


@pytest.mark.parametrize(
    "schema",
    [
        obj(i={"type": "integer", "minimum": 5, "maximum": 4}),
        obj(s={"type": "string", "minLength": 3, "maxLength": 2}),
        obj(x={"type": "number", "multipleOf": 10, "minimum": 1, "maximum": 9}),
        obj(a={"$ref": "#/$defs/missing"}),
        obj(a={"$ref": "https://example.com/schema.json"}),
        {"$defs": {"loop": obj(next={"$ref": "#/$defs/loop"})}, **obj(a={"$ref": "#/$defs/loop"})},
        obj(xs={"type": "array", "items": {"type": "boolean"}, "uniqueItems": True, "minItems": 3}),
        obj(e={"enum": []}),
        obj(never=False),
    ],
    ids=["bounds", "lengths", "multipleOf", "missing $ref", "remote $ref", "endless $ref",
         "too few unique values", "empty enum", "false"],
)  # fmt: skip
async def test_a_schema_that_cannot_be_met_fails_the_stream_before_its_first_token(schema):
    with pytest.raises(ProviderError) as failed:
        await say(PROVIDER, request("go", "sim-tools", tools=(tool("weather", schema),)))

    assert failed.value.code == "invalid_tool_schema"
    assert "'weather'" in failed.value.message


# Every schema hypothesis builds

NAMES = st.sampled_from(["a", "b", "city", "query", "count", "price", "when", "email", "items",
                         "latitude", "name", "user_id", "tags", "x"])  # fmt: skip


@st.composite
def integers(draw: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "integer"}
    low = draw(st.integers(-1000, 1000))
    width = draw(st.integers(2, 200))
    step = draw(st.none() | st.integers(1, 9) | st.sampled_from([0.5, 1.5, 2.5]))
    if step is not None:
        schema["multipleOf"] = step
        width = max(width, 10 * int(step) + 2)
    if draw(st.booleans()):
        schema["exclusiveMinimum" if draw(st.booleans()) else "minimum"] = low
    if draw(st.booleans()):
        schema["exclusiveMaximum" if draw(st.booleans()) else "maximum"] = low + width
    return schema


@st.composite
def numbers(draw: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "number"}
    low = draw(st.floats(-1e4, 1e4, allow_nan=False))
    width = draw(st.floats(0.01, 1e4))
    step = draw(st.none() | st.sampled_from([0.1, 0.25, 0.3, 2, 5, 0.01]))
    if step is not None:
        schema["multipleOf"] = step
        width = max(width, 10 * step)
    if draw(st.booleans()):
        schema["exclusiveMinimum" if draw(st.booleans()) else "minimum"] = low
    if draw(st.booleans()):
        schema["exclusiveMaximum" if draw(st.booleans()) else "maximum"] = low + width
    return schema


@st.composite
def strings(draw: Any) -> dict[str, Any]:
    formats = ["date", "date-time", "time", "email", "uri", "uuid", "hostname", "ipv4", "ipv6"]
    fmt = draw(st.none() | st.sampled_from(formats))
    if fmt is not None:
        return {"type": "string", "format": fmt}
    schema: dict[str, Any] = {"type": "string"}
    least = draw(st.none() | st.integers(0, 40))
    if least is not None:
        schema["minLength"] = least
    if draw(st.booleans()):
        schema["maxLength"] = (least or 0) + draw(st.integers(0, 20))
    return schema


JSON_SCALARS = st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=6)
SCALARS = (
    integers()
    | numbers()
    | strings()
    | st.just({"type": "boolean"})
    | st.just({"type": "null"})
    | st.lists(JSON_SCALARS, min_size=1, max_size=4).map(lambda e: {"enum": e})
    | JSON_SCALARS.map(lambda c: {"const": c})
    | st.builds(lambda s: {**s, "type": [s["type"], "null"]}, integers() | strings())
)
DISJOINT = {"string": strings(), "integer": integers(), "boolean": st.just({"type": "boolean"}),
            "null": st.just({"type": "null"})}  # fmt: skip
ONE_OF = st.lists(st.sampled_from(sorted(DISJOINT)), min_size=1, max_size=4, unique=True).flatmap(
    lambda kinds: st.tuples(*(DISJOINT[k] for k in kinds)).map(lambda b: {"oneOf": list(b)})
)
UNIQUE = st.builds(
    lambda items, least, extra: {"type": "array", "uniqueItems": True, "items": items,
                                 "minItems": least, "maxItems": least + extra},
    st.just({"type": "integer", "minimum": 0, "maximum": 10_000}) | st.just({"type": "string"}),
    st.integers(0, 4), st.integers(0, 3),
)  # fmt: skip


def composites(children: Any) -> Any:
    properties = st.dictionaries(NAMES, children, max_size=4)
    objects = st.builds(
        lambda props, data, closed: {
            "type": "object",
            "properties": props,
            "required": [k for k in props if data.draw(st.booleans())],
            **({"additionalProperties": False} if closed else {}),
        },
        properties, st.data(), st.booleans(),
    )  # fmt: skip
    arrays = st.builds(
        lambda items, least, extra: {"type": "array", "items": items, "minItems": least,
                                     "maxItems": least + extra},
        children, st.integers(0, 3), st.integers(0, 3),
    )  # fmt: skip
    any_of = st.lists(children, min_size=1, max_size=3).map(lambda b: {"anyOf": b})
    return objects | arrays | any_of


SCHEMAS = st.recursive(SCALARS | ONE_OF | UNIQUE, composites, max_leaves=10)
DOCUMENTS = st.builds(
    lambda shared, own: {
        "type": "object",
        "properties": {"shared": {"$ref": "#/$defs/shared"}, "own": own,
                       "again": {"$ref": "#/$defs/shared"}},
        "required": ["shared", "own"],
        "$defs": {"shared": shared},
    },
    SCHEMAS, SCHEMAS,
)  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(DOCUMENTS, st.integers(0, 2**32))
async def test_the_arguments_satisfy_every_generated_schema(schema, seed):
    await arguments(schema, seed)
