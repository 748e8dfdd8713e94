"""Built-in formatters for other ecosystems' clients: ``openai``, ``ai-sdk`` and ``text``.

- ``openai``: ``chat.completion.chunk`` objects exactly as the OpenAI API streams them (tool calls
  in ``delta.tool_calls``, reasoning in ``delta.reasoning_content`` as DeepSeek and vLLM send it),
  ending with ``data: [DONE]``, so the ``openai`` SDKs (and everything built on them) read
  streamserver as-is.
- ``ai-sdk``: the Vercel AI SDK UI message stream (v1): text, ``reasoning-*`` and ``tool-input-*``
  parts, so a ``useChat`` front end points at streamserver unchanged.
- ``text``: plain text in ``data:`` lines for ``curl`` and shell users (text only). A segment with line breaks
  becomes several ``data:`` lines, which an SSE parser joins with ``\\n``: ``\\r\\n`` and a bare ``\\r``
  therefore arrive as ``\\n`` (the one shape that normalises line ends; every other is exact).

Each has a WebSocket form: the same JSON objects as messages, then ``{"type": "done"}``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from ..hookspecs import Register, hookimpl
from ..types import Event, MessageForm, PartKind, StreamEnd, StreamFailure, StreamStart, ToolCall
from .formatters import TOKEN_MESSAGE_HEAD, json_text, quote

_DONE_WS = Event(None, '{"type": "done"}')
_DONE_SSE = Event(None, "[DONE]")


_OPENAI_REASONS = frozenset({"stop", "length", "content_filter", "tool_calls", "function_call"})


def openai_finish_reason(reason: str) -> str:
    """A stream's finish reason as OpenAI names one (``stop`` for what it has no name for)."""
    return reason if reason in _OPENAI_REASONS else "stop"


def openai_usage(summary: StreamEnd) -> dict[str, object] | None:
    """OpenAI's usage object for a stream (``None`` when it has none): the upstream's counts, or
    the stream's estimate; the reasoning tokens as the upstream counted them, else our count."""
    usage = summary.usage
    if usage is None:
        return None
    figures: dict[str, object] = {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
    }
    reasoning = usage.reasoning_tokens
    if reasoning is None:
        reasoning = summary.reasoning_tokens
    if reasoning:
        figures["completion_tokens_details"] = {"reasoning_tokens": reasoning}
    return figures


@dataclass(frozen=True, slots=True)
class OpenAIOptions:
    """``[formatters.openai]`` options."""

    include_usage: bool = False
    """Send the usage chunk (as ``stream_options.include_usage`` asks) on every stream."""


class OpenAIFormatter:
    """``chat.completion.chunk`` objects: a role chunk, content chunks, a finish chunk, optionally
    a usage chunk, then ``[DONE]``."""

    token_event: str | None = None

    def __init__(self, options: OpenAIOptions, form: MessageForm) -> None:
        self.include_usage = options.include_usage
        self.json = form == "json"
        self.head = ""
        self.tail = ""

    def chunk(self, delta: dict[str, object], finish_reason: str | None) -> str:
        """One whole chunk object with a given delta (not the hot path)."""
        return (
            self.head
            + json_text(delta)
            + f', "logprobs": null, "finish_reason": {json.dumps(finish_reason)}}}]'
            + (', "usage": null}' if self.include_usage else "}")
        )

    def start(self, info: StreamStart) -> Sequence[Event]:
        """The role chunk; fixes the id, ``created`` and model every later chunk repeats."""
        self.head = (
            f'{{"id": {quote("chatcmpl-" + info.stream_id)}, "object": "chat.completion.chunk", '
            f'"created": {int(info.created)}, "model": {quote(info.model)}, "system_fingerprint": null, '
            '"choices": [{"index": 0, "delta": '
        )
        self.tail = '}, "logprobs": null, "finish_reason": null}]' + (
            ', "usage": null}' if self.include_usage else "}"
        )
        return (Event(None, self.chunk({"role": "assistant", "content": ""}, None)),)

    def segment(self, text: str, tokens: int) -> str:
        """A content chunk."""
        return self.head + '{"content": ' + quote(text) + self.tail

    def reasoning(self, text: str) -> Sequence[Event]:
        """A ``reasoning_content`` chunk (the field DeepSeek and vLLM stream reasoning in)."""
        return (Event(None, self.head + '{"reasoning_content": ' + quote(text) + self.tail),)

    def tool_call_start(self, index: int, call_id: str, name: str) -> Sequence[Event]:
        """The call's first chunk: its index, id, type and name, and empty arguments."""
        call = {"index": index, "id": call_id, "type": "function",
                "function": {"name": name, "arguments": ""}}  # fmt: skip
        return (Event(None, self.chunk({"tool_calls": [call]}, None)),)

    def tool_call_arguments(self, index: int, fragment: str) -> Sequence[Event]:
        """A chunk with one fragment of call ``index``'s arguments."""
        delta = f'{{"tool_calls": [{{"index": {index}, "function": {{"arguments": {quote(fragment)}}}}}]'
        return (Event(None, self.head + delta + self.tail),)  # the tail closes the delta

    def end(self, summary: StreamEnd) -> Sequence[Event]:
        """The finish chunk, the usage chunk if asked, then ``[DONE]``."""
        events = [Event(None, self.chunk({}, openai_finish_reason(summary.finish_reason)))]
        figures = openai_usage(summary) if self.include_usage else None
        if figures is not None:
            head = self.head.removesuffix('"choices": [{"index": 0, "delta": ')
            events.append(Event(None, head + '"choices": [], "usage": ' + json_text(figures) + "}"))
        events.append(_DONE_WS if self.json else _DONE_SSE)
        return events

    def error(self, failure: StreamFailure, summary: StreamEnd) -> Sequence[Event]:
        """OpenAI's error object (the SDKs raise ``APIError`` from it), then ``[DONE]``."""
        error = {
            "error": {
                "message": failure.message,
                "type": "server_error",
                "code": failure.code,
                "param": None,
            }
        }
        return (Event(None, json_text(error)), _DONE_WS if self.json else _DONE_SSE)


