"""The JSON Schemas of what a stream request may carry, for the OpenAPI document: the messages
(every role, content parts, tool calls, tool results) and the request parameters (tools,
``tool_choice``, ``response_format``, sampling), with the bounds ``request_parameters`` checks.

They promise no more than the server accepts: a value valid by them is never refused for its
shape. Where JSON Schema cannot say a rule (a named ``tool_choice`` must name one of ``tools``),
the form is left out of the schema and said in its description.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from ..request_input import QUERY_PARAMETERS
from ..request_messages import ROLES
from ..request_parameters import (
    MAX_STOP,
    NAME_PATTERN,
    NEEDS_TOOLS,
    NUMBER_BOUNDS,
    REASONING_EFFORTS,
    SEED_RANGE,
    TOOL_CHOICES,
)
from ..settings import RouteSettings
from ..types import REQUEST_PARAMETERS
from .openai_api import IGNORED_PARAMETERS, UNHONOURED_PARAMETERS

Models = Mapping[str, Sequence[str]]
"""The models each provider offers, by provider name."""
Honoured = Mapping[str, Collection[str]]
"""The request parameters each provider honours, by provider name."""

NULL = {"type": "null"}
_STRING = {"type": "string"}
_OBJECT = {"type": "object"}
_NAME = {"type": "string", "pattern": NAME_PATTERN}
_QUERY_TEXT_CHARS = 16
"""The longest ``user`` or ``stop`` sequence the document offers in a query string, so that a
request line with a long prompt beside them stays under aiohttp's 8190 bytes (a POST has none)."""


def nullable(schema: Mapping[str, Any]) -> dict[str, Any]:
    """``schema`` or null (null is the same as leaving the field out)."""
    return {"anyOf": [dict(schema), NULL]}


def message_schema(max_chars: int) -> dict[str, Any]:
    """``components.schemas.Message``: one message of any role."""
    text = {"type": "string", "maxLength": max_chars}
    parts = {
        "type": "array",
        "minItems": 1,
        "items": {
            "anyOf": [
                {"type": "object", "required": ["type", "text"],
                 "properties": {"type": {"const": "text"}, "text": text}},
                {"type": "object", "required": ["type"], "description": "any other part "
                 "(image_url, input_audio, file, ...): passed on untouched",
                 "properties": {"type": {"type": "string", "minLength": 1, "not": {"const": "text"}}}},
            ]
        },
    }  # fmt: skip
    content = {"anyOf": [text, parts]}
    name = nullable({**_STRING, "description": "accepted; no provider here uses it"})
    call = {
        "type": "object",
        "required": ["id", "type", "function"],
        "additionalProperties": False,
        "properties": {
            "id": {"type": "string", "minLength": 1},
            "type": {"const": "function"},
            "function": {
                "type": "object",
                "required": ["name", "arguments"],
                "additionalProperties": False,
                "properties": {
                    "name": {"type": "string", "minLength": 1},
                    "arguments": {**_STRING, "description": "JSON text, as the model wrote it"},
                },
            },
        },
    }

    def role(names: Sequence[str], required: Sequence[str], **properties: Any) -> dict[str, Any]:
        return {
            "type": "object",
            "required": ["role", *required],
            "additionalProperties": False,
            "properties": {"role": {"enum": list(names)}, "name": name, **properties},
        }

    echoed = {key: {**NULL, "description": "as the SDKs echo a reply back"}
              for key in ("refusal", "audio", "function_call", "annotations")}  # fmt: skip
    assistant = role(
        ["assistant"],
        [],
        content={"anyOf": [text, parts, NULL]},
        tool_calls=nullable({"type": "array", "items": call}),
        **echoed,
    )
    assistant["anyOf"] = [
        {"required": ["content"], "properties": {"content": content}},
        {
            "required": ["tool_calls"],
            "properties": {"tool_calls": {"type": "array", "minItems": 1}},
        },
    ]
    return {
        "description": f"roles: {', '.join(ROLES)} (developer is read as system)",
        "oneOf": [
            role(["system", "developer"], ["content"], content=content),
            role(["user"], ["content"], content=content),
            assistant,
            role(["tool"], ["content", "tool_call_id"], content=content,
                 tool_call_id={"type": "string", "minLength": 1}),
        ],
    }  # fmt: skip


