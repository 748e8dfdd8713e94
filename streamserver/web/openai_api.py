"""streamserver as an OpenAI-compatible server: ``POST /v1/chat/completions`` and ``GET /v1/models``.

A route with ``transport = "openai"`` speaks the chat completions API: ``stream: true`` is an SSE
stream of ``chat.completion.chunk`` objects (the route's buffer applied, the usage chunk when
``stream_options.include_usage``, then ``data: [DONE]``); ``stream: false`` is one
``chat.completion``. Errors use OpenAI's error shape, so the SDKs raise their usual exceptions.
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any

from aiohttp import web

from ..access import KEY_ID
from ..builtins.ecosystem_formatters import openai_finish_reason, openai_usage
from ..errors import StreamRejected
from ..record import StreamRecord
from ..request_input import StreamParams, parse_stream_params
from ..service import StreamService
from ..settings import RouteSettings
from ..streams import Stream
from ..transports import sse
from ..types import REQUEST_PARAMETERS, StreamEnd, StreamFailure, StreamStart
from .guard import openai_error
from .keys import CONNECTIONS, SERVICE, Handler
from .request import idempotency, read_json_body

GENERATION_PARAMETERS = ("messages", "model", "max_tokens", "max_completion_tokens",
                         *REQUEST_PARAMETERS)  # fmt: skip
"""What a request may say about the generation: all of it is forwarded (or refused)."""
RESPONSE_PARAMETERS = ("stream", "stream_options", "n")
"""How the answer is sent: SSE chunks or one completion, with a usage chunk; one choice."""
IGNORED_PARAMETERS: dict[str, type] = {
    "metadata": dict,
    "store": bool,
    "service_tier": str,
    "prompt_cache_key": str,
    "prompt_cache_retention": str,
    "safety_identifier": str,
}
"""Accepted for compatibility and ignored, each of its JSON type or null: they change nothing
about what is generated (stored completions, a service tier, a cache key, an abuse-monitoring id)."""
UNHONOURED_PARAMETERS: dict[str, Any] = {
    "logprobs": False,
    "top_logprobs": None,
    "audio": None,
    "modalities": ["text"],
    "prediction": None,
    "web_search_options": None,
    "functions": None,
    "function_call": None,
    "verbosity": None,
    "moderation": None,
}
"""Known parameters this server cannot honour, each with the one value (besides null) that asks
for nothing: any other value is a 400 ``unsupported_parameter`` naming it."""
_KNOWN = frozenset({*GENERATION_PARAMETERS, *RESPONSE_PARAMETERS, *IGNORED_PARAMETERS,
                    *UNHONOURED_PARAMETERS})  # fmt: skip
_TYPE_NAMES = {dict: "an object", bool: "true or false", str: "a string"}


Reading = tuple[StreamParams, bool, dict[str, Any]]
"""An OpenAI API body read: the stream request, whether it is streamed, the formatter's options."""
Reader = Callable[[Mapping[str, Any], RouteSettings, StreamService], Reading]
Completer = Callable[[Stream, Mapping[str, Any]], Awaitable[web.Response]]
"""Makes the one answer of a request that is not streamed (given the formatter's options)."""


def openai_handler(path: str, route: RouteSettings, api: str, read: Reader,
                   complete: Completer) -> Handler:  # fmt: skip
    """The handler of one route serving an OpenAI API: the body ``read`` into a stream request,
    then the stream's SSE events, or one answer made by ``complete``. It is guarded in OpenAI's
    error shape."""

    async def handle(request: web.Request) -> web.StreamResponse:
        service = request.app[SERVICE]
        body = await read_json_body(request, service.config.limits.max_body_bytes)
        params, stream_mode, options = read(body, route, service)
        stream = await start_api_stream(request, path, route, params, body, stream_mode, options)
        if stream_mode:
            return await sse.send_stream(request, stream, 0, request.app[CONNECTIONS].writers)
        return await complete(stream, options)

    handle.__name__ = f"{api} {path}"
    return handle


def chat_completions_handler(path: str, route: RouteSettings) -> Handler:
    """The handler of one ``transport = "openai"`` route."""
    return openai_handler(path, route, "chat completions", _params, _complete)


async def start_api_stream(
    request: web.Request,
    path: str,
    route: RouteSettings,
    params: StreamParams,
    body: Mapping[str, Any],
    stream_mode: bool,
    formatter_options: Mapping[str, Any] | None = None,
) -> Stream:
    """The stream of a vendor API's request (chat completions, Responses, Messages): SSE events
    when ``stream_mode``, else a record to answer from; a retry with the same ``Idempotency-Key``
    (and ``body``) reads the stream the first one started. The request's ``traceparent`` makes
    the stream's span a child of the caller's trace."""
    service = request.app[SERVICE]
    key = idempotency(request, body)
    caller = request[KEY_ID]
    return await service.started_with(caller, key, path) or await service.start(
        path,
        route,
        params,
        "sse" if stream_mode else "json",
        key_id=caller,
        formatter_options=formatter_options,
        keep_record=not stream_mode,
        idempotency=key,
        traceparent=request.headers.get("traceparent"),
    )


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


