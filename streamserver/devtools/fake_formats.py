"""How the fake upstream writes one answer in OpenAI's and Anthropic's wire formats.

An answer is a list of steps (reasoning pieces, text pieces, a tool call's start, its argument
fragments, refusal pieces), the same for both APIs; ``OpenAIWire`` and ``AnthropicWire`` turn
each step into what those servers send: chat completion chunks, or Messages API events with their
content blocks opened and closed around the pieces. Both also write the whole non-streamed answer.
The shapes follow the real servers', including their ``null``s, so the real SDKs accept them.
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

StepKind: TypeAlias = Literal["reasoning", "text", "refusal", "call", "arguments", "raw"]


@dataclass(frozen=True, slots=True)
class PlannedCall:
    """One tool call the fake upstream makes: its id, function name and arguments (JSON text)."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class Step:
    """One piece of an answer, one streamed chunk (OpenAI) or content-block delta (Anthropic)."""

    kind: StepKind
    text: str = ""
    """The piece (reasoning, text, refusal, an arguments fragment; for ``raw``, the SSE data)."""
    index: int = 0
    """For ``call`` and ``arguments``: the call's place among the answer's calls."""
    call: PlannedCall | None = None
    """For ``call``: the call that starts."""


@dataclass(frozen=True, slots=True)
class Answer:
    """Everything one response says, in order, with its finish reason and usage."""

    steps: list[Step]
    finish_reason: str
    """In OpenAI's words (``stop``, ``length``, ``tool_calls``, ...)."""
    prompt_tokens: int
    completion_tokens: int
    reasoning_field: str = "reasoning_content"
    stop_sequence: str | None = None
    """The stop sequence the text ended at (Anthropic says which; OpenAI says ``stop``)."""

    def joined(self, kind: StepKind) -> str:
        """All the pieces of one kind, joined."""
        return "".join(step.text for step in self.steps if step.kind == kind)

    def calls(self) -> list[PlannedCall]:
        """The answer's tool calls, in index order."""
        return [step.call for step in self.steps if step.call is not None]


def fragments(arguments: str, cut: int | tuple[int, ...]) -> list[str]:
    """``arguments`` cut into fragments: every ``cut`` characters, or at the given positions."""
    if isinstance(cut, int):
        size = max(cut, 1)
        return [arguments[i : i + size] for i in range(0, len(arguments), size)]
    edges = [0, *sorted(p for p in cut if 0 < p < len(arguments)), len(arguments)]
    return [arguments[a:b] for a, b in itertools.pairwise(edges) if b > a]


def sse(data: dict[str, Any], event: str | None = None) -> bytes:
    """One SSE event (named or not) carrying ``data`` as JSON."""
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data)}\n\n".encode()


