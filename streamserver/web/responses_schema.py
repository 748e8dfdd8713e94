"""The JSON Schema of a ``POST /v1/responses`` body, for the OpenAPI document.

It promises what ``responses_request`` takes, no more: ``input`` as a string or a list of
messages (text parts), function calls and their outputs; flat function tools; ``text.format``
and ``reasoning.effort`` where every provider a request can reach honours them (what the chat
names say: ``response_format``, ``reasoning_effort``), sampling likewise.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..request_parameters import NAME_PATTERN, REASONING_EFFORTS
from ..settings import RouteSettings
from . import request_schemas as schemas
from .openai_api import IGNORED_PARAMETERS
from .request_schemas import NULL, Honoured, Models, nullable
from .responses_request import SUMMARIES, UNHONOURED_PARAMETERS

_NAME = {"type": "string", "pattern": NAME_PATTERN}
_ID = {"type": "string", "minLength": 1}
_STATUS = nullable({"enum": ["in_progress", "completed", "incomplete"]})
_NONE = {"type": "array", "maxItems": 0}
"""An echoed list this server never fills (an ``output_text``'s annotations and logprobs)."""
_TYPES = {dict: "object", bool: "boolean", str: "string"}

NOTE = (
    "input: a string, or a list of messages (input_text parts; an assistant's output_text), "
    "function_call and function_call_output items; the reasoning items of a previous output "
    f"are also taken (and not sent on). Accepted and ignored: {', '.join(IGNORED_PARAMETERS)}. "
    f"Refused unless null (or the value that asks for nothing): "
    f"{', '.join(UNHONOURED_PARAMETERS)}; tools other than functions, image and file inputs."
)


def _flat(kind: str, schema_key: str, **more: Any) -> dict[str, Any]:
    """``{"type": kind, "name", "description", <schema_key>, "strict"}``: a flat function tool
    (``parameters``) or a ``json_schema`` text format (``schema``)."""
    properties = {
        "type": {"const": kind},
        "name": _NAME,
        "description": nullable({"type": "string"}),
        schema_key: nullable({"type": "object"}),
        "strict": nullable({"type": "boolean"}),
    }
    return {"type": "object", "required": ["type", "name"], "additionalProperties": False,
            "properties": properties, **more}  # fmt: skip


def input_schema(max_chars: int) -> dict[str, Any]:
    """``input``: a string, or a non-empty list of items."""
    text = {"type": "string", "maxLength": max_chars}

    def parts(kind: str, **echoed: Any) -> dict[str, Any]:
        part = {"type": "object", "required": ["type", "text"], "additionalProperties": False,
                "properties": {"type": {"const": kind}, "text": text, **echoed}}  # fmt: skip
        return {"type": "array", "minItems": 1, "items": part}

    def item(kind: str | None, required: Sequence[str], **properties: Any) -> dict[str, Any]:
        typed = {"type": {"const": kind}} if kind else {}
        return {"type": "object", "required": [*(["type"] if kind else []), *required],
                "additionalProperties": False,
                "properties": {**typed, "id": _ID, "status": _STATUS, **properties}}  # fmt: skip

    said = {"anyOf": [text, parts("input_text")]}
    answered = {"anyOf": [text, parts("output_text", annotations=_NONE, logprobs=_NONE)]}
    message = {"type": {"enum": ["message"]}, "phase": nullable({"type": "string"})}
    items = [
        item(None, ["role", "content"], role={"enum": ["user", "system", "developer"]},
             content=said, **message),
        item(None, ["role", "content"], role={"const": "assistant"}, content=answered,
             **message),
        item("function_call", ["call_id", "name", "arguments"], call_id=_ID,
             name={"type": "string", "minLength": 1}, arguments=text),
        item("function_call_output", ["call_id", "output"], call_id=_ID,
             output={"anyOf": [text, parts("input_text")]}),
    ]  # fmt: skip
    return {"anyOf": [text, {"type": "array", "minItems": 1, "items": {"anyOf": items}}]}


def responses_body(
    route: RouteSettings,
    model: dict[str, Any],
    max_tokens: dict[str, Any] | None,
    max_chars: int,
    reach: Models,
    honoured: Honoured,
    tool_less: Honoured,
) -> tuple[dict[str, Any], list[str]]:
    """The body's schema, and the request parameters the route allows that only some of its
    providers honour (left out, for the operation's description)."""
    offered, some = schemas.documented_parameters(route, reach, honoured)
    # Parameters spelled as in chat completions; a pinned one in another shape is left out.
    shared = [name for name in offered if name in ("tool_choice", "parallel_tool_calls",
              "temperature", "top_p", "user") or (name == "tools" and name not in route.pin)]  # fmt: skip
    formats: list[dict[str, Any]] = [{"type": "object", "required": ["type"],
                                      "additionalProperties": False,
                                      "properties": {"type": {"const": "text"}}}]  # fmt: skip
    if "response_format" in offered and "response_format" not in route.pin:
        formats[0]["properties"]["type"] = {"enum": ["text", "json_object"]}
        formats.append(_flat("json_schema", "schema"))
    effort = NULL
    if "reasoning_effort" in offered and "reasoning_effort" not in route.pin:
        effort = nullable({"enum": list(REASONING_EFFORTS)})
    properties: dict[str, Any] = {
        "model": model,
        "input": input_schema(max_chars),
        "instructions": nullable({"type": "string", "maxLength": max_chars}),
        "text": nullable({"type": "object", "additionalProperties": False,
                          "properties": {"format": nullable({"anyOf": formats}),
                                         "verbosity": NULL}}),
        "reasoning": nullable({"type": "object", "additionalProperties": False,
                               "properties": {"effort": effort,
                                              "summary": nullable({"enum": list(SUMMARIES)})}}),
        "stream": nullable({"type": "boolean"}),
        "stream_options": nullable({"type": "object", "additionalProperties": False,
                                    "properties": {"include_obfuscation":
                                                   nullable({"type": "boolean"})}}),
        **{name: nullable({"type": _TYPES[kind]}) for name, kind in IGNORED_PARAMETERS.items()},
        **{name: {"enum": [None] if value is None else [value, None]}
           for name, value in UNHONOURED_PARAMETERS.items()},
    }  # fmt: skip
    if max_tokens is not None:
        properties["max_output_tokens"] = nullable(max_tokens)
    body = {"type": "object", "required": ["model", "input"], "properties": properties}
    schema = schemas.with_parameters(body, route, shared, reach, tool_less)
    if "tools" in shared:
        schema["properties"]["tools"] = {
            "type": "array",
            "minItems": 1,
            "items": _flat("function", "parameters"),
            "description": "function tools, flat: {type: function, name, parameters}",
        }
    return schema, some


def retrieve_paths(
    path: str,
    response: dict[str, Any],
    events: dict[str, Any],
    errors: Any,
    max_digits: int,
) -> dict[str, Any]:
    """``GET {path}/{response_id}`` and ``POST {path}/{response_id}/cancel``
    (``responses_retrieve.py``): ``response`` is the Response object's schema, ``events`` the SSE
    content, ``errors(*statuses)`` the error responses."""
    response_id = {"name": "response_id", "in": "path", "required": True,
                   "schema": {"type": "string"}}  # fmt: skip
    stream = {"name": "stream", "in": "query", "required": False,
              "schema": {"type": "string", "enum": ["true", "false"]}}  # fmt: skip
    after = {"name": "starting_after", "in": "query", "required": False,
             "schema": {"type": "string", "pattern": f"^[0-9]{{1,{max_digits}}}$"}}  # fmt: skip
    body = {"application/json": {"schema": response}}
    return {
        f"{path}/{{response_id}}": {
            "get": {
                "summary": "Retrieve a response (stream=true: its events after starting_after, "
                "then live)",
                "parameters": [response_id, stream, after],
                "responses": {
                    "200": {
                        "description": "The Response, or its events",
                        "content": {**events, **body},
                    },
                    "204": {"description": "Nothing left to send"},
                    **errors(400, 401, 404, 410, 429, 503),
                },
            }
        },
        f"{path}/{{response_id}}/cancel": {
            "post": {
                "summary": "Cancel a response's generation",
                "parameters": [response_id],
                "responses": {
                    "200": {"description": "The cancelled Response", "content": body},
                    **errors(400, 401, 404, 409, 429, 503),
                },
            }
        },
    }
