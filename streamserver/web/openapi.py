"""``GET /openapi.json``: an OpenAPI 3.1 description of every HTTP route, built from the config.

The stream routes come from ``[routes]`` (their methods and the overrides each allows), so the spec
always describes the server that is running. Every refusal is documented with the contract's JSON
error shape; WebSocket routes are listed with their upgrade and the 400 a plain request gets.
"""

from __future__ import annotations

from typing import Any

from ..config import Config
from ..settings import RouteSettings
from ..version import __version__

_ERROR = {"$ref": "#/components/schemas/Error"}
_EVENT = {
    "type": "object",
    "required": ["data"],
    "properties": {
        "event": {"type": "string"},
        "data": {"type": "string", "description": "JSON in every shape but `text`"},
        "id": {"type": "string", "pattern": "^[^:]+:[0-9]+$"},
        "retry": {"type": "integer"},
    },
}
_SSE = {"text/event-stream": {"schema": _EVENT}}
_STRING = {"type": "string"}


def _errors(*statuses: int) -> dict[str, Any]:
    reasons = {
        400: "Bad request",
        401: "Missing or invalid API key",
        403: "Not allowed",
        404: "Not found",
        409: "Conflict",
        410: "Gone",
        413: "Too large",
        429: "Too many requests (see Retry-After)",
        503: "Shutting down",
    }
    return {
        str(status): {
            "description": reasons[status],
            "content": {"application/json": {"schema": _ERROR}},
        }
        for status in statuses
    }


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "200": {"description": description, "content": {"application/json": {"schema": schema}}}
    }


def build_spec(config: Config) -> dict[str, Any]:
    """The OpenAPI document for ``config``."""
    paths: dict[str, Any] = {}
    for path, route in config.routes.items():
        if route.transport == "openai":
            paths[path] = {"post": _chat_completions(route)}
        elif route.transport == "ws":
            paths[path] = {"get": _websocket(path, route)}
        else:
            paths[path] = {method.lower(): _stream(path, route, method) for method in route.methods}
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
                **_errors(400, 401, 404, 410, 429),
            },
        },
        "delete": {
            "summary": "Cancel a stream",
            "parameters": stream_id,
            "responses": {
                **_json({"type": "object", "required": ["id", "cancelled"]}, "Cancelled"),
                **_errors(400, 401, 404, 409, 429),
            },
        },
    }
    paths["/v1/tickets"] = {
        "post": {
            "summary": "A short-lived ticket for one path (for EventSource and browser WebSockets)",
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["path"],
                            "properties": {"path": _STRING},
                        }
                    }
                },
            },
            "responses": {
                **_json(
                    {"type": "object", "required": ["ticket", "path", "expires_at"]}, "A ticket"
                ),
                **_errors(400, 401, 403, 429),
            },
        }
    }
    conversation_id = [
        {"name": "conversation_id", "in": "path", "required": True, "schema": _STRING}
    ]
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
    if any(part.name == "prometheus" for part in config.sinks):
        prometheus = next(part for part in config.sinks if part.name == "prometheus")
        paths[prometheus.options.path] = {
            "get": {
                "summary": "Prometheus exposition",
                "responses": {
                    "200": {
                        "description": "Metrics",
                        "content": {"text/plain": {"schema": _STRING}},
                    }
                },
            }
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
                "Message": {
                    "type": "object",
                    "required": ["role", "content"],
                    "additionalProperties": False,
                    "properties": {
                        "role": {"enum": ["system", "user", "assistant"]},
                        "content": _STRING,
                    },
                },
            },
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "ticket": {"type": "apiKey", "in": "query", "name": "ticket"},
            },
        },
    }


def _overrides(route: RouteSettings) -> dict[str, Any]:
    kinds = {
        "model": _STRING,
        "provider": _STRING,
        "max_tokens": {"type": "integer", "minimum": 1},
        "buffer": _STRING,
        "format": _STRING,
    }
    return {name: kinds[name] for name in route.allow}


def _last_event_id() -> dict[str, Any]:
    return {
        "name": "Last-Event-ID",
        "in": "header",
        "required": False,
        "schema": _STRING,
        "description": "<stream_id>:<seq> of the last event seen: resume after it",
    }


def _stream(path: str, route: RouteSettings, method: str) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": f"Stream tokens as Server-Sent Events ({route.formatter} shape)",
        "responses": {
            "200": {"description": "Events, each with id <stream_id>:<seq>", "content": _SSE},
            "204": {"description": "A resumed stream with nothing left to send"},
            **_errors(400, 401, 404, 410, 413, 429, 503),
        },
    }
    if method == "GET":
        operation["parameters"] = [
            {"name": "prompt", "in": "query", "required": True, "schema": _STRING},
            *(
                {"name": name, "in": "query", "required": False, "schema": schema}
                for name, schema in _overrides(route).items()
            ),
            {"name": "last_event_id", "in": "query", "required": False, "schema": _STRING},
            _last_event_id(),
        ]
    else:
        operation["requestBody"] = {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "prompt": _STRING,
                            "messages": {
                                "type": "array",
                                "minItems": 1,
                                "items": {"$ref": "#/components/schemas/Message"},
                            },
                            **_overrides(route),
                        },
                    }
                }
            },
        }
    return operation


def _websocket(path: str, route: RouteSettings) -> dict[str, Any]:
    parameters = (
        [{"name": "conversation_id", "in": "path", "required": True, "schema": _STRING}]
        if ("{conversation_id}" in path)
        else []
    )
    return {
        "summary": "WebSocket (send JSON prompts, receive JSON messages)",
        "description": (
            'Client messages: a prompt, {"type": "cancel"}, or {"type": "resume", "stream_id", '
            '"received"} to pick a stream up again on a new socket after a drop.'
        ),
        "parameters": parameters,
        "responses": {"101": {"description": "Switching to WebSocket"}, **_errors(400, 401, 429)},
    }


def _chat_completions(route: RouteSettings) -> dict[str, Any]:
    return {
        "summary": "OpenAI-compatible chat completions (stream true: SSE chunks; false: one completion)",
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["model", "messages"],
                        "properties": {
                            "model": _STRING,
                            "messages": {
                                "type": "array",
                                "minItems": 1,
                                "items": {"$ref": "#/components/schemas/Message"},
                            },
                            "stream": {"type": "boolean"},
                            "max_tokens": {"type": "integer", "minimum": 1},
                            "stream_options": {
                                "type": "object",
                                "properties": {"include_usage": {"type": "boolean"}},
                            },
                        },
                    }
                }
            },
        },
        "responses": {
            "200": {
                "description": "Chunks or a completion",
                "content": {**_SSE, "application/json": {"schema": {"type": "object"}}},
            },
            **_errors(400, 401, 404, 413, 429, 503),
            "502": {
                "description": "The upstream failed",
                "content": {"application/json": {"schema": _ERROR}},
            },
        },
    }
