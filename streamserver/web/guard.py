"""The guard every route passes: auth, rate limits and CORS, and the one way a refusal becomes a
response.

A handler refuses by raising ``StreamRejected``. ``guarded`` catches it, tells the metrics sinks
when a stream request was refused, and answers in the route's error shape: the contract's
``{"error": {"code", "message"}}``, or OpenAI's for the OpenAI-compatible routes. aiohttp's own
refusals (404, 405, 413) get the same shape from ``json_http_errors``. The SSE stream handler is
the one handler that is not wrapped (a wrapping coroutine would be one more frame held for the
whole life of every stream): it calls ``admit`` and ``refuse`` itself.
"""

from __future__ import annotations

import weakref
from collections.abc import Awaitable, Callable

from aiohttp import web

from ..access import KEY_ID
from ..builtins.anthropic_formatter import anthropic_error_body
from ..errors import StreamRejected
from ..settings import CorsSettings
from .keys import SERVICE, Handler

ErrorShape = Callable[[StreamRejected], web.Response]
"""How a route answers a refusal."""

_CORS = web.RequestKey("streamserver.cors", dict)


def contract_error(error: StreamRejected) -> web.Response:
    """``{"error": {"code", "message"}}`` with the error's status and headers."""
    return web.json_response(
        {"error": {"code": error.code, "message": error.message}},
        status=error.status,
        headers=error.headers,
    )


def openai_error(error: StreamRejected) -> web.Response:
    """OpenAI's error body: ``{"error": {"message", "type", "param", "code"}}``."""
    kind = "invalid_request_error" if error.status < 500 else "server_error"
    if error.status == 429:
        kind = "rate_limit_error"
    body = {"error": {"message": error.message, "type": kind, "param": None, "code": error.code}}
    return web.json_response(body, status=error.status, headers=error.headers)


_ANTHROPIC_TYPES = {401: "authentication_error", 403: "permission_error", 404: "not_found_error",
                    413: "request_too_large", 429: "rate_limit_error", 503: "overloaded_error"}  # fmt: skip
"""The Messages API's error type of a status (``invalid_request_error`` for another 4xx,
``api_error`` for another 5xx)."""


def anthropic_error(error: StreamRejected) -> web.Response:
    """The Messages API's error body: ``{"type": "error", "error": {"type", "message"}}``."""
    default = "invalid_request_error" if error.status < 500 else "api_error"
    kind = _ANTHROPIC_TYPES.get(error.status, default)
    body = anthropic_error_body(kind, error.message)
    return web.json_response(body, status=error.status, headers=error.headers)


def guarded(
    path: str,
    handler: Handler,
    *,
    shape: ErrorShape = contract_error,
    starts_streams: bool = False,
    key_header: str | None = None,
) -> Handler:
    """``handler`` behind the guard: the caller admitted (or refused), and a ``StreamRejected``
    the handler raises answered in ``shape``.

    Plugins get this for the routes they add (``register_routes``); ``auth.public_paths`` opens a
    path to everyone. ``starts_streams``: the handler's own refusals are refused stream requests,
    reported to the metrics sinks (the guard's own refusals always are). ``key_header``: a
    header that may carry the API key instead of ``Authorization`` (the Messages API's
    ``x-api-key``)."""

    async def handle(request: web.Request) -> web.StreamResponse:
        try:
            await admit(request, path, key_header)
        except StreamRejected as exc:
            return refuse(request, exc, shape, report=path)
        try:
            return await handler(request)
        except StreamRejected as exc:
            return refuse(request, exc, shape, report=path if starts_streams else None)

    handle.__name__ = getattr(handler, "__name__", "handler")
    return handle


async def admit(request: web.Request, path: str, key_header: str | None = None) -> None:
    """Mark ``request`` for CORS, identify its caller (its key in ``Authorization``, or in
    ``key_header`` if given) and charge its rate limit (or raise)."""
    service = request.app[SERVICE]
    cors = cors_headers(service.config.cors, request.headers.get("Origin"))
    if cors:
        request[_CORS] = cors
    identity = service.access.identify(request, key_header)
    if path not in service.config.auth.public_paths:
        await service.access.check_rate(identity)
    request[KEY_ID] = identity


def refuse(
    request: web.Request,
    error: StreamRejected,
    shape: ErrorShape = contract_error,
    *,
    report: str | None = None,
) -> web.Response:
    """The response to a refusal; ``report`` names the route when the sinks should hear of it."""
    if report is not None:
        request.app[SERVICE].reject(report, error)
    return shape(error)