class OpenAIWire:
    """Chat completion chunks (``/v1/chat/completions``, ``stream: true``) and the whole answer."""

    def __init__(self, completion_id: str, model: str, *, include_usage: bool, reasoning_field: str,
                 null_reasoning: bool) -> None:  # fmt: skip
        self.completion_id = completion_id
        self.model = model
        self.include_usage = include_usage
        self.reasoning_field = reasoning_field
        self.null_reasoning = null_reasoning
        """DeepSeek's habit: text chunks carry ``reasoning_content: null`` once it reasons."""
        self.base = {"id": completion_id, "object": "chat.completion.chunk",
                     "created": int(time.time()), "model": model, "system_fingerprint": None}  # fmt: skip

    def chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        """One ``chat.completion.chunk`` with one choice."""
        payload = {
            **self.base,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if self.include_usage:
            payload["usage"] = None
        return b"data: " + json.dumps(payload).encode() + b"\n\n"

    def opening(self, answer: Answer) -> bytes:
        """The role chunk every answer starts with."""
        return self.chunk({"role": "assistant", "content": "", "refusal": None})

    def step(self, step: Step) -> bytes:
        """The chunk of one step."""
        kind = step.kind
        if kind == "raw":
            return f"data: {step.text}\n\n".encode()
        if kind == "text":
            if self.null_reasoning:
                return self.chunk({"content": step.text, "reasoning_content": None})
            return self.chunk({"content": step.text})
        if kind == "reasoning":
            if self.reasoning_field == "reasoning":  # Ollama, OpenRouter
                return self.chunk({"role": "assistant", "content": "", "reasoning": step.text})
            return self.chunk({"content": None, "reasoning_content": step.text})  # DeepSeek, vLLM
        if kind == "refusal":
            return self.chunk({"content": None, "refusal": step.text})
        if kind == "call":
            assert step.call is not None
            call = {"index": step.index, "id": step.call.id, "type": "function",
                    "function": {"name": step.call.name, "arguments": ""}}  # fmt: skip
            return self.chunk({"tool_calls": [call]})
        fragment = {"index": step.index, "function": {"arguments": step.text}}
        return self.chunk({"tool_calls": [fragment]})

    def closing(self, answer: Answer) -> bytes:
        """The finish chunk, the usage chunk when asked for, and ``[DONE]``."""
        out = self.chunk({}, answer.finish_reason)
        if self.include_usage:
            usage = {**self.base, "choices": [], "usage": openai_usage(answer)}
            out += b"data: " + json.dumps(usage).encode() + b"\n\n"
        return out + b"data: [DONE]\n\n"

    def malformed(self) -> bytes:
        """A chunk cut off in the middle of its JSON."""
        return b'data: {"id": "broken", "choices": [\n\n'

    def error_event(self) -> bytes:
        """An error object where a chunk should be (how OpenAI-compatible servers fail mid-stream)."""
        error = {"message": "The upstream model overloaded", "type": "server_error",
                 "code": "overloaded"}  # fmt: skip
        return b"data: " + json.dumps({"error": error}).encode() + b"\n\n"

    def whole(self, answer: Answer) -> dict[str, Any]:
        """The non-streamed ``chat.completion``."""
        text, refusal = answer.joined("text"), answer.joined("refusal")
        calls = answer.calls()
        message: dict[str, Any] = {
            "role": "assistant",
            "content": text if text or not (calls or refusal) else None,
            "refusal": refusal or None,
        }
        if calls:
            message["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                for c in calls
            ]  # fmt: skip
        reasoning = answer.joined("reasoning")
        if reasoning:
            message[answer.reasoning_field] = reasoning
        return {
            "id": self.completion_id,
            "object": "chat.completion",
            "created": self.base["created"],
            "model": self.model,
            "system_fingerprint": None,
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": answer.finish_reason}],
            "usage": openai_usage(answer),
        }  # fmt: skip


def openai_usage(answer: Answer) -> dict[str, Any]:
    """OpenAI's usage object (with the reasoning tokens, as reasoning models report them)."""
    prompt, completion = answer.prompt_tokens, answer.completion_tokens
    usage: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion,
                             "total_tokens": prompt + completion}  # fmt: skip
    reasoning = sum(1 for step in answer.steps if step.kind == "reasoning")
    if reasoning:
        usage["completion_tokens_details"] = {"reasoning_tokens": reasoning}
    return usage


ANTHROPIC_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use",
                          "content_filter": "refusal"}  # fmt: skip
"""OpenAI's finish reasons in Anthropic's words (any other goes as it is: ``stop_sequence``)."""

SIGNATURE = "ZmFrZS1zaWduYXR1cmU="
"""What the fake signs every thinking block with (Anthropic sends an opaque signature)."""


