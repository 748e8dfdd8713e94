"""A fake OpenAI-compatible upstream that tells the truth: a real aiohttp server, scriptable per request.

It speaks the OpenAI chat completions wire format (streaming and not), Anthropic's streaming Messages
API (``POST /v1/messages``) and ``GET /v1/models``, echoes
the last user message back unless told otherwise, and can misbehave on cue: 429 with ``Retry-After``,
500, a dropped connection, a stall, a malformed chunk, an error event mid-stream. It records every
request it received and when each streaming connection closed, so tests can prove that cancelling a
stream closes the upstream request. ``streamserver fake-upstream`` runs it for trying the ``openai``
provider without an API key.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web
from multidict import CIMultiDict

from ..tokens import tokenize

Fault = Literal["rate_limit", "server_error", "drop", "stall", "malformed", "error_event"]


@dataclass
class Plan:
    """How the upstream answers one request (the next queued plan, or the default)."""

    tokens: list[str] | None = None
    """Content deltas; ``None`` echoes the last user message in token-sized pieces."""
    fault: Fault | None = None
    after_tokens: int = 0
    """For mid-stream faults: how many tokens go out first."""
    retry_after_s: float = 0.05
    stall_s: float = 30.0
    ttft_s: float = 0.0
    gap_s: float = 0.0
    finish_reason: str = "stop"


@dataclass
class Received:
    """One request the upstream received."""

    path: str
    headers: CIMultiDict[str]
    """Case-insensitive, as HTTP header names are."""
    body: dict[str, Any]
    at: float


@dataclass
class StreamRecord:
    """What happened to one streaming response."""

    opened_at: float
    closed_at: float | None = None
    tokens_sent: int = 0
    client_closed: bool = False
    """True when the client went away before the response was complete."""


@dataclass
class FakeUpstream:
    """The fake server's behaviour and records. ``app()`` builds the aiohttp application."""

    models: tuple[str, ...] = ("fake-model", "fake-model-mini")
    default: Plan = field(default_factory=Plan)
    plans: deque[Plan] = field(default_factory=deque)
    requests: list[Received] = field(default_factory=list)
    streams: list[StreamRecord] = field(default_factory=list)
    api_key: str | None = None
    """If set, requests must carry ``Authorization: Bearer <api_key>``."""

    def queue(self, *plans: Plan) -> None:
        """Answer the next requests with these plans, in order."""
        self.plans.extend(plans)

    def app(self) -> web.Application:
        """The aiohttp application (run it with ``handler_cancellation=True``)."""
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/messages", self._messages)
        app.router.add_get("/v1/models", self._models)
        return app

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "object": "list",
                "data": [
                    {"id": m, "object": "model", "created": 0, "owned_by": "fake"}
                    for m in self.models
                ],
            }
        )

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(
            Received(request.path, CIMultiDict(request.headers), body, time.monotonic())
        )
        if (
            self.api_key is not None
            and request.headers.get("Authorization") != f"Bearer {self.api_key}"
        ):
            return _error(
                401, "Incorrect API key provided", "invalid_request_error", "invalid_api_key"
            )
        plan = self.plans.popleft() if self.plans else self.default
        if plan.fault == "rate_limit":
            return _error(429, "Rate limit reached", "requests", "rate_limit_exceeded",
                          headers={"Retry-After": f"{plan.retry_after_s:g}"})  # fmt: skip
        if plan.fault == "server_error":
            return _error(500, "The server had an error", "server_error", None)
        if plan.tokens is not None:
            tokens = plan.tokens
        else:
            users = [
                m.get("content", "") for m in body.get("messages", []) if m.get("role") == "user"
            ]
            tokens = tokenize(users[-1] if users else "")
        if "max_tokens" in body or "max_completion_tokens" in body:
            limit = body.get("max_completion_tokens") or body.get("max_tokens")
            if len(tokens) > limit:
                tokens, plan = tokens[:limit], Plan(**{**plan.__dict__, "finish_reason": "length"})
        chunk_id = f"chatcmpl-fake{len(self.requests)}"
        model = body.get("model", self.models[0])
        if not body.get("stream"):
            return web.json_response(
                _completion(chunk_id, model, "".join(tokens), plan.finish_reason, len(tokens))
            )
        return await self._stream(request, plan, tokens, chunk_id, model, body)

    async def _stream(
        self,
        request: web.Request,
        plan: Plan,
        tokens: list[str],
        chunk_id: str,
        model: str,
        body: dict[str, Any],
    ) -> web.StreamResponse:
        record = StreamRecord(time.monotonic())
        self.streams.append(record)
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        base = {"id": chunk_id, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
                "system_fingerprint": None}  # fmt: skip

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            payload = {
                **base,
                "choices": [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
                ],
            }
            if include_usage:
                payload["usage"] = None
            return b"data: " + json.dumps(payload).encode() + b"\n\n"

        with _recorded(record):
            await response.prepare(request)
            await response.write(chunk({"role": "assistant", "content": "", "refusal": None}))
            if plan.ttft_s:
                await asyncio.sleep(plan.ttft_s)
            for i, token in enumerate(tokens):
                if (
                    plan.fault is not None
                    and i == plan.after_tokens
                    and await self._fault(plan, response, request)
                ):
                    return response
                if plan.gap_s and i:
                    await asyncio.sleep(plan.gap_s)
                await response.write(chunk({"content": token}))
                record.tokens_sent += 1
            ending = plan.fault is not None and plan.after_tokens >= len(tokens)
            if ending and await self._fault(plan, response, request):
                return response
            await response.write(chunk({}, plan.finish_reason))
            if include_usage:
                usage = {
                    "prompt_tokens": 5,
                    "completion_tokens": len(tokens),
                    "total_tokens": 5 + len(tokens),
                }
                await response.write(
                    b"data: "
                    + json.dumps({**base, "choices": [], "usage": usage}).encode()
                    + b"\n\n"
                )
            await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
        return response

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        """Anthropic's Messages API, streaming only (what the ``anthropic`` provider uses)."""
        body = await request.json()
        self.requests.append(
            Received(request.path, CIMultiDict(request.headers), body, time.monotonic())
        )
        sent = request.headers.get("x-api-key") or request.headers.get(
            "Authorization", ""
        ).removeprefix("Bearer ")
        if self.api_key is not None and sent != self.api_key:
            return _anthropic_error(401, "authentication_error", "invalid x-api-key")
        plan = self.plans.popleft() if self.plans else self.default
        if plan.fault == "rate_limit":
            return _anthropic_error(429, "rate_limit_error", "Rate limit reached",
                                    headers={"retry-after": f"{plan.retry_after_s:g}"})  # fmt: skip
        if plan.fault == "server_error":
            return _anthropic_error(500, "api_error", "Internal server error")
        if plan.tokens is not None:
            tokens = plan.tokens
        else:
            users = [
                m.get("content", "") for m in body.get("messages", []) if m.get("role") == "user"
            ]
            last = users[-1] if users else ""
            tokens = tokenize(
                last if isinstance(last, str) else "".join(b.get("text", "") for b in last)
            )
        stop = "end_turn"
        if len(tokens) > body.get("max_tokens", 1 << 30):
            tokens, stop = tokens[: body["max_tokens"]], "max_tokens"
        record = StreamRecord(time.monotonic())
        self.streams.append(record)
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )

        def event(name: str, payload: dict[str, Any]) -> bytes:
            return f"event: {name}\ndata: {json.dumps(payload)}\n\n".encode()

        message = {"id": f"msg_fake{len(self.requests)}", "type": "message", "role": "assistant", "content": [],
                   "model": body.get("model"), "stop_reason": None, "stop_sequence": None,
                   "usage": {"input_tokens": 5, "output_tokens": 1}}  # fmt: skip
        with _recorded(record):
            await response.prepare(request)
            await response.write(
                event("message_start", {"type": "message_start", "message": message})
            )
            block = {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            }
            await response.write(event("content_block_start", block))
            await response.write(event("ping", {"type": "ping"}))
            if plan.ttft_s:
                await asyncio.sleep(plan.ttft_s)
            for i, token in enumerate(tokens):
                if plan.fault == "error_event" and i == plan.after_tokens:
                    error = {
                        "type": "error",
                        "error": {"type": "overloaded_error", "message": "Overloaded"},
                    }
                    await response.write(event("error", error))
                    await response.write_eof()
                    return response
                if plan.fault == "drop" and i == plan.after_tokens:
                    assert request.transport is not None
                    request.transport.abort()
                    return response
                if plan.gap_s and i:
                    await asyncio.sleep(plan.gap_s)
                delta = {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": token},
                }
                await response.write(event("content_block_delta", delta))
                record.tokens_sent += 1
            await response.write(
                event("content_block_stop", {"type": "content_block_stop", "index": 0})
            )
            await response.write(event("message_delta", {"type": "message_delta",
                                                         "delta": {"stop_reason": stop, "stop_sequence": None},
                                                         "usage": {"output_tokens": len(tokens)}}))  # fmt: skip
            await response.write(event("message_stop", {"type": "message_stop"}))
            await response.write_eof()
        return response

    async def _fault(self, plan: Plan, response: web.StreamResponse, request: web.Request) -> bool:
        """Misbehave mid-stream; True when the response must end here."""
        if plan.fault == "drop":
            assert request.transport is not None
            request.transport.abort()
            return True
        if plan.fault == "stall":
            await asyncio.sleep(plan.stall_s)
            return False
        if plan.fault == "malformed":
            await response.write(b'data: {"id": "broken", "choices": [\n\n')
            return False
        if plan.fault == "error_event":
            error = {
                "error": {
                    "message": "The upstream model overloaded",
                    "type": "server_error",
                    "code": "overloaded",
                }
            }
            await response.write(b"data: " + json.dumps(error).encode() + b"\n\n")
            await response.write_eof()
            return True
        return False


