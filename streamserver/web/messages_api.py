"""streamserver as the Anthropic Messages API: ``POST /v1/messages``.

A route with ``transport = "anthropic"`` speaks it: ``stream: true`` is the API's event stream
(the ``anthropic`` formatter), ``stream: false`` one ``message`` object, both from the same
pipeline as every stream (resume and cancel through ``/v1/streams/{id}``; the message id is
``msg_<stream id>``). The body is read into the pipeline's words by ``messages_request``; errors
use the API's error shape and its key may come as ``x-api-key``, so the ``anthropic`` SDK
pointed at streamserver raises its usual exceptions and sends its usual headers.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from ..builtins.anthropic_formatter import anthropic_usage, stop_reason
from ..errors import StreamRejected
from ..request_input import parse_stream_params
from ..settings import RouteSettings
from ..streams import Stream
from ..transports import sse
from .guard import anthropic_error
from .keys import CONNECTIONS, SERVICE, Handler
from .messages_request import messages_fields
from .openai_api import read_to_end, rejection, start_api_stream
from .request import read_json_body


def messages_handler(path: str, route: RouteSettings) -> Handler:
    """The handler of one ``transport = "anthropic"`` route (guarded in the API's error shape)."""

    async def handle(request: web.Request) -> web.StreamResponse:
        service = request.app[SERVICE]
        body = await read_json_body(request, service.config.limits.max_body_bytes)
        fields, stream_mode = messages_fields(body)
        if fields["model"] not in {m for models in service.models().values() for m in models}:
            raise StreamRejected(404, "model_not_found", f"model: {fields['model']}")
        params = parse_stream_params(fields, route, service.config)
        stream = await start_api_stream(request, path, route, params, body, stream_mode)
        if stream_mode:
            return await sse.send_stream(request, stream, 0, request.app[CONNECTIONS].writers)
        return await _message(stream)

    handle.__name__ = f"messages {path}"
    return handle


async def _message(stream: Stream) -> web.Response:
    """Wait for the stream and answer one ``message`` from its record: its thinking, its text,
    then its tool calls, each one block."""
    record, info = await read_to_end(stream)
    summary = record.summary
    if summary is not None and summary.error is not None:
        return anthropic_error(rejection(summary.error))  # a failed stream, not a refused request
    content: list[dict[str, Any]] = []
    content += [{"type": "thinking", "thinking": thinking, "signature": signature}
                for thinking, signature in record.thinking_blocks()]  # fmt: skip
    text = record.text()
    if text:
        content.append({"type": "text", "text": text})
    for call in record.calls():
        try:
            arguments = json.loads(call.arguments) if call.arguments.strip() else {}
        except ValueError:
            arguments = None
        if not isinstance(arguments, dict):
            failure = f"the arguments of tool call {call.id} are not a JSON object"
            return anthropic_error(StreamRejected(502, "upstream_malformed", failure))
        content.append({"type": "tool_use", "id": call.id, "name": call.name, "input": arguments})
    return web.json_response({
        "id": "msg_" + stream.id,
        "type": "message",
        "role": "assistant",
        "model": info.model,
        "content": content,
        "stop_reason": stop_reason(summary.finish_reason, summary.stop_sequence)
        if summary is not None
        else "end_turn",
        "stop_sequence": summary.stop_sequence if summary is not None else None,
        "usage": anthropic_usage(summary.usage if summary is not None else None),
    })  # fmt: skip
