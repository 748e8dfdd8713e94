"""The WebSocket stream route (``/ws/stream``), and ``serve_route_socket``, which serves a socket
for any route that streams over WebSocket (the chat route too)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..access import KEY_ID
from ..errors import StreamRejected
from ..request_input import parse_stream_params
from ..settings import RouteSettings
from ..streams import Stream
from ..transports import ws
from .keys import CONNECTIONS, SERVICE, Handler


def socket_handler(path: str, route: RouteSettings) -> Handler:
    """The handler of one WebSocket stream route."""

    async def handle(request: web.Request) -> web.StreamResponse:
        service = request.app[SERVICE]

        async def start(fields: dict[str, Any]) -> Stream:
            try:
                params = parse_stream_params(fields, route, service.config)
                return await service.start(
                    path,
                    route,
                    params,
                    "json",
                    key_id=request[KEY_ID],
                    traceparent=request.headers.get("traceparent"),
                )
            except StreamRejected as exc:
                service.reject(path, exc)
                raise

        async def resume(wanted: ws.ResumeRequest) -> Stream:
            if wanted.stream_id is None:
                raise StreamRejected(400, "invalid_resume", "'stream_id' is required")
            stream = await service.find_stream(wanted.stream_id, request[KEY_ID])
            if stream.route != path:  # its messages are in that route's shape
                raise StreamRejected(
                    400, "invalid_resume", f"that stream belongs to {stream.route}: resume it there"
                )
            await service.resume_point(stream, wanted.received, "invalid_resume")
            return stream

        return await serve_route_socket(request, route, start, resume)

    handle.__name__ = f"socket {path}"
    return handle


async def serve_route_socket(
    request: web.Request,
    route: RouteSettings,
    start: ws.StartStream,
    resume: ws.ResumeStream,
    *,
    kinds: tuple[str, ...] = (),
) -> web.StreamResponse:
    """Serve one WebSocket of ``route`` with the server's socket settings and the app's open
    connections (the write batcher, and the sockets closed with 1001 at shutdown). During the
    drain the upgrade is refused with 503."""
    service = request.app[SERVICE]
    service.refuse_if_draining()  # before the upgrade: a 503 a client and a balancer understand
    server = service.config.server
    connections = request.app[CONNECTIONS]
    return await ws.serve_socket(
        request,
        start,
        resume,
        sockets=connections.sockets,
        batcher=connections.writers,
        heartbeat_s=server.ws_heartbeat_s,
        max_message_bytes=server.ws_max_message_bytes,
        send_timeout_s=server.send_timeout_s,
        busy=route.busy,
        kinds=kinds,
    )
