"""``GET /openapi.json``: an OpenAPI 3.1 description of every HTTP route, built from the config.

The stream routes come from ``[routes]`` (their methods and the overrides each allows), so the spec
always describes the server that is running. Every refusal is documented with the contract's JSON
error shape; WebSocket routes are listed with their upgrade and the 400 a plain request gets.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..config import Config
from ..conversations import CONVERSATION_ID
from ..hookspecs import RouteSpec
from ..request_input import MAX_DIGITS
from ..settings import RouteSettings
from ..version import __version__
from . import ai_sdk, messages_schemas, responses_schema
from . import request_schemas as schemas
from .request_schemas import Honoured, Models

_ERROR = {"$ref": "#/components/schemas/Error"}
_EVENT = {
    "type": "object",
    "required": ["data"],
    "properties": {
        "event": {"type": "string"},
        "data": {"type": "string", "description": "JSON in every shape but `text`"},
        "id": {"type": "string", "pattern": "^.+:[0-9]+$"},
        "retry": {"type": "integer"},
    },
}
_SSE = {"text/event-stream": {"schema": _EVENT}}
_RESPONSE = {"type": "object", "required": ["id", "object", "status", "output"]}
"""A Responses API Response object (the parts every one has)."""
_STRING = {"type": "string"}
_EVENT_ID = {"type": "string", "pattern": f"^[A-Za-z0-9_-]+:[0-9]{{1,{MAX_DIGITS}}}$"}
"""``<stream_id>:<seq>``, as ``Last-Event-ID`` and ``?last_event_id=`` take it."""


def _errors(*statuses: int, schema: dict[str, Any] = _ERROR) -> dict[str, Any]:
    reasons = {
        400: "Bad request",
        401: "Missing or invalid API key",
        403: "Not allowed",
        404: "Not found",
        409: "Conflict",
        502: "The upstream failed",
        410: "Gone",
        413: "Too large",
        429: "Too many requests (see Retry-After)",
        503: "Shutting down, or a shared store is not answering (see Retry-After)",
    }
    return {
        str(status): {
            "description": reasons[status],
            "content": {"application/json": {"schema": schema}},
        }
        for status in statuses
    }


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "200": {"description": description, "content": {"application/json": {"schema": schema}}}
    }


def _json_body(schema: dict[str, Any]) -> dict[str, Any]:
    """A required JSON request body of ``schema``."""
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def build_spec(
    config: Config,
    models: Models,
    plugin_routes: Sequence[RouteSpec] = (),
    honoured: Honoured | None = None,
    tool_less: Honoured | None = None,
) -> dict[str, Any]:
    """The OpenAPI document for ``config``, the ``models`` its providers offer, the routes
    plugins added, the request parameters each provider ``honoured`` (none if not given) and
    its models that are ``tool_less`` (none if not given).

    It says what the server accepts, no more: a request valid by the document is not refused
    for its shape (only for auth, limits or state: 401, 404, 409, 429). A route's request
    parameters are those it allows that every provider a request can reach honours."""
    honoured = honoured or {}
    tool_less = tool_less or {}
    paths: dict[str, Any] = {}
    for path, route in config.routes.items():
        if route.transport == "openai":
            paths[path] = {"post": _chat_completions(route, config, models, honoured, tool_less)}
        elif route.transport == "responses":
            paths[path] = {"post": _responses(route, config, models, honoured, tool_less)}
            paths.update(responses_schema.retrieve_paths(path, _RESPONSE, _SSE, _errors,
                                                         MAX_DIGITS))  # fmt: skip
        elif route.transport == "anthropic":
            paths[path] = {"post": _messages(route, config, models, honoured, tool_less)}
        elif route.transport == "ws":
            paths[path] = {"get": _websocket(path, route)}
        elif route.transport == "ai-sdk":
            body = _chat_body(route, config, models, honoured, tool_less)
            paths.update(ai_sdk.openapi_paths(path, body, _SSE))
        else:
            paths[path] = {
                method.lower(): _stream(route, method, config, models, honoured, tool_less)
                for method in route.methods
            }
    guarded = _errors(400, 401, 429)
    paths["/health"] = {
        "get": {
            "summary": "Liveness",
            "responses": {
                **_json(
                    {
                        "type": "object",
                        "required": ["status", "active_streams"],
                        "properties": {
                            "status": {"enum": ["healthy"]},
                            "active_streams": {"type": "integer"},
                        },
                    },
                    "Serving",
                ),
                "503": {
                    "description": "Draining",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                **_errors(400),
            },
        }
    }
    paths["/v1/stream/metrics"] = {
        "get": {
            "summary": "Stream counters",
            "responses": {
                **_json(
                    {
                        "type": "object",
                        "required": ["active_streams", "total_streams", "total_tokens"],
                    },
                    "Counters",
                ),
                **guarded,
            },
        }
    }
    paths["/v1/models"] = {
        "get": {
            "summary": "Models, OpenAI-style",
            "responses": {
                **_json({"type": "object", "required": ["object", "data"]}, "Model list"),
                **guarded,
            },
        }
    }
    paths["/v1/stream/options"] = {
        "get": {
            "summary": "Buffers, formats and models a client may choose",
            "responses": {**_json({"type": "object"}, "Choices"), **guarded},
        }
    }
    stream_id = [{"name": "stream_id", "in": "path", "required": True, "schema": _STRING}]
    paths["/v1/streams/{stream_id}"] = {
        "get": {
            "summary": "Resume a stream (replay after Last-Event-ID, then live)",
            "parameters": [*stream_id, _last_event_id()],
            "responses": {
                "200": {"description": "Events", "content": _SSE},
                "204": {"description": "Nothing left to send"},
                **_errors(400, 401, 404, 410, 429, 503),
            },
        },
        "delete": {
            "summary": "Cancel a stream",
            "parameters": stream_id,
            "responses": {
                **_json({"type": "object", "required": ["id", "cancelled"]}, "Cancelled"),
                **_errors(400, 401, 404, 409, 429, 503),
            },
        },
    }
    paths["/v1/tickets"] = {
        "post": {
            "summary": "A short-lived ticket for one path (for EventSource and browser WebSockets)",
            "requestBody": _json_body(
                {
                    "type": "object",
                    "required": ["path"],
                    "properties": {"path": {"type": "string", "pattern": "^/"}},
                }
            ),
            "responses": {
                **_json(
                    {"type": "object", "required": ["ticket", "path", "expires_at"]}, "A ticket"
                ),
                **_errors(400, 401, 403, 429),
            },
        }
    }
    conversation_id = [_CONVERSATION_ID]
    paths["/v1/conversations/{conversation_id}"] = {
        "get": {
            "summary": "A conversation's history",
            "parameters": conversation_id,
            "responses": {
                **_json({"type": "object", "required": ["id", "messages"]}, "History"),
                **_errors(400, 401, 404, 429),
            },
        },
        "delete": {
            "summary": "Delete a conversation",
            "parameters": conversation_id,
            "responses": {
                **_json({"type": "object", "required": ["id", "deleted"]}, "Deleted"),
                **_errors(400, 401, 404, 429),
            },
        },
    }
    for spec in plugin_routes:
        paths.setdefault(spec.path, {})[spec.method.lower()] = {
            "summary": spec.summary,
            "responses": {
                "200": {
                    "description": spec.summary or "OK",
                    "content": {
                        spec.content_type: {
                            "schema": _STRING if spec.content_type.startswith("text/") else {}
                        }
                    },
                },
                **_errors(401, 429),
            },
        }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "streamserver",
            "version": __version__,
            "description": "Streams LLM tokens over Server-Sent Events and WebSocket.",
        },
        "paths": paths,
        "components": {
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["code", "message"],
                            "properties": {"code": _STRING, "message": _STRING},
                        }
                    },
                },
                "Message": schemas.message_schema(config.limits.max_prompt_chars),
                "AnthropicError": messages_schemas.ERROR,
            },
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "ticket": {"type": "apiKey", "in": "query", "name": "ticket"},
            },
        },
    }


_CONVERSATION_ID: dict[str, Any] = {
    "name": "conversation_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": f"^{CONVERSATION_ID.pattern}$"},
}


_QUERY_PROMPT_CHARS = 500
"""The longest prompt the document offers in a query string: aiohttp refuses a request line over
8190 bytes, and one character can take 12 in a URL (four UTF-8 bytes, percent-encoded)."""


def _prompt(config: Config, *, in_query: bool = False) -> dict[str, Any]:
    """A prompt the server takes: some text that is not only whitespace, within the limit."""
    limit = config.limits.max_prompt_chars
    return {
        "type": "string",
        "pattern": r"\S",
        "maxLength": min(limit, _QUERY_PROMPT_CHARS) if in_query else limit,
    }


def _max_tokens(config: Config) -> dict[str, Any]:
    return {"type": "integer", "minimum": 1, "maximum": config.limits.max_tokens}


def _overrides(route: RouteSettings, config: Config, models: Models) -> dict[str, Any]:
    """The pipeline's choices the route allows (its request parameters: ``request_schemas``)."""
    kinds = {
        "model": {"enum": sorted({m for offered in models.values() for m in offered})},
        "provider": {"enum": sorted(models)},
        "max_tokens": _max_tokens(config),
        "buffer": {"enum": sorted(config.buffers)},
        "format": {"enum": sorted(config.formatters)},
    }
    return {name: kinds[name] for name in route.allow if name in kinds}