def parameter_schema(name: str) -> dict[str, Any]:
    """The JSON body schema of request parameter ``name`` (null allowed but for ``tools``)."""
    return _SCHEMAS[name] if name == "tools" else nullable(_SCHEMAS[name])


def query_parameter(name: str) -> dict[str, Any]:
    """The query-string parameter of one of ``QUERY_PARAMETERS``."""
    schema = dict(_SCHEMAS[name])
    if name == "stop":
        schema = {"type": "array", "maxItems": MAX_STOP,
                  "items": {"type": "string", "maxLength": _QUERY_TEXT_CHARS}}  # fmt: skip
    elif name == "user":
        schema["maxLength"] = _QUERY_TEXT_CHARS
    described = {
        "stop": "repeat it for several sequences (a POST body takes longer ones)",
        "user": "a POST body takes a longer one",
    }
    parameter = {"name": name, "in": "query", "required": False, "schema": schema}
    if name in described:
        parameter["description"] = described[name]
    return parameter


def reach(route: RouteSettings, models: Models, honoured: Honoured) -> Models:
    """The providers (and their models) a request on ``route`` can reach: any, where it may
    choose the model or provider, else the route's own; only those that honour its pins."""
    chooses = route.transport in ("openai", "responses") or {"model", "provider"} & set(route.allow)
    names = list(models) if chooses else [route.provider or next(iter(models))]
    return {
        name: models[name]
        for name in names
        if all(pin in honoured.get(name, ()) for pin in route.pin)
    }


def unlisted(some: Sequence[str], reach: Models, honoured: Honoured) -> str:
    """A description of the parameters the route allows but its schema leaves out, because only
    some of its providers honour them, or none."""
    by = {name: [p for p in reach if name in honoured.get(p, ())] for name in some}
    text = ""
    if any(by.values()):
        listed = "; ".join(f"{name} ({', '.join(by[name])})" for name in some if by[name])
        text += (
            " Also taken with a model of a provider that honours it (another is refused with 400 "
            f"unsupported_parameter): {listed}."
        )
    if not all(by.values()):
        refused = ", ".join(name for name in some if not by[name])
        text += (
            f" Allowed, but no provider here honours them (400 unsupported_parameter): {refused}."
        )
    return text


def with_parameters(
    body: dict[str, Any],
    route: RouteSettings,
    names: Sequence[str],
    reach: Models,
    tool_less: Honoured,
) -> dict[str, Any]:
    """A request body's schema with the request parameters ``names`` (a pinned one takes only
    its value), no other property, what needs tools only with tools, and no forced call on a
    model of ``reach`` that is ``tool_less``."""
    properties = {
        name: nullable({"const": route.pin[name]}) if name in route.pin else parameter_schema(name)
        for name in names
    }
    schema = {**body, "additionalProperties": False,
              "properties": {**body["properties"], **properties}}  # fmt: skip
    if "tools" not in route.pin and any(name in names for name in NEEDS_TOOLS):
        schema["dependentRequired"] = {name: ["tools"] for name in NEEDS_TOOLS if name in names}
    if "tool_choice" in names and "tool_choice" not in route.pin:
        rule = _no_forced_call(route, reach, tool_less)
        if rule is not None:
            schema["allOf"] = [*schema.get("allOf", ()), rule]
    return schema


def _no_forced_call(route: RouteSettings, reach: Models, tool_less: Honoured) -> Any:
    """``tool_choice`` only ``"none"`` or ``"auto"`` with a model that calls no tools (named, or
    the one a request without ``model`` gets), else a 400 ``invalid_tool_choice``; ``None`` when
    every model reached calls tools."""
    named = sorted({m for provider in reach for m in tool_less.get(provider, ())})
    if not named:
        return None
    defaults = [route.model, *(models[0] for models in reach.values())]  # with a provider named
    cases: list[dict[str, Any]] = [
        {"required": ["model"], "properties": {"model": {"enum": named}}}
    ]
    if any(model in named for model in defaults):
        cases.append({"not": {"required": ["model"]}})
    return {
        "if": cases[0] if len(cases) == 1 else {"anyOf": cases},
        "then": {"properties": {"tool_choice": nullable({"enum": ["none", "auto"]})}},
        "description": "a model that calls no tools cannot be made to call one",
    }


