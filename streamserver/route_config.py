"""``config.toml``'s ``[routes]`` table: each route's settings, checked against the configured
parts and against each other (an openai, anthropic or ai-sdk route's formatter, a conversation route's path), and its
pinned request parameters held to the checks a request's values get (``request_parameters``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from . import schema
from .errors import ConfigError
from .plugins import Kind
from .request_parameters import InvalidValue, check_parameter, check_together
from .settings import ANTHROPIC_ALLOW, OPENAI_ALLOW, RESPONSES_ALLOW, Override, RouteSettings
from .types import REQUEST_PARAMETERS

API_ALLOW: dict[str, tuple[Override, ...]] = {
    "openai": OPENAI_ALLOW,
    "responses": RESPONSES_ALLOW,
    "anthropic": ANTHROPIC_ALLOW,
}
"""The routes that speak a vendor's API, by transport, with their default ``allow``: each has
the formatter of its name and only ``POST``."""
NAMED_ROUTES: dict[str, tuple[Override, ...]] = {**API_ALLOW, "ai-sdk": OPENAI_ALLOW}
"""Every route whose formatter is named by its transport and that takes only ``POST``, with its
default ``allow``: the vendors' APIs, and the AI SDK's ``useChat`` (whose model the route may
choose: a request need not name one)."""


def build_routes(table: object, parts: Mapping[Kind, Any]) -> dict[str, RouteSettings]:
    """The ``[routes]`` table as each route's settings, checked against the configured parts
    (``parts``: the instances of each kind), with their pins checked."""
    if not isinstance(table, Mapping):
        raise ConfigError(
            "routes", 'a table of routes keyed by path, like [routes."/stream"]', got=table
        )
    routes: dict[str, RouteSettings] = {}
    for path, body in table.items():
        key = schema.join_key("routes", path)
        if not path.startswith("/"):
            raise ConfigError(key, "a path starting with /", got=path)
        api = body.get("transport") if isinstance(body, Mapping) else None
        if api in NAMED_ROUTES:
            body = {"formatter": api, "methods": ["POST"], "allow": list(NAMED_ROUTES[api]), **body}
        if isinstance(body, Mapping) and body.get("conversation"):
            body = {"formatter": "chat", **body}
        route = schema.build(RouteSettings, body, key)
        if route.transport in NAMED_ROUTES and (
            route.formatter != route.transport or route.methods != ("POST",)
        ):
            raise ConfigError(
                key,
                f'formatter = "{route.transport}" and methods = ["POST"] for a transport = '
                f'"{route.transport}" route (the defaults)',
            )
        named: tuple[tuple[str, Kind], ...] = (
            ("formatter", "formatters"),
            ("buffer", "buffers"),
            ("provider", "providers"),
        )
        for field_name, section in named:
            value = getattr(route, field_name)
            if value is not None and value not in parts[section]:
                raise ConfigError(
                    f"{key}.{field_name}",
                    f"a configured {section[:-1]}",
                    got=value,
                    choices=parts[section],
                )
        if route.conversation and (route.transport != "ws" or "{conversation_id}" not in path):
            raise ConfigError(
                key, 'transport = "ws" and a path with {conversation_id} for a conversation route'
            )
        if route.conversation and route.formatter != "chat":
            raise ConfigError(
                f"{key}.formatter",
                '"chat" on a conversation route (the default)',
                got=route.formatter,
            )
        if route.transport == "ws" and route.methods != ("GET",):
            raise ConfigError(
                f"{key}.methods", 'only ["GET"] for a WebSocket route', got=list(route.methods)
            )
        if route.transport in API_ALLOW and "model" not in route.allow:
            raise ConfigError(
                f"{key}.allow",
                f'a list with "model" (every {route.transport} request names one)',
                got=list(route.allow),
            )
        routes[path] = dataclasses.replace(route, pin=_pins(route.pin, schema.join_key(key, "pin")))
    return routes


def _pins(pin: Mapping[str, Any], key: str) -> dict[str, Any]:
    """A route's pinned values, held to the checks a request's values get."""
    checked = {}
    for name, value in pin.items():
        if name not in REQUEST_PARAMETERS:
            raise ConfigError(
                schema.join_key(key, name), "a request parameter", choices=REQUEST_PARAMETERS
            )
        try:
            checked[name] = check_parameter(name, value)
        except InvalidValue as exc:
            raise ConfigError(f"{key}.{exc.where}", exc.expected, got=value) from None
    if "tools" in checked:  # else the requests bring the tools, and are checked with them
        try:
            check_together(checked)
        except InvalidValue as exc:
            raise ConfigError(f"{key}.{exc.where}", exc.expected) from None
    return checked
