"""The Responses API's retrieve and cancel: ``GET /v1/responses/{id}`` and ``POST
/v1/responses/{id}/cancel``, from the stream's own event log (memory or Redis store).

A response's id is ``resp_<stream id>``, and its events' ``sequence_number`` is their position in
the stream's log, so:

- ``GET {route}/{id}`` is the latest Response object the stream has sent (``response.created`` or
  ``in_progress`` while it runs, with its output items as far as they have formed: the events
  since applied to it; ``response.completed``, ``incomplete`` or ``failed``, with all of it,
  once it has ended);
- ``GET {route}/{id}?stream=true`` replays the semantic events from the start and follows live,
  ``&starting_after=N`` after sequence number N (a resume, exactly as ``Last-Event-ID``);
- ``POST {route}/{id}/cancel`` cancels the generation (on whichever instance runs it) and answers
  the Response with ``status: "cancelled"``.

An unknown id (or another route's stream) is a 404 in OpenAI's error shape.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from ..access import KEY_ID
from ..errors import StreamRejected
from ..request_input import parse_count
from ..service import StreamService
from ..streams import Stream
from .keys import SERVICE, Handler
from .streams import replay

_PREFIX = "resp_"
_WAIT_S = 5.0
"""How long a retrieve waits for a stream on another instance to show its first event, and a
cancel for the cancelled stream to send its last."""


def retrieve_handlers(path: str) -> dict[tuple[str, str], Handler]:
    """The retrieve and cancel handlers of the ``responses`` route at ``path``."""

    async def retrieve(request: web.Request) -> web.StreamResponse:
        service = request.app[SERVICE]
        stream = await _find(request, service, path)
        if request.query.get("stream", "false").lower() in ("true", "1"):
            if stream.form != "sse":
                raise StreamRejected(
                    400,
                    "not_a_streamed_response",
                    "that response was not streamed: retrieve it without stream=true",
                )
            start = 0
            after = request.query.get("starting_after")
            if after is not None:
                number = parse_count(after)
                if number is None:
                    raise StreamRejected(
                        400, "invalid_field", "'starting_after' must be a sequence number"
                    )
                start = number + 1
            return await replay(request, service, stream, start, "invalid_starting_after")
        return web.json_response(await _latest(stream))

    async def cancel(request: web.Request) -> web.Response:
        service = request.app[SERVICE]
        stream = await _find(request, service, path)
        await service.cancel(stream)  # 409 if it has already ended
        response = await _latest(stream, until_end=True)
        response["status"] = "cancelled"
        return web.json_response(response)

    return {("GET", f"{path}/{{response_id}}"): retrieve,
            ("POST", f"{path}/{{response_id}}/cancel"): cancel}  # fmt: skip


async def _find(request: web.Request, service: StreamService, path: str) -> Stream:
    response_id = request.match_info["response_id"]
    stream = None
    if response_id.startswith(_PREFIX):
        try:
            stream = await service.find_stream(response_id[len(_PREFIX) :], request[KEY_ID])
        except StreamRejected:
            stream = None
    if stream is None or stream.route != path:
        raise StreamRejected(404, "response_not_found", f"no response with id {response_id!r}")
    return stream


async def _latest(stream: Stream, *, until_end: bool = False) -> dict[str, Any]:
    """The last Response object among the stream's events (after its end, with ``until_end``,
    waiting up to ``_WAIT_S``). A stream here is read from its log as it is; a replica (run by
    another instance) is followed until it shows its events."""
    log = stream.log
    reader = stream.attach(0) if stream.replica else None
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _WAIT_S
        while not log.closed and (until_end or log.end == 0):
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                await asyncio.wait_for(log.wait(log.end), remaining)
            except TimeoutError:
                break
        items = log.read(log.oldest)
    finally:
        if reader is not None:
            stream.detach(reader)
    for at in range(len(items) - 1, -1, -1):
        response = _response_of(items[at])
        if response is not None:
            if response.get("status") == "in_progress" and at + 1 < len(items):
                response["output"] = _formed(list(response.get("output") or ()), items[at + 1 :])
            return response
    raise StreamRejected(404, "response_not_found", "that response's events are no longer kept")


def _formed(output: list[Any], items: list[bytes | str]) -> list[Any]:
    """``output`` with the events that followed it applied: the output items of a response that
    is still running as far as they have formed (text, reasoning summary and arguments so far),
    as OpenAI's retrieve of an in-progress response shows them."""
    for item in items:
        text = item.decode() if isinstance(item, bytes) else item
        for line in text.split("\n"):
            if not line.startswith("data: {"):
                continue
            event = json.loads(line[6:])
            kind, index = event.get("type"), event.get("output_index")
            if not isinstance(index, int) or not 0 <= index <= len(output):
                continue
            if kind in ("response.output_item.added", "response.output_item.done"):
                output[index : index + 1] = [event["item"]]
                continue
            if index == len(output):
                continue  # an event of an item whose start is no longer kept
            formed = output[index]
            if kind in ("response.content_part.added", "response.content_part.done"):
                _put(formed.setdefault("content", []), event.get("content_index"), event["part"])
            elif kind in ("response.reasoning_summary_part.added",
                          "response.reasoning_summary_part.done"):  # fmt: skip
                _put(formed.setdefault("summary", []), event.get("summary_index"), event["part"])
            elif kind == "response.output_text.delta":
                _extend(formed.get("content"), event.get("content_index"), event["delta"])
            elif kind == "response.reasoning_summary_text.delta":
                _extend(formed.get("summary"), event.get("summary_index"), event["delta"])
            elif kind == "response.function_call_arguments.delta":
                formed["arguments"] = formed.get("arguments", "") + event["delta"]
    return output


def _put(parts: list[Any], index: object, part: Any) -> None:
    if isinstance(index, int) and 0 <= index <= len(parts):
        parts[index : index + 1] = [part]


def _extend(parts: object, index: object, delta: str) -> None:
    if isinstance(parts, list) and isinstance(index, int) and 0 <= index < len(parts):
        parts[index]["text"] = parts[index].get("text", "") + delta


def _response_of(item: bytes | str) -> dict[str, Any] | None:
    """The ``response`` object one event carries (an SSE event, or the JSON message of a
    response that was not streamed), if any."""
    text = item.decode() if isinstance(item, bytes) else item
    if text.startswith("{"):
        payload = json.loads(text)
        response = payload.get("response") if isinstance(payload, dict) else None
        return response if isinstance(response, dict) else None
    for line in text.split("\n"):
        if line.startswith("data: ") and '"response": {' in line:
            payload = json.loads(line[6:])
            response = payload.get("response")
            return response if isinstance(response, dict) else None
    return None