def documented_parameters(
    route: RouteSettings, reachable: Collection[str], honoured: Mapping[str, Collection[str]]
) -> tuple[list[str], list[str]]:
    """The request parameters a route's schema offers (it allows or pins them, and every
    provider a request can reach honours them), and those it allows that only some providers
    honour (left out of the schema, listed in its description)."""
    offered, some = [], []
    for name in REQUEST_PARAMETERS:
        if name not in route.allow and name not in route.pin:
            continue
        if all(name in honoured.get(provider, ()) for provider in reachable):
            offered.append(name)
        else:
            some.append(name)
    return offered, some


def query_parameters(names: Sequence[str]) -> list[dict[str, Any]]:
    """The query parameters of ``names`` (the scalar ones)."""
    return [query_parameter(name) for name in names if name in QUERY_PARAMETERS]


def _number(name: str) -> dict[str, Any]:
    low, high = NUMBER_BOUNDS[name]
    return {"type": "number", "minimum": low, "maximum": high}


def _named_schema(schema_key: str, described: str) -> dict[str, Any]:
    """``{"name", "description", <schema_key>: a JSON Schema, "strict"}`` (a tool's function, a
    response format's ``json_schema``), as ``request_parameters._named_schema`` checks it."""
    return {
        "type": "object",
        "required": ["name"],
        "additionalProperties": False,
        "properties": {
            "name": _NAME,
            "description": _STRING,
            schema_key: {**_OBJECT, "description": described} if described else _OBJECT,
            "strict": nullable({"type": "boolean"}),
        },
    }


_TOOL = {
    "type": "object",
    "required": ["type", "function"],
    "additionalProperties": False,
    "properties": {
        "type": {"const": "function"},
        "function": _named_schema("parameters", "a JSON Schema (at most 32 levels deep)"),
    },
}
_JSON_SCHEMA_FORMAT = {
    "type": "object",
    "required": ["type", "json_schema"],
    "additionalProperties": False,
    "properties": {
        "type": {"const": "json_schema"},
        "json_schema": _named_schema("schema", ""),
    },
}
_SCHEMAS: dict[str, dict[str, Any]] = {
    "tools": {"type": "array", "minItems": 1, "items": _TOOL,
              "description": "function tools (an empty list is the same as none)"},
    "tool_choice": {"enum": list(TOOL_CHOICES), "description": 'with tools; also {"type": "function", '
                    '"function": {"name"}} naming one of them (left out here: JSON Schema cannot say '
                    '"one of the tools")'},
    "parallel_tool_calls": {"type": "boolean", "description": "with tools"},
    "response_format": {"oneOf": [
        {"type": "object", "required": ["type"], "additionalProperties": False,
         "properties": {"type": {"enum": ["text", "json_object"]}}},
        _JSON_SCHEMA_FORMAT,
    ]},
    **{name: _number(name) for name in NUMBER_BOUNDS},
    "stop": {"anyOf": [_STRING, {"type": "array", "maxItems": MAX_STOP, "items": _STRING}]},
    "seed": {"type": "integer", "minimum": SEED_RANGE[0], "maximum": SEED_RANGE[1]},
    "logit_bias": {"type": "object", "propertyNames": {"pattern": "^[0-9]{1,10}$"},
                   "additionalProperties": {"type": "number", "minimum": -100, "maximum": 100},
                   "description": "token id -> bias"},
    "user": _STRING,
    "reasoning_effort": {"enum": list(REASONING_EFFORTS)},
}  # fmt: skip
assert set(_SCHEMAS) == set(REQUEST_PARAMETERS)

_TYPES = {dict: "object", bool: "boolean", str: "string"}
COMPLETION_PROPERTIES: dict[str, Any] = {
    **{name: nullable({"type": _TYPES[kind]}) for name, kind in IGNORED_PARAMETERS.items()},
    **{name: {"enum": [None] if value is None else [value, None]}
       for name, value in UNHONOURED_PARAMETERS.items()},
    "stream": nullable({"type": "boolean"}),
    "stream_options": nullable({
        "type": "object",
        "additionalProperties": False,
        "properties": {"include_usage": nullable({"type": "boolean"}),
                       "include_obfuscation": nullable({"type": "boolean"})},
    }),
    "n": {"enum": [1, None]},
}  # fmt: skip
"""The chat completions body beside the model, the messages and the request parameters."""
COMPLETION_NOTE = (
    f"Accepted and ignored: {', '.join(IGNORED_PARAMETERS)}. Refused unless null (or the value "
    f"that asks for nothing): {', '.join(UNHONOURED_PARAMETERS)}."
)
