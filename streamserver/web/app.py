"""Build the aiohttp application: ``create_app`` for a standalone or mounted app, ``setup`` to add
streamserver's routes to an app you already have.

App state lives under typed ``web.AppKey``s; the runtime opens and closes in ``cleanup_ctx``.
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

from aiohttp import web

from .. import security
from ..config import Config, load_config
from ..errors import StreamRejected
from ..request_input import read_json_body
from ..service import StreamService
from ..settings import RouteSettings
from ..streams import Stream
from ..transports import sse, ws
from . import chat, openai_api, openapi
from .guard import error_response, json_errors
from .keys import CONFIG, SERVICE, Handler
from .request import parse_stream_params, read_fields

log = logging.getLogger("streamserver")

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
"""The demo page and its script and stylesheet, shipped in the package."""
STATIC_FILES = frozenset(path.name for path in STATIC_DIR.iterdir() if path.is_file())
"""The names ``/static/`` serves: the page's files, nothing else (no listing, no subpaths)."""
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
    app.cleanup_ctx.append(_service_lifetime)
    app.on_shutdown.append(drain)
    app.on_response_prepare.append(_add_cors_headers)
    app.on_response_prepare.append(_close_when_draining)
    methods: dict[str, set[str]] = {}

    def add(
        method: str,
        path: str,
        handler: Handler,
        *,
        admits: bool = False,
        refuse: Callable[[StreamRejected], web.Response] = error_response,
    ) -> None:
        # ``admits``: the handler calls ``_admit`` itself.
        app.router.add_route(method, path, handler if admits else guarded(path, handler, refuse))
        methods.setdefault(path, set()).add(method)

    for path, route in loaded.routes.items():
        if route.conversation:
            add("GET", path, chat.socket_handler(path, route, SERVICE))
        elif route.transport == "ws":
            add("GET", path, _socket_handler(path, route))
        elif route.transport == "openai":
            handler = openai_api.chat_completions_handler(path, route, SERVICE)
            add("POST", path, handler, refuse=openai_api.openai_error)
        else:
            for method in route.methods:
                add(method, path, _stream_handler(path, route), admits=True)
    add("GET", "/health", health)
    add("GET", "/v1/stream/metrics", stream_metrics)
    add("GET", "/v1/models", openai_api.models_handler(SERVICE), refuse=openai_api.openai_error)
    add("GET", "/v1/stream/options", stream_options)
    add("GET", "/v1/streams/{stream_id}", resume_stream)
    add("DELETE", "/v1/streams/{stream_id}", cancel_stream)
    add("POST", "/v1/tickets", issue_ticket)
    app.router.add_get("/openapi.json", openapi_document)
    get_conversation, delete_conversation = chat.history_handlers(SERVICE)
    add("GET", "/v1/conversations/{conversation_id}", get_conversation)
    add("DELETE", "/v1/conversations/{conversation_id}", delete_conversation)
    if loaded.cors.origins:
        for path, verbs in methods.items():
            app.router.add_route(
                "OPTIONS", path, security.preflight(loaded.cors, ", ".join(sorted(verbs)))
            )
    # The demo page is public (it holds no data) and uses relative URLs, so it also works when the
    # app is mounted with add_subapp.
    app.router.add_get("/", demo_page)
    app.router.add_get("/static/{name}", static_file)
    loaded.registry.call_app_hook("register_routes", app=app)
    return loaded


_CORS = web.RequestKey("streamserver.cors", dict)


def guarded(
    path: str,
    handler: Handler,
    refuse: Callable[[StreamRejected], web.Response] = error_response,
) -> Handler:
    """Authenticate and rate-limit every request of a streamserver route, and mark it for CORS.

    Plugins that add routes (``register_routes``) wrap their handlers with it to get the same
    auth, rate limits and CORS; ``auth.public_paths`` opens a path to everyone. ``refuse`` shapes
    a refusal (the OpenAI-compatible routes answer in OpenAI's error shape)."""

    async def handle(request: web.Request) -> web.StreamResponse:
        service = request.app[SERVICE]
        try:
            _admit(request, service, path)
        except StreamRejected as exc:
            service.reject(path, exc)
            return refuse(exc)
        return await handler(request)

    return handle


def _admit(request: web.Request, service: StreamService, path: str) -> None:
    """Mark ``request`` for CORS, identify its caller and charge its rate limit (or raise).

    A plain function, called by stream handlers themselves: a wrapping coroutine would be one
    more frame held for the whole life of every stream."""
    cors = security.cors_headers(service.config.cors, request.headers.get("Origin"))
    if cors:
        request[_CORS] = cors
    identity = service.access.identify(request)
    if path not in service.config.auth.public_paths:
        service.access.check_rate(identity)
    request[security.KEY_ID] = identity


async def _add_cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    headers = request.get(_CORS)
    if headers:
        response.headers.update(headers)