class AnthropicWire:
    """Messages API events (``/v1/messages``, ``stream: true``) and the whole message."""

    def __init__(self, message_id: str, model: str) -> None:
        self.message_id = message_id
        self.model = model
        self._block = -1
        """The index of the content block open now (-1: none yet)."""
        self._open: StepKind | None = None

    def _message(self, answer: Answer, content: list[dict[str, Any]]) -> dict[str, Any]:
        return {"id": self.message_id, "type": "message", "role": "assistant", "content": content,
                "model": self.model, "stop_reason": None, "stop_sequence": None,
                "usage": {"input_tokens": answer.prompt_tokens, "output_tokens": 1}}  # fmt: skip

    def opening(self, answer: Answer) -> bytes:
        """``message_start`` (with the prompt's usage) and a ``ping``."""
        start = sse(
            {"type": "message_start", "message": self._message(answer, [])}, "message_start"
        )
        return start + sse({"type": "ping"}, "ping")

    def _delta(self, delta: dict[str, Any]) -> bytes:
        payload = {"type": "content_block_delta", "index": self._block, "delta": delta}
        return sse(payload, "content_block_delta")

    def _close(self) -> bytes:
        out = b""
        if self._open == "reasoning":
            out += self._delta({"type": "signature_delta", "signature": SIGNATURE})
        if self._open is not None:
            out += sse({"type": "content_block_stop", "index": self._block}, "content_block_stop")
        self._open = None
        return out

    def _start(self, kind: StepKind, block: dict[str, Any]) -> bytes:
        out = self._close()
        self._block += 1
        self._open = kind
        payload = {"type": "content_block_start", "index": self._block, "content_block": block}
        return out + sse(payload, "content_block_start")

    def step(self, step: Step) -> bytes:
        """The events of one step: a content block's start when the kind changes, then its delta."""
        kind = step.kind
        if kind == "raw":
            return f"data: {step.text}\n\n".encode()
        if kind == "call":
            assert step.call is not None
            block = {"type": "tool_use", "id": step.call.id, "name": step.call.name, "input": {}}
            # Anthropic's first delta of a tool_use block is an empty fragment.
            return self._start(kind, block) + self._delta({"type": "input_json_delta", "partial_json": ""})  # fmt: skip
        if kind == "arguments":
            return self._delta({"type": "input_json_delta", "partial_json": step.text})
        out = b""
        if kind == "reasoning":
            if self._open != "reasoning":
                out = self._start(kind, {"type": "thinking", "thinking": "", "signature": ""})
            return out + self._delta({"type": "thinking_delta", "thinking": step.text})
        if self._open not in ("text", "refusal"):  # a refusal is text that ends in stop "refusal"
            out = self._start(kind, {"type": "text", "text": ""})
        return out + self._delta({"type": "text_delta", "text": step.text})

    def closing(self, answer: Answer) -> bytes:
        """The last block's end, ``message_delta`` (stop reason, usage) and ``message_stop``."""
        stop = stop_reason(answer)
        delta = {"type": "message_delta",
                 "delta": {"stop_reason": stop, "stop_sequence": answer.stop_sequence},
                 "usage": {"output_tokens": answer.completion_tokens}}  # fmt: skip
        return (
            self._close()
            + sse(delta, "message_delta")
            + sse({"type": "message_stop"}, "message_stop")
        )

    def malformed(self) -> bytes:
        """An event cut off in the middle of its JSON."""
        return b'event: content_block_delta\ndata: {"type": "content_block_delta", "delta": {\n\n'

    def error_event(self) -> bytes:
        """Anthropic's mid-stream ``error`` event."""
        error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
        return sse(error, "error")

    def whole(self, answer: Answer) -> dict[str, Any]:
        """The non-streamed message: its content blocks in order."""
        blocks: list[dict[str, Any]] = []
        last: StepKind | None = None
        for step in answer.steps:
            kind = "text" if step.kind == "refusal" else step.kind
            if kind in ("arguments", "raw"):
                continue
            if kind == "call":
                assert step.call is not None
                blocks.append({"type": "tool_use", "id": step.call.id, "name": step.call.name,
                               "input": json.loads(step.call.arguments or "{}")})  # fmt: skip
            elif kind == last:
                blocks[-1][kind if kind == "text" else "thinking"] += step.text
            elif kind == "reasoning":
                blocks.append({"type": "thinking", "thinking": step.text, "signature": SIGNATURE})
            else:
                blocks.append({"type": "text", "text": step.text})
            last = kind
        message = self._message(answer, blocks)
        message["stop_reason"] = stop_reason(answer)
        message["stop_sequence"] = answer.stop_sequence
        message["usage"] = {"input_tokens": answer.prompt_tokens,
                            "output_tokens": answer.completion_tokens}  # fmt: skip
        return message


def stop_reason(answer: Answer) -> str:
    """The answer's finish reason as Anthropic says it (a refusal stops with ``refusal``)."""
    if any(step.kind == "refusal" for step in answer.steps):
        return "refusal"
    if answer.stop_sequence is not None:
        return "stop_sequence"
    return ANTHROPIC_STOP_REASONS.get(answer.finish_reason, answer.finish_reason)
