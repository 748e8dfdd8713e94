"""The contract's JSON error responses, for every refusal before a stream starts."""

from __future__ import annotations

import functools

from aiohttp import web

from ..errors import StreamRejected
from .keys import Handler


def error_response(error: StreamRejected) -> web.Response:
    """``{"error": {"code", "message"}}`` with the error's status and headers."""
    return web.json_response(
        {"error": {"code": error.code, "message": error.message}},
        status=error.status,
        headers=error.headers,
    )


def json_errors(handler: Handler) -> Handler:
    """Turn a ``StreamRejected`` raised by ``handler`` into the JSON error response."""

    @functools.wraps(handler)
    async def handle(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except StreamRejected as exc:
            return error_response(exc)

    return handle
