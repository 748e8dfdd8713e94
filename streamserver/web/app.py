"""Build the aiohttp application: ``create_app`` for a standalone or mounted app, ``setup`` to add
streamserver's routes to an app you already have; the route table; the app's lifetime.

App state lives under typed ``web.AppKey``s (``keys.py``); the runtime and the open connections
open and close in ``cleanup_ctx``.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import AsyncIterator, Mapping
from typing import Any

from aiohttp import web

from ..config import Config, load_config
from ..hookspecs import RouteHandler
from ..service import StreamService
from ..transports.connections import OpenConnections
from . import (
    admin,
    ai_sdk,
    chat,
    messages_api,
    openai_api,
    responses_api,
    responses_retrieve,
    sockets,
    streams,
)
from .guard import (
    ErrorShape,
    add_cors_headers,
    anthropic_error,
    contract_error,
    guarded,
    json_http_errors,
    openai_error,
    preflight,
    raises_no_http_errors,
)
from .keys import CONFIG, CONNECTIONS, PLUGIN_ROUTES, SERVICE, Handler

ConfigSource = str | os.PathLike[str] | Mapping[str, Any] | Config


def create_app(config: ConfigSource) -> web.Application:
    """A new application serving ``config``: run it, or mount it with ``app.add_subapp``."""
    loaded = load_config(config)
    app = web.Application(
        client_max_size=loaded.limits.max_body_bytes,
        middlewares=[json_http_errors],
    )
    setup(app, loaded)
    return app


def setup(app: web.Application, config: ConfigSource) -> Config:
    """Add streamserver's routes and lifecycle to an existing application; returns the config.

    For prompt disconnect detection run the app with ``handler_cancellation=True`` (``web.run_app``
    or ``AppRunner``); otherwise a vanished client is noticed at the next write or ping.
    """
    loaded = load_config(config)
    app[CONFIG] = loaded
    app.cleanup_ctx.append(_lifetime)
    app.on_shutdown.append(drain)
    app.on_response_prepare.append(add_cors_headers)
    app.on_response_prepare.append(_close_when_draining)
    methods: dict[str, set[str]] = {}

    def add(
        method: str,
        path: str,
        handler: Handler,
        *,
        shape: ErrorShape = contract_error,
        starts_streams: bool = False,
        guard: bool = True,
        key_header: str | None = None,
        serves_streams: bool = False,
    ) -> None:
        # ``guard = False``: the handler admits and refuses itself (the SSE stream handler).
        if guard:
            handler = guarded(
                path, handler, shape=shape, starts_streams=starts_streams, key_header=key_header
            )
        if serves_streams:  # a stream's whole life: no middleware frame (it raises no HTTP 4xx)
            raises_no_http_errors(handler)
        app.router.add_route(method, path, handler)
        methods.setdefault(path, set()).add(method)

    for path, route in loaded.routes.items():
        if route.conversation:
            add("GET", path, chat.socket_handler(path, route))
        elif route.transport == "ws":
            add("GET", path, sockets.socket_handler(path, route))
        elif route.transport == "openai":
            handler = openai_api.chat_completions_handler(path, route)
            add("POST", path, handler, shape=openai_error, starts_streams=True, serves_streams=True)
        elif route.transport == "responses":
            handler = responses_api.responses_handler(path, route)
            add("POST", path, handler, shape=openai_error, starts_streams=True, serves_streams=True)
            for (method, route_path), handler in responses_retrieve.retrieve_handlers(path).items():
                add(method, route_path, handler, shape=openai_error, serves_streams=method == "GET")
        elif route.transport == "anthropic":
            handler = messages_api.messages_handler(path, route)
            add("POST", path, handler, shape=anthropic_error, starts_streams=True,
                key_header="x-api-key", serves_streams=True)  # fmt: skip
        elif route.transport == "ai-sdk":
            for (method, route_path), handler in ai_sdk.chat_handlers(path, route).items():
                starts = method == "POST"  # a GET resumes one: it serves a stream too
                add(method, route_path, handler, starts_streams=starts,
                    serves_streams=method != "DELETE")  # fmt: skip
        else:
            for method in route.methods:
                handler = streams.stream_handler(path, route)
                add(method, path, handler, guard=False, serves_streams=True)
    add("GET", "/health", admin.health)
    add("GET", "/v1/stream/metrics", admin.stream_metrics)
    add("GET", "/v1/models", openai_api.models, shape=openai_error)
    add("GET", "/v1/stream/options", admin.stream_options)
    add("GET", "/v1/streams/{stream_id}", streams.resume_stream, serves_streams=True)
    add("DELETE", "/v1/streams/{stream_id}", streams.cancel_stream)
    add("POST", "/v1/tickets", admin.issue_ticket)
    app.router.add_get("/openapi.json", admin.openapi_document)
    get_conversation, delete_conversation = chat.history_handlers()
    add("GET", "/v1/conversations/{conversation_id}", get_conversation)
    add("DELETE", "/v1/conversations/{conversation_id}", delete_conversation)
    if loaded.cors.origins:
        for path, verbs in methods.items():
            app.router.add_route("OPTIONS", path, preflight(loaded.cors, ", ".join(sorted(verbs))))
    # The demo page is public (it holds no data) and uses relative URLs, so it also works when the
    # app is mounted with add_subapp.
    app.router.add_get("/", admin.demo_page)
    app.router.add_get("/static/{name}", admin.static_file)
    plugin_routes = tuple(
        spec
        for specs in loaded.registry.call_app_hook("register_routes", config=loaded)
        if specs
        for spec in specs  # type: ignore[attr-defined]
    )
    for spec in plugin_routes:
        add(spec.method, spec.path, _with_runtime(spec.handler))
    app[PLUGIN_ROUTES] = plugin_routes
    return loaded


def _with_runtime(handler: RouteHandler) -> Handler:
    """A plugin's route handler as an aiohttp handler: it gets the app's runtime too."""

    async def handle(request: web.Request) -> web.StreamResponse:
        return await handler(request, request.app[SERVICE])

    handle.__name__ = getattr(handler, "__name__", "plugin route")
    return handle


async def _lifetime(app: web.Application) -> AsyncIterator[None]:
    connections = OpenConnections(app[CONFIG].server)
    app[CONNECTIONS] = connections
    service = await StreamService.open(app[CONFIG])
    app[SERVICE] = service
    await _call_hooks(app, "startup")
    try:
        yield
    finally:
        await _call_hooks(app, "shutdown")
        connections.close()
        await service.close()


async def drain(app: web.Application) -> None:
    """Refuse new streams (503), give live ones ``server.shutdown_grace_s``, end the rest, then
    close the WebSockets (1001).

    It runs in ``on_shutdown``, which aiohttp calls after it has closed the listening sockets.
    To keep accepting during the grace (a load balancer sees the 503s and ``/health``
    ``draining``), await it first, before ``AppRunner.cleanup`` (``streamserver serve`` does);
    the ``on_shutdown`` call then waits for the same drain."""
    if SERVICE in app:
        grace_s = app[CONFIG].server.shutdown_grace_s
        await app[SERVICE].drain(grace_s, then=app[CONNECTIONS].close_sockets)


async def _close_when_draining(request: web.Request, response: web.StreamResponse) -> None:
    # A keep-alive connection answered during the drain is closed after its response, so the
    # client's next request opens a new connection (to another instance, once this one stops
    # listening) instead of meeting a connection closed under it.
    # Not a 101: the upgraded connection is the WebSocket's, and "Connection: close" would fail
    # its handshake.
    service = request.app.get(SERVICE)
    if service is not None and service.draining and response.status != 101:
        response.force_close()
        response.headers["Connection"] = "close"  # the headers are built: say it ourselves


async def _call_hooks(app: web.Application, hook: str) -> None:
    for result in app[CONFIG].registry.call_app_hook(hook, app=app):
        if inspect.isawaitable(result):
            await result