@dataclass(frozen=True, slots=True)
class AISDKOptions:
    """``[formatters.ai-sdk]`` options."""

    message_id: str = ""
    """The ``start`` part's ``messageId``; empty: ``msg_<stream id>``. The ``ai-sdk`` route sets
    it per stream to the id of the assistant message a stream continues (the answer after tool
    results), so that ``useChat`` goes on with that message instead of starting a copy."""


_AI_SDK_REASONS = {"stop": "stop", "length": "length", "content_filter": "content-filter",
                   "tool_calls": "tool-calls", "error": "error"}  # fmt: skip
"""A stream's finish reason as the AI SDK names one (``other`` for the rest)."""


class AISDKFormatter:
    """Vercel AI SDK UI message stream: ``start``, ``start-step``, then the parts in the order the
    model produced them (``text-start``/``-delta``/``-end``, ``reasoning-start``/``-delta``/``-end``,
    ``tool-input-start``/``-delta``/``-available``), ``finish-step``, ``finish``, then ``[DONE]``;
    header ``x-vercel-ai-ui-message-stream: v1``. Each text or reasoning part has its own id
    (``text-1``, ``reasoning-1``, ``text-2``...), as the SDK's own server writes them."""

    token_event: str | None = None
    headers: Mapping[str, str] = MappingProxyType({"x-vercel-ai-ui-message-stream": "v1"})

    def __init__(self, options: AISDKOptions, form: MessageForm) -> None:
        self.json = form == "json"
        self.message_id = options.message_id
        self.parts = 0
        self.open_id = ""
        self.delta_head = ""
        """``{"type": "text-delta", "id": <the open text part>, "delta": ``: joined per stream."""
        self.call_ids: dict[int, str] = {}

    def start(self, info: StreamStart) -> Sequence[Event]:
        """Opens the message and the step; each part opens when its content begins."""
        message_id = self.message_id or "msg_" + info.stream_id
        return (
            Event(None, json_text({"type": "start", "messageId": message_id})),
            Event(None, '{"type": "start-step"}'),
        )

    def boundary(self, ended: PartKind | None, starting: PartKind | None) -> Sequence[Event]:
        """Closes the text or reasoning part that ended; opens the one starting."""
        events = []
        if ended == "text" or ended == "reasoning":
            events.append(Event(None, f'{{"type": "{ended}-end", "id": "{self.open_id}"}}'))
        if starting == "text" or starting == "reasoning":
            self.parts += 1
            self.open_id = f"{starting}-{self.parts}"
            events.append(Event(None, f'{{"type": "{starting}-start", "id": "{self.open_id}"}}'))
            self.delta_head = f'{{"type": "{starting}-delta", "id": "{self.open_id}", "delta": '
        return events

    def segment(self, text: str, tokens: int) -> str:
        """A ``text-delta`` part."""
        return self.delta_head + quote(text) + "}"

    def reasoning(self, text: str) -> Sequence[Event]:
        """A ``reasoning-delta`` part."""
        return (Event(None, self.delta_head + quote(text) + "}"),)

    def tool_call_start(self, index: int, call_id: str, name: str) -> Sequence[Event]:
        """``tool-input-start`` with the call's id and the tool's name."""
        self.call_ids[index] = call_id
        return (Event(None, json_text({"type": "tool-input-start", "toolCallId": call_id,
                                       "toolName": name})),)  # fmt: skip

    def tool_call_arguments(self, index: int, fragment: str) -> Sequence[Event]:
        """``tool-input-delta`` with the fragment as ``inputTextDelta``."""
        return (Event(None, json_text({"type": "tool-input-delta",
                                       "toolCallId": self.call_ids[index],
                                       "inputTextDelta": fragment})),)  # fmt: skip

    def tool_call_end(self, call: ToolCall) -> Sequence[Event]:
        """``tool-input-available`` with the parsed input, or ``tool-input-error`` when the
        arguments are not a JSON value (a cut stream, a model that wrote broken JSON)."""
        part: dict[str, object] = {"toolCallId": call.id, "toolName": call.name}
        try:
            part["input"] = json.loads(call.arguments)  # "" too: a call cut before its input
            part = {"type": "tool-input-available", **part}
        except (ValueError, RecursionError) as exc:
            part = {"type": "tool-input-error", **part, "input": call.arguments,
                    "errorText": f"the arguments are not valid JSON: {exc}"}  # fmt: skip
        return (Event(None, json_text(part)),)

    def end(self, summary: StreamEnd) -> Sequence[Event]:
        """Closes the step; ``finish`` with the finish reason (or ``abort`` when cancelled);
        ``[DONE]``."""
        reason = summary.finish_reason
        if reason == "cancelled":
            last = '{"type": "abort"}'
        else:
            last = f'{{"type": "finish", "finishReason": "{_AI_SDK_REASONS.get(reason, "other")}"}}'
        return (
            Event(None, '{"type": "finish-step"}'),
            Event(None, last),
            _DONE_WS if self.json else _DONE_SSE,
        )

    def error(self, failure: StreamFailure, summary: StreamEnd) -> Sequence[Event]:
        """An ``error`` part with ``errorText``, then ``[DONE]`` (the open part is closed first)."""
        return (
            Event(
                None,
                json_text({"type": "error", "errorText": f"{failure.message} ({failure.code})"}),
            ),
            _DONE_WS if self.json else _DONE_SSE,
        )