def _last_event_id() -> dict[str, Any]:
    return {
        "name": "Last-Event-ID",
        "in": "header",
        "required": False,
        "schema": _EVENT_ID,
        "description": "<stream_id>:<seq> of the last event seen: resume after it",
    }


def _idempotency_key() -> dict[str, Any]:
    return {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "schema": {"type": "string", "pattern": "^[\\x21-\\x7e]{1,255}$"},
        "description": "a retry with the same key and body reads the stream the first request "
        "started (on any instance with a shared store); the same key with another body is 409",
    }


def _stream(
    route: RouteSettings,
    method: str,
    config: Config,
    models: Models,
    honoured: Honoured,
    tool_less: Honoured,
) -> dict[str, Any]:
    reach = schemas.reach(route, models, honoured)
    offered, some = schemas.documented_parameters(route, reach, honoured)
    operation: dict[str, Any] = {
        "summary": f"Stream tokens as Server-Sent Events ({route.formatter} shape)",
        "description": "A pinned parameter takes only the route's value."
        + schemas.unlisted(some, reach, honoured),
        "responses": {
            "200": {"description": "Events, each with id <stream_id>:<seq>", "content": _SSE},
            "204": {"description": "A resumed stream with nothing left to send"},
            **_errors(400, 401, 404, 410, 413, 429, 503),
        },
    }
    if method == "GET":
        operation["parameters"] = [
            {
                "name": "prompt",
                "in": "query",
                "required": True,
                "schema": _prompt(config, in_query=True),
                "description": "a URL is at most 8190 bytes: a longer prompt goes in a POST body",
            },
            *(
                {"name": name, "in": "query", "required": False, "schema": schema}
                for name, schema in _overrides(route, config, reach).items()
            ),
            *schemas.query_parameters(offered),
            {"name": "last_event_id", "in": "query", "required": False, "schema": _EVENT_ID},
            _last_event_id(),
        ]
    else:
        body = {
            "type": "object",
            "properties": {
                "prompt": _prompt(config),
                "messages": _MESSAGES,
                **_overrides(route, config, reach),
            },
            # One or the other, never both.
            "oneOf": [{"required": ["prompt"]}, {"required": ["messages"]}],
        }
        operation["requestBody"] = _json_body(
            schemas.with_parameters(body, route, offered, reach, tool_less)
        )
        operation["parameters"] = [_idempotency_key()]
        operation["responses"].update(_errors(409))
    return operation


