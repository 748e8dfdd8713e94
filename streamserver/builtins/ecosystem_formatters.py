"""Built-in formatters for other ecosystems' clients: ``openai``, ``ai-sdk`` and ``text``.

- ``openai``: ``chat.completion.chunk`` objects exactly as the OpenAI API streams them, ending with
  ``data: [DONE]``, so the ``openai`` SDKs (and everything built on them) read streamserver as-is.
- ``ai-sdk``: the Vercel AI SDK UI message stream (v1), so a ``useChat`` front end points at
  streamserver unchanged.
- ``text``: plain text in ``data:`` lines for ``curl`` and shell users. A segment with line breaks
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
from ..types import Event, MessageForm, StreamEnd, StreamFailure, StreamStart
from .formatters import TOKEN_MESSAGE_HEAD, json_text, quote

_DONE_WS = Event(None, '{"type": "done"}')
_DONE_SSE = Event(None, "[DONE]")


def openai_finish_reason(reason: str) -> str:
    """A stream's finish reason as OpenAI names one (``stop`` for what it has no name for)."""
    return reason if reason in ("stop", "length", "content_filter") else "stop"


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

    def end(self, summary: StreamEnd) -> Sequence[Event]:
        """The finish chunk, the usage chunk if asked, then ``[DONE]``."""
        events = [Event(None, self.chunk({}, openai_finish_reason(summary.finish_reason)))]
        if self.include_usage and summary.usage is not None:
            usage = summary.usage
            head = self.head.removesuffix('"choices": [{"index": 0, "delta": ')
            events.append(Event(None, head + '"choices": [], "usage": ' + json_text({
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
                "total_tokens": usage.prompt_tokens + usage.completion_tokens,
            }) + "}"))  # fmt: skip
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


class AISDKFormatter:
    """Vercel AI SDK UI message stream: ``start``, ``start-step``, ``text-start``, ``text-delta``…,
    ``text-end``, ``finish-step``, ``finish``, then ``[DONE]``; header
    ``x-vercel-ai-ui-message-stream: v1``."""

    token_event: str | None = None
    headers: Mapping[str, str] = MappingProxyType({"x-vercel-ai-ui-message-stream": "v1"})

    def __init__(self, options: object, form: MessageForm) -> None:
        self.json = form == "json"

    def start(self, info: StreamStart) -> Sequence[Event]:
        """Opens the message, the step and the text part."""
        return (
            Event(None, json_text({"type": "start", "messageId": "msg_" + info.stream_id})),
            Event(None, '{"type": "start-step"}'),
            Event(None, '{"type": "text-start", "id": "text-1"}'),
        )

    def segment(self, text: str, tokens: int) -> str:
        """A ``text-delta`` part."""
        return '{"type": "text-delta", "id": "text-1", "delta": ' + quote(text) + "}"

    def end(self, summary: StreamEnd) -> Sequence[Event]:
        """Closes the text part and the step; ``finish`` (or ``abort`` when cancelled); ``[DONE]``."""
        last = '{"type": "abort"}' if summary.finish_reason == "cancelled" else '{"type": "finish"}'
        return (
            Event(None, '{"type": "text-end", "id": "text-1"}'),
            Event(None, '{"type": "finish-step"}'),
            Event(None, last),
            _DONE_WS if self.json else _DONE_SSE,
        )

    def error(self, failure: StreamFailure, summary: StreamEnd) -> Sequence[Event]:
        """Closes the text part, then an ``error`` part with ``errorText``, then ``[DONE]``."""
        return (
            Event(None, '{"type": "text-end", "id": "text-1"}'),
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
    register("ai-sdk", AISDKFormatter, description="Vercel AI SDK UI message stream (v1)")
    register(
        "text", TextFormatter, description="plain text data lines; line ends normalised to \\n"
    )
