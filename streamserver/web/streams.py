"""The SSE stream routes: start or resume a stream (``/v1/stream``, ``/stream``, ...), resume one
by id (``GET /v1/streams/{id}``), cancel one (``DELETE /v1/streams/{id}``).

A request with ``Last-Event-ID`` (the header, or ``?last_event_id=``) resumes the stream it names
instead of starting a generation; ``last_event_id`` is the one parser of it.
"""

from __future__ import annotations

from aiohttp import web

from ..access import KEY_ID
from ..errors import StreamRejected
from ..request_input import parse_count, parse_stream_params
from ..service import StreamService
from ..settings import RouteSettings
from ..streams import Stream
from ..transports import sse
from .guard import admit, refuse
from .keys import CONNECTIONS, SERVICE, Handler
from .request import idempotency, read_fields


def stream_handler(path: str, route: RouteSettings) -> Handler:
    """The handler of one SSE stream route.

    Not wrapped by ``guarded``: it admits and refuses itself, so a stream holds no extra frame
    for its whole life."""

    async def handle(request: web.Request) -> web.StreamResponse:
        service = request.app[SERVICE]
        try:
            await admit(request, path)
            stream, start = await _resume_or_start(request, service, path, route)
        except StreamRejected as exc:
            return refuse(request, exc, report=path)
        try:
            nothing_left = await service.resume_point(stream, start, "invalid_last_event_id")
        except StreamRejected as exc:
            return refuse(request, exc)
        if nothing_left:
            return web.Response(status=204)  # tells EventSource to stop reconnecting
        return await sse.send_stream(request, stream, start, request.app[CONNECTIONS].writers)

    handle.__name__ = f"stream {path}"
    return handle


async def resume_stream(request: web.Request) -> web.StreamResponse:
    """``GET /v1/streams/{id}``: replay a live or retained stream after ``Last-Event-ID`` (or from the
    start), then follow it live. Never starts a generation."""
    service = request.app[SERVICE]
    stream = await service.find_stream(request.match_info["stream_id"], request[KEY_ID])
    if stream.form != "sse":
        raise StreamRejected(
            400,
            "not_an_sse_stream",
            f"that stream's messages are WebSocket messages: resume it on {stream.route} "
            'with {"type": "resume"}',
        )
    start = 0
    resumed = last_event_id(request)
    if resumed is not None:
        if resumed[0] != stream.id:
            raise StreamRejected(
                400, "invalid_last_event_id", "Last-Event-ID must be '<this stream id>:<seq>'"
            )
        start = resumed[1] + 1
    return await replay(request, service, stream, start, "invalid_last_event_id")


async def replay(
    request: web.Request, service: StreamService, stream: Stream, start: int, bad_code: str
) -> web.StreamResponse:
    """Send ``stream`` from log position ``start`` on and follow it live: 204 when nothing is
    left to send, 410 when those events are gone, 400 with ``bad_code`` past its end."""
    if await service.resume_point(stream, start, bad_code):
        return web.Response(status=204)  # tells EventSource to stop reconnecting
    return await sse.send_stream(request, stream, start, request.app[CONNECTIONS].writers)


async def cancel_stream(request: web.Request) -> web.Response:
    """``DELETE /v1/streams/{id}``: stop a stream; its readers get the route's end events."""
    service = request.app[SERVICE]
    stream = await service.find_stream(request.match_info["stream_id"], request[KEY_ID])
    await service.cancel(stream)
    return web.json_response({"id": stream.id, "cancelled": True})


def last_event_id(request: web.Request) -> tuple[str, int] | None:
    """The ``(stream_id, seq)`` a request resumes after, ``None`` if it resumes nothing, or a 400
    if its ``Last-Event-ID`` (header or ``?last_event_id=``) is not ``<stream_id>:<seq>`` with an
    ASCII-digit ``seq``."""
    value = request.headers.get("Last-Event-ID") or request.query.get("last_event_id")
    if not value:
        return None
    stream_id, sep, seq = value.rpartition(":")
    number = parse_count(seq) if sep and stream_id else None
    if number is None:
        raise StreamRejected(
            400,
            "invalid_last_event_id",
            "Last-Event-ID must look like '<stream_id>:<seq>'",
        )
    return stream_id, number


async def _resume_or_start(
    request: web.Request, service: StreamService, path: str, route: RouteSettings
) -> tuple[Stream, int]:
    resumed = last_event_id(request)
    if resumed is not None:
        stream = await service.find_stream(resumed[0], request[KEY_ID])
        if stream.route != path:  # its events are in that route's shape, not this one's
            raise StreamRejected(
                400,
                "invalid_last_event_id",
                f"that stream belongs to {stream.route}: resume it there or on /v1/streams/{{id}}",
            )
        return stream, resumed[1] + 1
    fields = await read_fields(request, service.config.limits.max_body_bytes)
    key = idempotency(request, fields)
    earlier = await service.started_with(request[KEY_ID], key, path)
    if earlier is not None:  # a retry: the stream the first request started, from its start
        return earlier, 0
    params = parse_stream_params(fields, route, service.config)
    stream = await service.start(
        path,
        route,
        params,
        "sse",
        key_id=request[KEY_ID],
        idempotency=key,
        traceparent=request.headers.get("traceparent"),
    )
    return stream, 0