@contextlib.contextmanager
def _recorded(record: StreamRecord) -> Iterator[None]:
    """Note in ``record`` when the stream ended, and whether the client went away first."""
    try:
        yield
    except (asyncio.CancelledError, ConnectionError):
        record.client_closed = True
        raise
    finally:
        record.closed_at = time.monotonic()


def _error(
    status: int, message: str, kind: str, code: str | None, headers: dict[str, str] | None = None
) -> web.Response:
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return web.json_response(body, status=status, headers=headers)


def _anthropic_error(
    status: int, kind: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    body = {"type": "error", "error": {"type": kind, "message": message}}
    return web.json_response(body, status=status, headers=headers)


def _completion(chunk_id: str, model: str, text: str, finish: str, tokens: int) -> dict[str, Any]:
    return {
        "id": chunk_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": None,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": finish,
            }
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": tokens, "total_tokens": 5 + tokens},
    }


def run(host: str = "127.0.0.1", port: int = 8099, tokens_per_second: float = 30.0) -> None:
    """Serve a fake upstream until interrupted (``streamserver fake-upstream``)."""
    upstream = FakeUpstream(
        default=Plan(ttft_s=0.2, gap_s=1 / tokens_per_second if tokens_per_second else 0)
    )
    print(
        f"fake OpenAI upstream on http://{host}:{port}/v1 (models: {', '.join(upstream.models)})",
        flush=True,
    )
    web.run_app(upstream.app(), host=host, port=port, handler_cancellation=True, print=None)