def check_compatible(
    body: Mapping[str, Any], known: Collection[str], unhonoured: Mapping[str, Any]
) -> None:
    """An OpenAI API body has only ``known`` keys, asks nothing ``unhonoured`` (beyond null or
    the value that asks for nothing) and gives ``IGNORED_PARAMETERS`` of their types; else 400."""
    unknown = sorted(set(body) - set(known))
    if unknown:
        raise StreamRejected(
            400, "unknown_parameter", f"unrecognized request argument supplied: {unknown[0]}"
        )
    for name, wanted in unhonoured.items():
        if body.get(name) not in (None, wanted):
            also = "" if wanted is None else f" or {json.dumps(wanted)}"
            raise StreamRejected(
                400,
                "unsupported_parameter",
                f"this server cannot honour {name!r}: only null{also} is accepted",
            )
    for name, kind in IGNORED_PARAMETERS.items():
        if body.get(name) is not None and not isinstance(body[name], kind):
            raise StreamRejected(
                400, "invalid_field", f"{name!r} must be {_TYPE_NAMES[kind]} or null"
            )


def requested_model(body: Mapping[str, Any], service: StreamService) -> str:
    """The ``model`` an OpenAI API body names: required (400), and offered (else 404)."""
    model = body.get("model")
    if not isinstance(model, str):
        raise StreamRejected(400, "missing_model", "you must provide a model parameter")
    if model not in {m for models in service.models().values() for m in models}:
        raise StreamRejected(404, "model_not_found", f"the model {model!r} does not exist")
    return model


def _params(body: Mapping[str, Any], route: RouteSettings, service: StreamService) -> Reading:
    check_compatible(body, _KNOWN, UNHONOURED_PARAMETERS)
    n = body.get("n")
    if n is not None and (isinstance(n, bool) or n != 1):
        raise StreamRejected(400, "unsupported_parameter", "only n = 1 is supported")
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise StreamRejected(400, "invalid_field", "'stream' must be true or false")
    include_usage = _include_usage(body.get("stream_options"))
    model = requested_model(body, service)
    # Never absent or null, so that a missing list is refused as messages, not as a missing prompt.
    fields = {name: body[name] for name in REQUEST_PARAMETERS if name in body}
    fields.update(messages=body.get("messages") or [], model=model)
    max_tokens = body.get("max_completion_tokens")
    if max_tokens is None:  # absent or null: the older name may have it
        max_tokens = body.get("max_tokens")
    if max_tokens is not None:
        fields["max_tokens"] = max_tokens
    params = parse_stream_params(fields, route, service.config)
    return params, bool(stream), {"include_usage": include_usage}


def _include_usage(options: object) -> bool:
    """``stream_options``: ``include_usage``, and ``include_obfuscation`` (accepted: this
    server adds no obfuscation padding, which changes nothing a client reads)."""
    if options is None:
        return False
    if not isinstance(options, dict):
        raise StreamRejected(400, "invalid_field", "'stream_options' must be an object")
    for key, value in options.items():
        if key not in ("include_usage", "include_obfuscation"):
            raise StreamRejected(
                400,
                "unknown_parameter",
                f"unrecognized request argument supplied: stream_options.{key}",
            )
        if value is not None and not isinstance(value, bool):
            raise StreamRejected(
                400, "invalid_field", f"'stream_options.{key}' must be true or false"
            )
    return bool(options.get("include_usage"))


async def read_to_end(stream: Stream) -> tuple[StreamRecord, StreamStart]:
    """Wait for a stream started with ``keep_record`` to end, as one reader that gets all of
    it (a non-streamed answer carries everything); its record and its start."""
    log = stream.log
    reader = stream.attach(0)
    try:
        while not log.closed:
            await log.wait(reader.pos)
            log.advance(reader, log.end)  # nothing is sent before the end: the record has it
        reader.delivered = reader.pos
    finally:
        stream.detach(reader)
    record, info = stream.record, stream.info
    assert record is not None and info is not None  # started with keep_record
    return record, info


async def _complete(stream: Stream, options: Mapping[str, Any]) -> web.Response:
    """Wait for the stream and assemble one ``chat.completion`` from its record."""
    record, info = await read_to_end(stream)
    summary = record.summary
    if summary is not None and summary.error is not None:
        return openai_error(rejection(summary.error))  # a failed stream, not a refused request
    message: dict[str, Any] = {"role": "assistant", "content": record.text(), "refusal": None}
    calls = record.calls()
    if calls:
        message["content"] = message["content"] or None
        message["tool_calls"] = [call.openai() for call in calls]
    if record.reasoning:
        message["reasoning_content"] = "".join(record.reasoning)
    finish = openai_finish_reason(summary.finish_reason if summary is not None else "stop")
    return web.json_response({
        "id": "chatcmpl-" + stream.id,
        "object": "chat.completion",
        "created": int(info.created),
        "model": info.model,
        "system_fingerprint": None,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": _usage(summary),
    })  # fmt: skip


def _usage(summary: StreamEnd | None) -> dict[str, Any] | None:
    """OpenAI's usage object: the upstream's counts, or the stream's estimate when it gave none."""
    return None if summary is None else openai_usage(summary)


def rejection(failure: StreamFailure) -> StreamRejected:
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