_RAISES_NO_HTTP_ERRORS: weakref.WeakSet[Handler] = weakref.WeakSet()
"""Route handlers that answer every refusal themselves (``raises_no_http_errors``)."""


def raises_no_http_errors(handler: Handler) -> Handler:
    """Mark a route handler that raises none of aiohttp's ``HTTPException``s (it answers its
    refusals itself): ``json_http_errors`` hands its requests straight on, so a stream it serves
    holds no frame of the middleware's for its whole life."""
    _RAISES_NO_HTTP_ERRORS.add(handler)
    return handler


@web.middleware
def json_http_errors(request: web.Request, handler: Handler) -> Awaitable[web.StreamResponse]:
    """Give aiohttp's own 4xx (404, 405, 413, a WebSocket route without an upgrade) the contract's
    JSON error shape.

    Not a coroutine itself: the request of a route that raises none (``raises_no_http_errors``:
    the stream routes) goes to its handler with no frame of ours in between.
    """
    if request.match_info.handler in _RAISES_NO_HTTP_ERRORS:
        return handler(request)
    return _shaped_http_errors(request, handler)


async def _shaped_http_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
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
        return contract_error(StreamRejected(exc.status, code, message, headers=headers))


CORS_REQUEST_HEADERS = frozenset({
    "authorization", "content-type", "last-event-id", "idempotency-key", "traceparent",
    "tracestate", "x-api-key", "anthropic-version", "anthropic-beta",
    "anthropic-dangerous-direct-browser-access", "openai-organization", "openai-project",
})  # fmt: skip
"""Request headers a page on an allowed origin may always send: the API's own (the key, the resume
point, ``Idempotency-Key``, the trace context) and what the OpenAI and Anthropic SDKs send from a
browser, with every ``x-stainless-*`` one (their platform, retry count and timeout)."""
_ALWAYS_ALLOWED = ("authorization", "content-type", "last-event-id", "idempotency-key")
_EXPOSED = "X-Stream-ID, Retry-After, X-Vercel-AI-UI-Message-Stream"
"""Response headers a page may read beyond the safelisted ones: the stream's id, how long to wait
after a 429 or 503 (the SDKs' retries read it), the AI SDK's protocol header."""


def allowed_request_headers(cors: CorsSettings, requested: str | None) -> str:
    """A preflight's ``Access-Control-Allow-Headers``: those of ``requested`` (the preflight's
    ``Access-Control-Request-Headers``) that a page may send, after the API's own."""
    extra = {name.lower() for name in cors.allow_headers}
    names = (name.strip().lower() for name in (requested or "").split(","))
    allowed = [
        name
        for name in names
        if name in CORS_REQUEST_HEADERS
        or name.startswith("x-stainless-")
        or name in extra
        or ("*" in extra and name)
    ]
    return ", ".join(dict.fromkeys([*_ALWAYS_ALLOWED, *allowed]))


def cors_headers(cors: CorsSettings, origin: str | None) -> dict[str, str]:
    """The CORS response headers for a request from ``origin`` (none if it is not allowed)."""
    if not origin or not cors.origins:
        return {}
    if origin not in cors.origins and "*" not in cors.origins:
        return {}
    allowed = origin if cors.allow_credentials or "*" not in cors.origins else "*"
    headers = {
        "Access-Control-Allow-Origin": allowed,
        "Access-Control-Expose-Headers": _EXPOSED,
        "Vary": "Origin",
    }
    if cors.allow_credentials:
        headers["Access-Control-Allow-Credentials"] = "true"
    return headers


async def add_cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: the CORS headers ``admit`` found for this request."""
    headers = request.get(_CORS)
    if headers:
        response.headers.update(headers)


def preflight(cors: CorsSettings, methods: str) -> Handler:
    """An ``OPTIONS`` handler answering CORS preflights for one path."""

    async def handle(request: web.Request) -> web.StreamResponse:
        headers = cors_headers(cors, request.headers.get("Origin"))
        if not headers:
            return web.Response(status=403)
        requested = request.headers.get("Access-Control-Request-Headers")
        headers.update({
            "Access-Control-Allow-Methods": methods,
            "Access-Control-Allow-Headers": allowed_request_headers(cors, requested),
            "Access-Control-Max-Age": str(cors.max_age_s),
            "Vary": "Origin, Access-Control-Request-Headers",  # the answer reflects them
        })  # fmt: skip
        return web.Response(status=204, headers=headers)

    return handle
