"""streamserver as the OpenAI Responses API: ``POST /v1/responses``.

A route with ``transport = "responses"`` reads a Responses request (``responses_request.py``)
into the pipeline's stream request: ``stream: true`` is the ``responses`` formatter's semantic
event stream over SSE (its events have ids, so ``Last-Event-ID`` resumes it and ``DELETE
/v1/streams/{id}`` cancels it, as any stream); ``stream: false`` is one Response object, made
from the stream's record. Errors use OpenAI's error shape, so the SDKs raise their usual
exceptions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from ..builtins.responses_formatter import (
    call_item,
    ending,
    message_item,
    reasoning_item,
    response_object,
)
from ..request_input import parse_stream_params
from ..service import StreamService
from ..settings import RouteSettings
from ..streams import Stream
from .guard import openai_error
from .keys import Handler
from .openai_api import Reading, openai_handler, read_to_end, rejection
from .responses_request import read_request


def responses_handler(path: str, route: RouteSettings) -> Handler:
    """The handler of one ``transport = "responses"`` route."""
    return openai_handler(path, route, "responses", _read, _respond)


def _read(body: Mapping[str, Any], route: RouteSettings, service: StreamService) -> Reading:
    asked = read_request(body, service)
    params = parse_stream_params(asked.fields, route, service.config)
    # The formatter's Response objects repeat the request (the options a stream is published with).
    return params, asked.stream, {"request": asked.echo}


async def _respond(stream: Stream, options: Mapping[str, Any]) -> web.Response:
    """Wait for the stream and make one Response from its record: the reasoning, the message,
    then the function calls (the order a model that thinks, answers and calls gives them)."""
    record, info = await read_to_end(stream)
    summary = record.summary
    if summary is not None and summary.error is not None:
        return openai_error(rejection(summary.error))  # a failed stream, not a refused request
    output: list[dict[str, Any]] = []
    if record.reasoning:
        output.append(reasoning_item(f"rs_{info.stream_id}_0", "".join(record.reasoning)))
    text = record.text()
    if text or not record.tool_calls:
        output.append(message_item(f"msg_{info.stream_id}_{len(output)}", text))
    for call in record.calls():
        output.append(call_item(f"fc_{info.stream_id}_{len(output)}", call))
    state = ending(summary) if summary is not None else {"status": "completed"}
    return web.json_response(response_object(info, options["request"], output, **state))
