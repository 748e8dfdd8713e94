"""The JSON Schemas of a Messages API request (``POST /v1/messages``) and of its error, for the
OpenAPI document.

Like ``request_schemas`` they promise no more than the server accepts: the content blocks offered
are text blocks (images, tool results and the rest are taken too, and said in the description);
a field is offered only when every provider a request can reach honours what it becomes
(``stop_sequences`` is ``stop``, ``thinking`` ``reasoning_effort``, ``metadata`` ``user``).
Where JSON Schema cannot say a rule (a named ``tool_choice`` must name one of the tools, a
thinking budget must stay under ``max_tokens``), the form is left out and said in the
description.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..request_parameters import MAX_STOP, NAME_PATTERN
from ..settings import RouteSettings
from .request_schemas import Honoured, Models

_STRING = {"type": "string"}
ERROR: dict[str, Any] = {
    "type": "object",
    "required": ["type", "error"],
    "properties": {
        "type": {"const": "error"},
        "error": {
            "type": "object",
            "required": ["type", "message"],
            "properties": {"type": _STRING, "message": _STRING},
        },
    },
}
"""``components.schemas.AnthropicError``: the Messages API's error body."""

NOTE = (
    "The Anthropic Messages API (stream true: its event stream; false: one message). Also taken: "
    "image, tool_use, tool_result and thinking blocks; tool_choice {type: tool, name} naming one "
    "of the tools; thinking {type: enabled, budget_tokens} (at least 1024, under max_tokens), "
    "sent as the reasoning effort its budget reaches. The key may come as x-api-key."
)

HEADERS: list[dict[str, Any]] = [
    {"name": name, "in": "header", "required": False, "schema": _STRING, "description": described}
    for name, described in (("x-api-key", "the API key (or Authorization: Bearer)"),
                            ("anthropic-version", "accepted; every version gets the same"))
]  # fmt: skip
"""The headers the ``anthropic`` SDK sends."""

_FIELDS = {"temperature": "temperature", "top_p": "top_p", "stop_sequences": "stop",
           "metadata": "user", "thinking": "reasoning_effort", "tools": "tools"}  # fmt: skip
"""Each optional field, by the request parameter it becomes."""


def body_schema(
    route: RouteSettings,
    max_chars: int,
    max_tokens: int,
    models: Models,
    offered: Sequence[str],
    tool_less: Honoured,
) -> dict[str, Any]:
    """The request body's schema: ``model`` among ``models``, ``max_tokens`` up to the limit,
    the messages, and the optional fields whose request parameters are ``offered`` (and not
    pinned by the route: a pinned one takes only its value, left to the description)."""
    text = {"type": "string", "maxLength": max_chars}
    block = {"type": "object", "required": ["type", "text"], "additionalProperties": False,
             "properties": {"type": {"const": "text"}, "text": text}}  # fmt: skip
    content = {"anyOf": [text, {"type": "array", "minItems": 1, "items": block}]}
    message = {"type": "object", "required": ["role", "content"], "additionalProperties": False,
               "properties": {"role": {"enum": ["user", "assistant"]}, "content": content}}  # fmt: skip
    fields = {
        "temperature": {"type": "number", "minimum": 0, "maximum": 1},
        "top_p": {"type": "number", "minimum": 0, "maximum": 1},
        "stop_sequences": {"type": "array", "maxItems": MAX_STOP, "items": _STRING},
        "metadata": {"type": "object", "additionalProperties": False,
                     "properties": {"user_id": _STRING}},
        "thinking": {"type": "object", "required": ["type"], "additionalProperties": False,
                     "properties": {"type": {"const": "disabled"}}},
        "tools": {"type": "array", "minItems": 1, "items": _TOOL},
    }  # fmt: skip
    properties: dict[str, Any] = {
        "model": {"enum": sorted({m for offered in models.values() for m in offered})},
        "max_tokens": {"type": "integer", "minimum": 1, "maximum": max_tokens},
        "messages": {"type": "array", "minItems": 1, "items": message},
        "system": {"anyOf": [text, {"type": "array", "items": block}]},
        "stream": {"type": "boolean"},
        **{
            name: fields[name]
            for name, parameter in _FIELDS.items()
            if parameter in offered and parameter not in route.pin
        },  # a pinned one: left out
    }
    schema: dict[str, Any] = {
        "type": "object",
        "required": ["model", "max_tokens", "messages"],
        "additionalProperties": False,
        "properties": properties,
    }
    if "tools" in properties and "tool_choice" in offered and "tool_choice" not in route.pin:
        properties["tool_choice"] = {
            "type": "object", "required": ["type"], "additionalProperties": False,
            "properties": {"type": {"enum": ["auto", "any", "none"]}},
        }  # fmt: skip
        schema["dependentRequired"] = {"tool_choice": ["tools"]}
        named = sorted({m for provider in models for m in tool_less.get(provider, ())})
        if named:
            schema["if"] = {"required": ["model"], "properties": {"model": {"enum": named}}}
            schema["then"] = {
                "properties": {"tool_choice": {"properties": {"type": {"enum": ["auto", "none"]}}}}
            }
    return schema


_TOOL = {
    "type": "object",
    "required": ["name", "input_schema"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "pattern": NAME_PATTERN},
        "description": _STRING,
        "input_schema": {"type": "object", "description": "a JSON Schema (at most 32 levels deep)"},
    },
}