@web.middleware
async def json_http_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Give aiohttp's own 4xx (404, 405, 413) the contract's JSON error shape."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or exc.status >= 500 or exc.content_type == "application/json":
            raise
        code = exc.reason.lower().replace(" ", "_")
        # aiohttp's text says why when it has more than the reason (a WebSocket route asked for
        # without an upgrade); its default text is only "<status>: <reason>".
        message = exc.text if exc.text and exc.text != f"{exc.status}: {exc.reason}" else exc.reason
        headers = {k: v for k, v in exc.headers.items() if k in ("Allow", "Retry-After")}
        return error_response(StreamRejected(exc.status, code, message, headers=headers))


def _stream_handler(path: str, route: RouteSettings) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        service = request.app[SERVICE]
        try:
            _admit(request, service, path)
            stream, start = await _resume_or_start(request, service, path, route)
        except StreamRejected as exc:
            service.reject(path, exc)
            return error_response(exc)
        try:
            nothing_left = service.resume_point(stream, start, "invalid_last_event_id")
        except StreamRejected as exc:
            return error_response(exc)
        if nothing_left:
            return web.Response(status=204)  # tells EventSource to stop reconnecting
        return await sse.send_stream(request, stream, start, service.sse)

    handle.__name__ = f"stream {path}"
    return handle


def _socket_handler(path: str, route: RouteSettings) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        service = request.app[SERVICE]
        server = service.config.server

        async def start(fields: dict[str, Any]) -> Stream:
            try:
                params = parse_stream_params(fields, route, service.config)
                return service.start(path, route, params, "ws", key_id=request[security.KEY_ID])
            except StreamRejected as exc:
                service.reject(path, exc)
                raise

        def resume(wanted: ws.ResumeRequest) -> Stream:
            if wanted.stream_id is None:
                raise StreamRejected(400, "invalid_resume", "'stream_id' is required")
            stream = service.owned_stream(wanted.stream_id, request[security.KEY_ID])
            if stream.route != path:  # its messages are in that route's shape
                raise StreamRejected(
                    400, "invalid_resume", f"that stream belongs to {stream.route}: resume it there"
                )
            service.resume_point(stream, wanted.received, "invalid_resume")
            return stream

        return await ws.serve_socket(
            request,
            start,
            resume,
            sockets=service.sockets,
            batcher=service.sse,
            heartbeat_s=server.ws_heartbeat_s,
            max_message_bytes=server.ws_max_message_bytes,
            send_timeout_s=server.send_timeout_s,
            busy=route.busy,
        )

    handle.__name__ = f"socket {path}"
    return handle


@json_errors
async def resume_stream(request: web.Request) -> web.StreamResponse:
    """``GET /v1/streams/{id}``: replay a live or retained stream after ``Last-Event-ID`` (or from the
    start), then follow it live. Never starts a generation."""
    service = request.app[SERVICE]
    stream = service.owned_stream(request.match_info["stream_id"], request[security.KEY_ID])
    if stream.transport != "sse":
        raise StreamRejected(
            400,
            "not_an_sse_stream",
            f"that stream's messages are WebSocket messages: resume it on {stream.route} "
            'with {"type": "resume"}',
        )
    start = 0
    last_event_id = request.headers.get("Last-Event-ID") or request.query.get("last_event_id")
    if last_event_id:
        parsed = sse.parse_event_id(last_event_id)
        if parsed is None or parsed[0] != stream.id:
            raise StreamRejected(
                400, "invalid_last_event_id", "Last-Event-ID must be '<this stream id>:<seq>'"
            )
        start = parsed[1] + 1
    if service.resume_point(stream, start, "invalid_last_event_id"):
        return web.Response(status=204)
    return await sse.send_stream(request, stream, start, service.sse)


@json_errors
async def cancel_stream(request: web.Request) -> web.Response:
    """``DELETE /v1/streams/{id}``: stop a stream; its readers get the route's end events."""
    service = request.app[SERVICE]
    stream = service.owned_stream(request.match_info["stream_id"], request[security.KEY_ID])
    if stream.finished:
        raise StreamRejected(409, "stream_finished", "the stream has already finished")
    stream.cancel("cancelled")
    return web.json_response({"id": stream.id, "cancelled": True})


@json_errors
async def issue_ticket(request: web.Request) -> web.Response:
    """``POST /v1/tickets`` ``{"path": "/v1/stream"}``: a short-lived ticket for one path, for
    clients that cannot send headers (EventSource, a browser's WebSocket). Needs a key."""
    service = request.app[SERVICE]
    if "ticket" in request.query:
        raise StreamRejected(
            403, "ticket_for_ticket", "a ticket cannot be exchanged for another ticket"
        )
    body = await read_json_body(request, service.config.limits.max_body_bytes)
    path = body.get("path")
    if not isinstance(path, str) or not path.startswith("/"):
        raise StreamRejected(
            400, "invalid_path", "'path' must be the path the ticket is for, like /v1/stream"
        )
    ticket = service.access.issue_ticket(request[security.KEY_ID], path)
    return web.json_response(
        {"ticket": ticket.token, "path": ticket.path, "expires_at": ticket.expires_at}
    )