_MESSAGES = {"type": "array", "minItems": 1, "items": {"$ref": "#/components/schemas/Message"}}


_UPGRADE: list[dict[str, Any]] = [
    {"name": name, "in": "header", "required": True, "schema": schema}
    for name, schema in (
        ("Upgrade", {"enum": ["websocket"]}),
        ("Connection", {"enum": ["Upgrade"]}),
        ("Sec-WebSocket-Version", {"enum": ["13"]}),
        ("Sec-WebSocket-Key", {"type": "string", "pattern": "^[A-Za-z0-9+/]{21}[AQgw]==$"}),
    )
]
"""The headers of a WebSocket handshake (RFC 6455 section 4.1): a plain GET is a 400."""


def _websocket(path: str, route: RouteSettings) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = [_CONVERSATION_ID] if "{conversation_id}" in path else []
    parameters += _UPGRADE
    return {
        "summary": "WebSocket (send JSON prompts, receive JSON messages)",
        "description": (
            'Client messages: a prompt, {"type": "cancel"}, or {"type": "resume", "stream_id", '
            '"received"} to pick a stream up again on a new socket after a drop.'
        ),
        "parameters": parameters,
        "responses": {"101": {"description": "Switching to WebSocket"}, **_errors(400, 401, 429)},
    }


