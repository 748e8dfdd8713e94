"""streamserver as an OpenAI-compatible server: ``POST /v1/chat/completions`` and ``GET /v1/models``.

A route with ``transport = "openai"`` speaks the chat completions API: ``stream: true`` is an SSE
stream of ``chat.completion.chunk`` objects (the route's buffer applied, the usage chunk when
``stream_options.include_usage``, then ``data: [DONE]``); ``stream: false`` is one
``chat.completion``. Errors use OpenAI's error shape, so the SDKs raise their usual exceptions.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from ..builtins.ecosystem_formatters import openai_finish_reason
from ..errors import StreamRejected
from ..request_input import StreamParams, parse_stream_params
from ..service import StreamService
from ..settings import RouteSettings
from ..streams import Stream
from ..transports import sse
from ..types import StreamFailure
from .guard import openai_error
from .keys import CONNECTIONS, SERVICE, Handler
from .request import read_json_body

IGNORED_PARAMETERS = frozenset(
    {"temperature", "top_p", "frequency_penalty", "presence_penalty", "stop", "seed", "user", "logit_bias",
     "parallel_tool_calls", "metadata", "store", "service_tier", "n"}
)  # fmt: skip
"""Parameters accepted for compatibility; the provider's own configuration decides sampling."""
USED_PARAMETERS = frozenset(
    {"model", "messages", "stream", "stream_options", "max_tokens", "max_completion_tokens"}
)


def chat_completions_handler(path: str, route: RouteSettings) -> Handler:
    """The handler of one ``transport = "openai"`` route (guarded in OpenAI's error shape)."""

    async def handle(request: web.Request) -> web.StreamResponse:
        service = request.app[SERVICE]
        body = await read_json_body(request, service.config.limits.max_body_bytes)
        params, stream_mode, include_usage = _params(body, route, service)
        stream = service.start(
            path,
            route,
            params,
            "sse" if stream_mode else "json",
            formatter_options={"include_usage": include_usage},
            keep_record=not stream_mode,
        )
        if stream_mode:
            return await sse.send_stream(request, stream, 0, request.app[CONNECTIONS].writers)
        return await _complete(stream)

    handle.__name__ = f"chat completions {path}"
    return handle


async def models(request: web.Request) -> web.Response:
    """``GET /v1/models``: every model every provider offers, in OpenAI's list shape."""
    service = request.app[SERVICE]
    created = int(service.started_at)
    data = [
        {"id": model, "object": "model", "created": created, "owned_by": provider}
        for provider, models in service.models().items()
        for model in models
    ]
    return web.json_response({"object": "list", "data": data})


def _params(
    body: Mapping[str, Any], route: RouteSettings, service: StreamService
) -> tuple[StreamParams, bool, bool]:
    unknown = sorted(set(body) - USED_PARAMETERS - IGNORED_PARAMETERS)
    if unknown:
        raise StreamRejected(
            400, "unknown_parameter", f"unrecognized request argument supplied: {unknown[0]}"
        )
    if body.get("n", 1) != 1:
        raise StreamRejected(400, "invalid_value", "only n = 1 is supported")
    if not isinstance(body.get("model"), str):
        raise StreamRejected(400, "missing_model", "you must provide a model parameter")
    if body["model"] not in {m for models in service.models().values() for m in models}:
        raise StreamRejected(404, "model_not_found", f"the model {body['model']!r} does not exist")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise StreamRejected(400, "invalid_value", "stream_options must be an object")
    # Never absent or null, so that a missing list is refused as messages, not as a missing prompt.
    fields = {"messages": body.get("messages") or [], "model": body["model"]}
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is not None:
        fields["max_tokens"] = max_tokens
    # The chat completions API always allows choosing the model and max_tokens.
    open_route = dataclasses.replace(route, allow=("model", "max_tokens"))
    params = parse_stream_params(fields, open_route, service.config)
    return params, bool(body.get("stream")), bool(options.get("include_usage"))


async def _complete(stream: Stream) -> web.Response:
    """Wait for the stream and assemble one ``chat.completion`` from its record."""
    log = stream.log
    reader = stream.attach(0)
    try:
        while not log.closed:
            await log.wait(reader.pos)
            log.advance(reader, log.end)  # nothing is sent before the end: the record has it
    finally:
        stream.detach(reader)
    record, info = stream.record, stream.info
    assert record is not None and info is not None  # started with keep_record
    summary = record.summary
    if summary is not None and summary.error is not None:
        return openai_error(_rejection(summary.error))  # a failed stream, not a refused request
    usage = None
    if summary is not None and summary.usage is not None:
        usage = {
            "prompt_tokens": summary.usage.prompt_tokens,
            "completion_tokens": summary.usage.completion_tokens,
            "total_tokens": summary.usage.prompt_tokens + summary.usage.completion_tokens,
        }
    finish = openai_finish_reason(summary.finish_reason if summary is not None else "stop")
    return web.json_response({
        "id": "chatcmpl-" + stream.id,
        "object": "chat.completion",
        "created": int(info.created),
        "model": info.model,
        "system_fingerprint": None,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": record.text(), "refusal": None},
                     "logprobs": None, "finish_reason": finish}],
        "usage": usage,
    })  # fmt: skip


def _rejection(failure: StreamFailure) -> StreamRejected:
    """A failed non-streamed completion as the HTTP error it is: nothing was sent yet, so an
    upstream's rate limit reaches the client as a 429 with its ``Retry-After`` (the SDKs wait and
    retry on it), a shutdown as a 503, anything else as a 502 (a bad gateway)."""
    if failure.code == "upstream_rate_limited":
        headers = {}
        if failure.retry_after_s is not None:
            headers["Retry-After"] = str(math.ceil(failure.retry_after_s))
        return StreamRejected(429, failure.code, failure.message, headers=headers)
    status = 503 if failure.code == "server_shutdown" else 502
    return StreamRejected(status, failure.code, failure.message)