async def stream_options(request: web.Request) -> web.Response:
    """``GET /v1/stream/options``: the names a client may choose from (for selectors in a UI)."""
    config = request.app[SERVICE].config
    return web.json_response(
        {
            "buffers": sorted(config.buffers),
            "formats": sorted(config.formatters),
            "models": request.app[SERVICE].models(),
            "routes": {
                path: {
                    "transport": r.transport,
                    "formatter": r.formatter,
                    "buffer": r.buffer,
                    "allow": list(r.allow),
                }
                for path, r in config.routes.items()
            },
        }
    )


async def _resume_or_start(
    request: web.Request, service: StreamService, path: str, route: RouteSettings
) -> tuple[Stream, int]:
    last_event_id = request.headers.get("Last-Event-ID") or request.query.get("last_event_id")
    if last_event_id:
        parsed = sse.parse_event_id(last_event_id)
        if parsed is None:
            raise StreamRejected(
                400, "invalid_last_event_id", "Last-Event-ID must look like '<stream_id>:<seq>'"
            )
        stream = service.owned_stream(parsed[0], request[security.KEY_ID])
        if stream.route != path:  # its events are in that route's shape, not this one's
            raise StreamRejected(
                400,
                "invalid_last_event_id",
                f"that stream belongs to {stream.route}: resume it there or on /v1/streams/{{id}}",
            )
        return stream, parsed[1] + 1
    fields = await read_fields(request, service.config.limits.max_body_bytes)
    params = parse_stream_params(fields, route, service.config)
    return service.start(path, route, params, "sse", key_id=request[security.KEY_ID]), 0


async def demo_page(request: web.Request) -> web.FileResponse:
    """``GET /``: the demo chat page (``static/index.html``)."""
    return web.FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


async def static_file(request: web.Request) -> web.FileResponse:
    """``GET /static/{name}``: one of the demo page's files.

    Not ``add_static``: its missing file is an empty 404 that no middleware sees (the file is
    looked for when the response is sent). Any other name is refused here, as a JSON 404."""
    name = request.match_info["name"]
    if name not in STATIC_FILES:
        raise web.HTTPNotFound()
    return web.FileResponse(STATIC_DIR / name)


async def openapi_document(request: web.Request) -> web.Response:
    """``GET /openapi.json``: the OpenAPI document of this server (its routes, its models)."""
    service = request.app[SERVICE]
    return web.json_response(openapi.build_spec(service.config, service.models()))


async def health(request: web.Request) -> web.Response:
    """``GET /health``: liveness, and how many streams are generating."""
    service = request.app[SERVICE]
    status = "draining" if service.draining else "healthy"
    return web.json_response(
        {"status": status, "active_streams": service.streams.active},
        status=503 if service.draining else 200,
    )


async def stream_metrics(request: web.Request) -> web.Response:
    """``GET /v1/stream/metrics``: the registry's counts plus every sink's snapshot."""
    service = request.app[SERVICE]
    figures: dict[str, object] = {
        "active_streams": service.streams.active,
        "total_streams": service.streams.total,
        "retained_streams": len(service.streams.streams),
        "evicted_streams": service.streams.evicted,
        "trimmed_events": service.streams.trimmed,
    }
    for sink in service.sink_list:
        snapshot = getattr(sink, "snapshot", None)  # optional: MetricsSink.snapshot
        try:
            figures.update(snapshot() if snapshot is not None else {})
        except Exception:  # one broken sink must not hide the others' figures
            log.exception("metrics sink %s failed in snapshot", type(sink).__name__)
    return web.json_response(figures)


async def _service_lifetime(app: web.Application) -> AsyncIterator[None]:
    service = await StreamService.open(app[CONFIG])
    app[SERVICE] = service
    await _call_hooks(app, "startup")
    try:
        yield
    finally:
        await _call_hooks(app, "shutdown")
        await service.close()


async def drain(app: web.Application) -> None:
    """Refuse new streams (503), give live ones ``server.shutdown_grace_s``, end the rest.

    It runs in ``on_shutdown``, which aiohttp calls after it has closed the listening sockets.
    To keep accepting during the grace (a load balancer sees the 503s and ``/health``
    ``draining``), await it first, before ``AppRunner.cleanup`` (``streamserver serve`` does);
    the ``on_shutdown`` call then waits for the same drain."""
    if SERVICE in app:
        await app[SERVICE].drain(app[CONFIG].server.shutdown_grace_s)


async def _close_when_draining(request: web.Request, response: web.StreamResponse) -> None:
    # A keep-alive connection answered during the drain is closed after its response, so the
    # client's next request opens a new connection (to another instance, once this one stops
    # listening) instead of meeting a connection closed under it.
    service = request.app.get(SERVICE)
    if service is not None and service.draining:
        response.force_close()
        response.headers["Connection"] = "close"  # the headers are built: say it ourselves


async def _call_hooks(app: web.Application, hook: str) -> None:
    for result in app[CONFIG].registry.call_app_hook(hook, app=app):
        if inspect.isawaitable(result):
            await result
