"""A fake OpenAI/Anthropic upstream that tells the truth: a real aiohttp server, scriptable per request.

It speaks OpenAI's chat completions (``POST /v1/chat/completions``) and Anthropic's Messages API
(``POST /v1/messages``), streamed and not, as the real servers write them, and ``GET /v1/models``.
One ``Plan`` says what an answer holds: reasoning (under ``delta.reasoning_content`` or
``delta.reasoning`` for OpenAI-compatible servers, a ``thinking`` block for Anthropic), text, tool
calls (their arguments cut in fragments of a chosen size or at chosen characters), a refusal, the
usage and the finish reason; how it is sent (paced, several events in one network write, or a whole
JSON completion even to a streaming request, as older Ollama did with tools); and how it
misbehaves: 429 with ``Retry-After``, 500, a dropped connection, a stall, a malformed chunk, an
error event mid-stream. Without a plan it echoes the last user message. It records every request
it received and when each streaming connection closed, so tests can prove that cancelling a stream
closes the upstream request. ``streamserver fake-upstream`` runs it for trying the ``openai``
provider without an API key. The wire shapes themselves are in ``fake_formats.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from aiohttp import web
from multidict import CIMultiDict

from ..tokens import tokenize
from .fake_formats import (
    SIGNATURE,
    Answer,
    AnthropicWire,
    OpenAIWire,
    PlannedCall,
    Step,
    fragments,
)

__all__ = ["FakeUpstream", "Plan", "PlannedCall", "Received", "StreamRecord", "run"]

Fault = Literal["rate_limit", "server_error", "drop", "stall", "malformed", "error_event"]


@dataclass
class Plan:
    """How the upstream answers one request (the next queued plan, or the default).

    A streamed answer goes out in this order: the reasoning, the text (the tool calls after
    ``calls_after`` of its pieces), the tool calls one after the other, the refusal, ``raw``.
    """

    tokens: list[str] | None = None
    """Text deltas; ``None`` echoes the last user message in token-sized pieces (no text when the
    plan has tool calls or a refusal)."""
    reasoning: list[str] = field(default_factory=list)
    """Reasoning deltas, streamed before the text."""
    reasoning_field: Literal["reasoning_content", "reasoning"] = "reasoning_content"
    """Where an OpenAI-compatible server puts reasoning: ``delta.reasoning_content`` (DeepSeek,
    vLLM; its text chunks then carry ``reasoning_content: null``) or ``delta.reasoning``
    (OpenRouter, Ollama). The non-streamed ``message`` uses the same name."""
    tool_calls: list[PlannedCall] = field(default_factory=list)
    """The calls, in order (parallel calls get indexes 0, 1, ...)."""
    calls_after: int | None = None
    """How many text deltas go out before the tool calls (``None``: all of them)."""
    arguments_cut: int | tuple[int, ...] = 8
    """How each call's arguments are cut: fragments of this many characters, or at these
    character positions (``(3,)`` sends ``args[:3]`` then ``args[3:]``)."""
    refusal: list[str] | None = None
    """Refusal deltas: OpenAI's ``delta.refusal`` (``message.refusal``); for Anthropic, text that
    ends with ``stop_reason: "refusal"``."""
    raw: list[str] = field(default_factory=list)
    """SSE data sent verbatim after the planned deltas, one event each: a test's own chunks or
    events (a server's quirk, a hostile upstream)."""
    usage: tuple[int, int] | None = None
    """(prompt, completion) tokens reported; ``None``: 5, and one per delta sent."""
    finish_reason: str | None = None
    """In OpenAI's words; ``None``: ``tool_calls`` when the plan has calls, else ``stop``
    (``length`` when ``max_tokens`` cut the text). Anthropic gets its own words for it."""
    stop_sequence: str | None = None
    """The answer ended at this stop sequence: Anthropic's ``stop_reason: "stop_sequence"`` with
    it (OpenAI's ``stop``)."""
    packed: bool = False
    """Send the events in as few network writes as the pacing and faults allow (all at once for
    an unpaced answer), instead of one write per delta."""
    whole_json: bool = False
    """Answer a streaming request with one whole JSON completion (``application/json``)."""
    fault: Fault | None = None
    after_tokens: int = 0
    """For mid-stream faults: how many deltas (reasoning, text, call starts, argument fragments)
    go out first."""
    retry_after_s: float = 0.05
    stall_s: float = 30.0
    ttft_s: float = 0.0
    gap_s: float = 0.0


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
    """If set, requests must carry ``Authorization: Bearer <api_key>`` (Anthropic: ``x-api-key``)."""
    echo_tools: bool = False
    """A request that offers ``tools`` and gets the default plan is answered with one call of its
    first tool whose arguments, ``{"echo": "<the prompt>"}``, arrive in one fragment per prompt
    token (``streamserver fake-upstream`` turns this on: a tool-call stream from the CLI)."""

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

    async def _received(self, request: web.Request) -> dict[str, Any]:
        body: dict[str, Any] = await request.json()
        self.requests.append(
            Received(request.path, CIMultiDict(request.headers), body, time.monotonic())
        )
        return body

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        """OpenAI's chat completions, streamed (``stream: true``) or one ``chat.completion``."""
        body = await self._received(request)
        if (
            self.api_key is not None
            and request.headers.get("Authorization") != f"Bearer {self.api_key}"
        ):
            return _error(
                401, "Incorrect API key provided", "invalid_request_error", "invalid_api_key"
            )
        plan = self.plans.popleft() if self.plans else self.default
        if plan is self.default and self.echo_tools and body.get("tools"):
            plan = _tool_echo(plan, body)
        if plan.fault == "rate_limit":
            return _error(429, "Rate limit reached", "requests", "rate_limit_exceeded",
                          headers={"Retry-After": f"{plan.retry_after_s:g}"})  # fmt: skip
        if plan.fault == "server_error":
            return _error(500, "The server had an error", "server_error", None)
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        answer = _answer(plan, _last_user_text(body), limit)
        wire = OpenAIWire(
            f"chatcmpl-fake{len(self.requests)}",
            body.get("model", self.models[0]),
            include_usage=bool((body.get("stream_options") or {}).get("include_usage")),
            reasoning_field=plan.reasoning_field,
            null_reasoning=bool(plan.reasoning) and plan.reasoning_field == "reasoning_content",
        )
        if plan.whole_json or not body.get("stream"):
            return web.json_response(wire.whole(answer))
        return await self._stream(request, plan, answer, wire)

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        """Anthropic's Messages API, streamed (``stream: true``) or one whole message."""
        body = await self._received(request)
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
        refused = _unsigned_thinking(body)
        if refused is not None:
            return _anthropic_error(400, "invalid_request_error", refused)
        answer = _answer(plan, _last_user_text(body), body.get("max_tokens"))
        wire = AnthropicWire(f"msg_fake{len(self.requests)}", body.get("model", self.models[0]))
        if plan.whole_json or not body.get("stream"):
            return web.json_response(wire.whole(answer))
        return await self._stream(request, plan, answer, wire)

    async def _stream(
        self, request: web.Request, plan: Plan, answer: Answer, wire: OpenAIWire | AnthropicWire
    ) -> web.StreamResponse:
        """Stream ``answer`` in ``wire``'s format, paced and faulted as ``plan`` says."""
        record = StreamRecord(time.monotonic())
        self.streams.append(record)
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        out = _Writes(response, packed=plan.packed)
        steps = answer.steps
        with _recorded(record):
            await response.prepare(request)
            await out.send(wire.opening(answer))
            if plan.ttft_s:
                await out.flush()
                await asyncio.sleep(plan.ttft_s)
            loop = asyncio.get_running_loop()
            # Paced on a schedule (delta i at i gaps after the first), not by a sleep per gap:
            # each write's time and each wake-up's lateness would add up to a slower pace.
            paced_from, first = loop.time(), 0
            for i, step in enumerate(steps):
                if plan.fault is not None and i == plan.after_tokens:
                    if await self._fault(plan, out, wire, request):
                        return response
                    paced_from, first = loop.time(), max(i - 1, 0)  # a stall shifts the rest
                if plan.gap_s and i:
                    await out.flush()
                    await asyncio.sleep(
                        max(0.0, paced_from + (i - first) * plan.gap_s - loop.time())
                    )
                await out.send(wire.step(step))
                record.tokens_sent += 1
            ending = plan.fault is not None and plan.after_tokens >= len(steps)
            if ending and await self._fault(plan, out, wire, request):
                return response
            await out.send(wire.closing(answer))
            await out.flush()
            await response.write_eof()
        return response

    async def _fault(
        self, plan: Plan, out: _Writes, wire: OpenAIWire | AnthropicWire, request: web.Request
    ) -> bool:
        """Misbehave mid-stream; True when the response must end here."""
        await out.flush()  # what went before the fault is on the wire
        if plan.fault == "drop":
            assert request.transport is not None
            request.transport.abort()
            return True
        if plan.fault == "stall":
            await asyncio.sleep(plan.stall_s)
            return False
        if plan.fault == "malformed":
            await out.send(wire.malformed())
            return False
        if plan.fault == "error_event":
            await out.send(wire.error_event())
            await out.flush()
            await out.response.write_eof()
            return True
        return False


class _Writes:
    """A response's writes: each piece at once, or (``packed``) gathered into one write until the
    answer pauses (pacing, a fault) or ends."""

    def __init__(self, response: web.StreamResponse, *, packed: bool) -> None:
        self.response = response
        self.packed = packed
        self._pending: list[bytes] = []

    async def send(self, data: bytes) -> None:
        if self.packed:
            self._pending.append(data)
        else:
            await self.response.write(data)

    async def flush(self) -> None:
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            await self.response.write(data)


def _answer(plan: Plan, prompt: str, limit: int | None) -> Answer:
    """What ``plan`` says, in order, for a request whose last user message is ``prompt``."""
    tokens = plan.tokens
    if tokens is None:
        tokens = [] if plan.tool_calls or plan.refusal else tokenize(prompt)
    finish = plan.finish_reason or ("tool_calls" if plan.tool_calls else "stop")
    if limit is not None and len(tokens) > limit:
        tokens, finish = tokens[:limit], "length"
    split = len(tokens) if plan.calls_after is None else min(plan.calls_after, len(tokens))
    steps = [Step("reasoning", text) for text in plan.reasoning]
    steps += [Step("text", text) for text in tokens[:split]]
    for index, call in enumerate(plan.tool_calls):
        steps.append(Step("call", index=index, call=call))
        steps += [Step("arguments", fragment, index=index)
                  for fragment in fragments(call.arguments, plan.arguments_cut)]  # fmt: skip
    steps += [Step("text", text) for text in tokens[split:]]
    steps += [Step("refusal", text) for text in plan.refusal or ()]
    steps += [Step("raw", data) for data in plan.raw]
    prompt_tokens, completion_tokens = plan.usage or (
        5,
        sum(1 for step in steps if step.kind != "raw"),
    )
    return Answer(steps, finish, prompt_tokens, completion_tokens, plan.reasoning_field,
                  plan.stop_sequence if finish == "stop" else None)  # fmt: skip


def _tool_echo(plan: Plan, body: dict[str, Any]) -> Plan:
    """``plan`` answering with one call of the request's first tool, its arguments the prompt's
    tokens as JSON-string fragments: ``{"echo": "w0``, `` w1``, ..., `` wN"}`` (one per token)."""
    tokens = tokenize(_last_user_text(body))
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    if limit is not None:  # the call's opening chunk (its name) is a token, as a real model's
        tokens = tokens[: max(limit - 1, 0)]
    pieces = [json.dumps(token)[1:-1] for token in tokens] or [""]
    pieces[0] = '{"echo": "' + pieces[0]
    pieces[-1] += '"}'
    cuts = tuple(itertools.accumulate(len(piece) for piece in pieces[:-1]))
    name = ((body["tools"][0] or {}).get("function") or {}).get("name", "echo")
    call = PlannedCall("call_echo", name, "".join(pieces))
    return replace(plan, tokens=[], tool_calls=[call], arguments_cut=cuts)


def _last_user_text(body: dict[str, Any]) -> str:
    """The text of the request's last user message (its text parts, for a list of parts)."""
    users = [m.get("content", "") for m in body.get("messages", []) if m.get("role") == "user"]
    last = users[-1] if users else ""
    if isinstance(last, str):
        return last
    return "".join(part.get("text", "") for part in last if isinstance(part, dict))


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


def _unsigned_thinking(body: dict[str, Any]) -> str | None:
    """What Anthropic says of a thinking request whose thinking blocks it would refuse: one not
    signed by it (here: not ``SIGNATURE``), or a last assistant turn that called tools without
    the thinking block before its calls; None if it would take it."""
    messages = [m for m in body.get("messages") or () if isinstance(m, dict)]
    for i, message in enumerate(messages):
        content = message.get("content")
        for j, block in enumerate(content if isinstance(content, list) else ()):
            thinking = isinstance(block, dict) and block.get("type") == "thinking"
            if thinking and block.get("signature") != SIGNATURE:
                return f"messages.{i}.content.{j}: Invalid `signature` in `thinking` block"
    if (body.get("thinking") or {}).get("type") != "enabled":
        return None
    last = next((m for m in reversed(messages) if m.get("role") == "assistant"), None)
    content = last.get("content") if last is not None else None
    blocks = [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []
    if not any(b.get("type") == "tool_use" for b in blocks):
        return None
    if blocks[0].get("type") in ("thinking", "redacted_thinking"):
        return None
    return ("messages: a final assistant message must start with a thinking block when "
            "`thinking` is enabled and it has tool_use blocks")  # fmt: skip


def _anthropic_error(
    status: int, kind: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    body = {"type": "error", "error": {"type": kind, "message": message}}
    return web.json_response(body, status=status, headers=headers)


def run(host: str = "127.0.0.1", port: int = 8099, tokens_per_second: float = 30.0) -> None:
    """Serve a fake upstream until interrupted (``streamserver fake-upstream``)."""
    upstream = FakeUpstream(
        default=Plan(ttft_s=0.2, gap_s=1 / tokens_per_second if tokens_per_second else 0),
        echo_tools=True,
    )
    print(
        f"fake OpenAI upstream on http://{host}:{port}/v1 (models: {', '.join(upstream.models)})",
        flush=True,
    )
    web.run_app(upstream.app(), host=host, port=port, handler_cancellation=True, print=None)