def _chat_completions(
    route: RouteSettings, config: Config, models: Models, honoured: Honoured, tool_less: Honoured
) -> dict[str, Any]:
    reach = schemas.reach(route, models, honoured)
    offered, some = schemas.documented_parameters(route, reach, honoured)
    overrides = _overrides(route, config, reach)
    properties: dict[str, Any] = {
        "model": overrides["model"],
        "messages": _MESSAGES,
        **schemas.COMPLETION_PROPERTIES,
    }
    if "max_tokens" in overrides:
        properties["max_tokens"] = properties["max_completion_tokens"] = schemas.nullable(
            overrides["max_tokens"]
        )
    body = {"type": "object", "required": ["model", "messages"], "properties": properties}
    return {
        "summary": "OpenAI-compatible chat completions (stream true: SSE chunks; false: one completion)",
        "description": schemas.COMPLETION_NOTE + schemas.unlisted(some, reach, honoured),
        "requestBody": _json_body(schemas.with_parameters(body, route, offered, reach, tool_less)),
        "parameters": [_idempotency_key()],
        "responses": {
            "200": {
                "description": "Chunks or a completion",
                "content": {**_SSE, "application/json": {"schema": {"type": "object"}}},
            },
            **_errors(400, 401, 404, 409, 413, 429, 503),
            "502": {
                "description": "The upstream failed",
                "content": {"application/json": {"schema": _ERROR}},
            },
        },
    }


def _responses(
    route: RouteSettings, config: Config, models: Models, honoured: Honoured, tool_less: Honoured
) -> dict[str, Any]:
    reach = schemas.reach(route, models, honoured)
    overrides = _overrides(route, config, reach)
    limit = config.limits.max_prompt_chars
    model, max_tokens = overrides["model"], overrides.get("max_tokens")
    body, some = responses_schema.responses_body(
        route, model, max_tokens, limit, reach, honoured, tool_less
    )
    return {
        "summary": "OpenAI Responses API (stream true: semantic SSE events; false: one Response)",
        "description": responses_schema.NOTE + schemas.unlisted(some, reach, honoured),
        "requestBody": _json_body(body),
        "parameters": [_idempotency_key()],
        "responses": {
            "200": {
                "description": "Events or a Response",
                "content": {**_SSE, "application/json": {"schema": _RESPONSE}},
            },
            **_errors(400, 401, 404, 409, 413, 429, 502, 503),
        },
    }


def _chat_body(
    route: RouteSettings, config: Config, models: Models, honoured: Honoured, tool_less: Honoured
) -> dict[str, Any]:
    """An ``ai-sdk`` route's body: useChat's fields and the overrides the route allows (the
    page's ``body`` option), nothing else."""
    reach = schemas.reach(route, models, honoured)
    offered, _ = schemas.documented_parameters(route, reach, honoured)
    body = ai_sdk.chat_body(config.limits.max_prompt_chars)
    body["properties"].update(_overrides(route, config, reach))
    return schemas.with_parameters(body, route, offered, reach, tool_less)


def _messages(
    route: RouteSettings, config: Config, models: Models, honoured: Honoured, tool_less: Honoured
) -> dict[str, Any]:
    reach = schemas.reach(route, models, honoured)
    offered, some = schemas.documented_parameters(route, reach, honoured)
    limits = config.limits
    body = messages_schemas.body_schema(
        route, limits.max_prompt_chars, limits.max_tokens, reach, offered, tool_less
    )
    error = {"$ref": "#/components/schemas/AnthropicError"}
    return {
        "summary": "Anthropic Messages API (stream true: its event stream; false: one message)",
        "description": messages_schemas.NOTE + schemas.unlisted(some, reach, honoured),
        "requestBody": _json_body(body),
        "parameters": [_idempotency_key(), *messages_schemas.HEADERS],
        "responses": {
            "200": {
                "description": "Events or a message",
                "content": {**_SSE, "application/json": {"schema": {"type": "object"}}},
            },
            **_errors(400, 401, 404, 409, 413, 429, 502, 503, schema=error),
        },
    }