class TextFormatter:
    """Plain text: each segment is the data of a ``message`` event; ``event: done`` ends it and
    ``event: error`` carries a failure's message. WebSocket form: ``token`` / ``done`` JSON."""

    def __init__(self, options: object, form: MessageForm) -> None:
        self.json = form == "json"
        self.token_event: str | None = None
        self._after_cr = False

    def start(self, info: StreamStart) -> Sequence[Event]:
        """Nothing before the text."""
        return ()

    def segment(self, text: str, tokens: int) -> str | None:
        """The text itself (the SSE encoder splits it into ``data:`` lines)."""
        if self.json:
            return TOKEN_MESSAGE_HEAD + quote(text) + "}"
        # A CRLF split across two segments is one line end: the CR already made it one.
        if self._after_cr and text[:1] == "\n":
            text = text[1:]
        self._after_cr = text[-1:] == "\r"
        return text or None

    def end(self, summary: StreamEnd) -> Sequence[Event]:
        """``event: done`` with the finish reason as its data."""
        if self.json:
            return (
                Event(None, json_text({"type": "done", "finish_reason": summary.finish_reason})),
            )
        return (Event("done", summary.finish_reason),)

    def error(self, failure: StreamFailure, summary: StreamEnd) -> Sequence[Event]:
        """``event: error`` with the message, then ``done``."""
        if self.json:
            return (Event(None, json_text({"type": "error", "error": failure.message, "code": failure.code})),
                    *self.end(summary))  # fmt: skip
        return (Event("error", f"{failure.code}: {failure.message}"), *self.end(summary))


@hookimpl
def register_formatters(register: Register) -> None:
    """Shapes for OpenAI SDK, Vercel AI SDK and plain-text clients."""
    register(
        "openai",
        OpenAIFormatter,
        options=OpenAIOptions,
        description="OpenAI chat.completion.chunk + [DONE]",
    )
    register(
        "ai-sdk",
        AISDKFormatter,
        options=AISDKOptions,
        description="Vercel AI SDK UI message stream (v1)",
    )
    register(
        "text", TextFormatter, description="plain text data lines; line ends normalised to \\n"
    )
