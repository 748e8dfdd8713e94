"""OpenAI's chat completion chunks and completions read into parts (the ``openai`` provider's).

A delta's ``reasoning_content`` (DeepSeek, vLLM) or ``reasoning`` (OpenRouter, Ollama) is
``Reasoning``; ``content`` and ``refusal`` are text; each entry of ``tool_calls`` is a
``ToolCallDelta`` at its ``index``. What real servers get wrong is mended where its meaning is
plain, and refused with ``upstream_malformed`` where it is not (see ``ToolCalls``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from ..types import Delta, Finish, Reasoning, ToolCallDelta, Usage
from .upstream_errors import malformed


def delta_parts(delta: Mapping[str, Any], calls: ToolCalls) -> list[Delta]:
    """The parts of one chunk's ``delta`` (or a whole ``message``) in the order a reader
    expects: reasoning, text, then ``later_parts``. ``null``s and non-strings are skipped.
    (The provider's chunk loop inlines the first two.)"""
    parts: list[Delta] = []
    reasoning = delta.get("reasoning_content") or delta.get("reasoning")
    if reasoning and type(reasoning) is str:
        parts.append(Reasoning(reasoning))
    content = delta.get("content")
    if content and type(content) is str:
        parts.append(content)
    parts.extend(later_parts(delta, calls))
    return parts


def later_parts(delta: Mapping[str, Any], calls: ToolCalls) -> Sequence[Delta]:
    """A delta's refusal (relayed as text: it is what the model said), then its tool calls.
    Once per fragment of a call's arguments: no list but the one returned."""
    entries = delta.get("tool_calls")
    refusal = delta.get("refusal")
    if not refusal or type(refusal) is not str:
        return calls.deltas(entries) if entries else ()
    return [refusal, *calls.deltas(entries)] if entries else [refusal]


class ToolCalls:
    """The tool calls of one answer so far, for what some servers leave out.

    An entry without ``index`` (Gemini's OpenAI-compatible API, some proxies) continues the last
    call unless it names a new ``id``, which starts the next one. ``arguments`` sent as a JSON
    object rather than its text are written as JSON text. Anything else out of shape (an index
    that is not a number, a name that is not a string) is ``upstream_malformed``.
    """

    __slots__ = ("count", "last", "last_id")

    def __init__(self) -> None:
        self.count = 0
        """How many calls the answer has started (the highest index + 1)."""
        self.last = 0
        self.last_id: str | None = None

    def deltas(self, entries: Any) -> list[ToolCallDelta]:
        """The ``ToolCallDelta`` of each entry of one delta's ``tool_calls``."""
        if not isinstance(entries, list):
            raise malformed("tool_calls that are not a list")
        found: list[ToolCallDelta] = []
        for entry in entries:
            if not isinstance(entry, dict):
                raise malformed("a tool call that is not an object")
            index, call_id = entry.get("index"), entry.get("id")
            if call_id is not None and type(call_id) is not str:
                raise malformed("a tool call id that is not a string")
            if index is None:
                new = call_id is not None and call_id != self.last_id
                index = self.count if new or not self.count else self.last
            elif type(index) is not int or index < 0:
                raise malformed("a tool call index that is not a number")
            function = entry.get("function") or {}
            if not isinstance(function, dict):
                raise malformed("a tool call function that is not an object")
            name, arguments = function.get("name"), function.get("arguments")
            if name is not None and type(name) is not str:
                raise malformed("a tool call name that is not a string")
            arguments = _arguments_text(arguments)
            started = index >= self.count
            if started:
                self.count = index + 1
            if index != self.last or call_id:
                self.last_id = call_id
            self.last = index
            if started or name or arguments:
                found.append(ToolCallDelta(index, call_id, name, arguments))
        return found

    def finish_reason(self, reason: str) -> str:
        """``tool_calls`` for an answer that made calls but says ``stop`` (Ollama, some
        llama.cpp versions), so a client knows it has calls to run; else ``reason``."""
        return "tool_calls" if self.count and reason == "stop" else reason


def _arguments_text(arguments: Any) -> str:
    if arguments is None:
        return ""
    if type(arguments) is str:
        return arguments
    if isinstance(arguments, dict | list):
        return orjson.dumps(arguments).decode()
    raise malformed("tool call arguments that are neither JSON text nor an object")


def completion_parts(completion: Mapping[str, Any], model: str) -> list[Delta]:
    """A whole ``chat.completion`` (a non-streamed answer) as the parts a stream of it yields."""
    try:
        choices = completion.get("choices") or ()
        message = (choices[0].get("message") if choices else None) or {}
        calls = ToolCalls()
        parts = delta_parts(
            {**message, "tool_calls": [
                {"index": i, **call} for i, call in enumerate(message.get("tool_calls") or ())
                if isinstance(call, dict)
            ]},
            calls,
        )  # fmt: skip
        reason = (choices[0].get("finish_reason") if choices else None) or "stop"
        usage = completion.get("usage")
        parts.append(
            Finish(
                calls.finish_reason(reason),
                completion.get("model") or model,
                usage_of(usage) if usage else None,
            )
        )
    except (AttributeError, TypeError, KeyError):
        raise malformed("a completion that is not a chat completion") from None
    return parts


def usage_of(usage: Mapping[str, Any]) -> Usage:
    """OpenAI's ``usage`` object as ``Usage``."""
    details = usage.get("completion_tokens_details")
    reasoning = details.get("reasoning_tokens") if isinstance(details, dict) else None
    return Usage(
        usage.get("prompt_tokens") or 0,
        usage.get("completion_tokens") or 0,
        reasoning_tokens=reasoning if type(reasoning) is int else None,
    )
