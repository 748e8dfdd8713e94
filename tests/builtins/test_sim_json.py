"""The simulated provider honours ``response_format``: JSON that validates against the schema
(checked with ``jsonschema``), in token-sized pieces, the same for the same seed, through every
format the server offers."""

from __future__ import annotations

import json
from typing import Any

import pytest
from conftest import base_config
from jsonschema import Draft202012Validator
from sim_helpers import request, say, simulated
from test_lossless import FORMATTERS
from test_structured_lossless import Rebuilt

from streamserver import ProviderError
from streamserver.tokens import tokenize

PROVIDER = simulated()

SCHEMAS: dict[str, Any] = {
    "strings": {"type": "object", "required": ["name", "city"],
                "properties": {"name": {"type": "string", "minLength": 3},
                               "city": {"type": "string", "maxLength": 12}}},
    "numbers": {"type": "object", "required": ["age", "price"],
                "properties": {"age": {"type": "integer", "minimum": 18, "maximum": 30},
                               "price": {"type": "number", "exclusiveMinimum": 0}}},
    "arrays": {"type": "object", "required": ["tags"],
               "properties": {"tags": {"type": "array", "items": {"type": "string"},
                                       "minItems": 2, "maxItems": 5, "uniqueItems": True}}},
    "nested": {"type": "object", "required": ["order"], "properties": {"order": {
        "type": "object", "required": ["id", "lines"], "properties": {
            "id": {"type": "string", "format": "uuid"},
            "lines": {"type": "array", "minItems": 1, "items": {
                "type": "object", "required": ["sku", "qty"], "additionalProperties": False,
                "properties": {"sku": {"type": "string"}, "qty": {"type": "integer"}}}}}}}},
    "enums": {"type": "object", "required": ["size", "colour"],
              "properties": {"size": {"enum": ["S", "M", "L"]},
                             "colour": {"type": "string", "enum": ["red", "blue"]}}},
    "top-level array": {"type": "array", "items": {"type": "boolean"}, "minItems": 1},
}  # fmt: skip


def json_schema(schema: Any) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("name", list(SCHEMAS))
async def test_the_text_validates_against_the_schema_in_token_pieces(name, seed):
    schema = SCHEMAS[name]

    said = await say(PROVIDER, request(response_format=json_schema(schema),
                                       sampling={"seed": seed}))  # fmt: skip

    Draft202012Validator(schema).validate(json.loads(said.text))
    assert [d for d in said.deltas if isinstance(d, str)] == tokenize(said.text)
    assert said.finish is not None and said.finish.reason == "stop"


async def test_the_same_seed_gives_the_same_text_and_another_seed_another():
    wanted = json_schema(SCHEMAS["nested"])

    first = await say(PROVIDER, request(response_format=wanted, sampling={"seed": 5}))
    again = await say(simulated(seed=None), request(response_format=wanted, sampling={"seed": 5}))
    other = await say(PROVIDER, request(response_format=wanted, sampling={"seed": 6}))

    assert first.text == again.text != other.text


async def test_json_object_gives_a_plausible_object():
    said = await say(PROVIDER, request(response_format={"type": "json_object"}))

    value = json.loads(said.text)
    assert isinstance(value, dict) and {"title", "summary", "tags", "score"} <= set(value)


async def test_a_text_response_format_and_echo_answer_in_text():
    text = await say(PROVIDER, request(response_format={"type": "text"}))
    echoed = await say(
        PROVIDER, request("not json", "echo", response_format={"type": "json_object"})
    )

    assert not text.text.lstrip().startswith("{")
    assert echoed.text == "not json"


async def test_a_schema_that_cannot_be_met_fails_before_the_first_token():
    impossible = json_schema({"type": "string", "minLength": 5, "maxLength": 2})

    with pytest.raises(ProviderError) as failed:
        PROVIDER.check(request(response_format=impossible))  # type: ignore[attr-defined]

    assert failed.value.code == "invalid_response_format"


@pytest.mark.parametrize("fmt", [*FORMATTERS, "object"])
async def test_every_format_carries_the_schema_s_json(serve, fmt):
    client = await serve(base_config())
    schema = SCHEMAS["nested"]
    body = {"prompt": "an order", "format": fmt, "seed": 3, "response_format": json_schema(schema)}

    got = await client.sse("/v1/stream", method="POST", json_body=body)

    assert got.status == 200
    rebuilt = Rebuilt()
    for event in got.events:
        if fmt == "text":
            if event.event == "message":
                rebuilt.add("text", event.data)
        elif event.data != "[DONE]":
            rebuilt.read(json.loads(event.data), event.event)
    Draft202012Validator(schema).validate(json.loads("".join(rebuilt.text)))
