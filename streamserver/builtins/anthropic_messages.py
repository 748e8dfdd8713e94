"""A ``GenerationRequest`` in Anthropic's Messages API words, and a whole message back into parts.

The ``anthropic`` provider's translation, both ways; the table in the README's providers section
says the same. Anything that cannot be said to Anthropic (arguments that are not a JSON object, an
image URL that is neither ``data:`` nor http(s)) is an ``invalid_request`` ``ProviderError`` before
any request goes out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from ..errors import ProviderError
from ..types import (  # fmt: skip
    ContentPart,
    Delta,
    Finish,
    GenerationRequest,
    Message,
    Reasoning,
    ReasoningSignature,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from .sdk_provider import plain
from .upstream_errors import malformed

HONOURED = frozenset(("tools", "tool_choice", "parallel_tool_calls", "temperature", "top_p",
                      "stop", "user", "reasoning_effort"))  # fmt: skip
"""The request parameters the Messages API has a word for (``Provider.parameters``)."""

THINKING_BUDGETS = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 16384, "xhigh": 32768}
"""``reasoning_effort`` as a thinking budget in tokens (``none``: no thinking)."""

MIN_THINKING_BUDGET = 1024
"""Anthropic's smallest ``budget_tokens``."""

STOP_REASONS: dict[Any, str] = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length",
                "tool_use": "tool_calls", "refusal": "content_filter"}  # fmt: skip
"""Anthropic's ``stop_reason`` in OpenAI's words (any other goes as it is)."""

_TOOL_CHOICES = {"auto": {"type": "auto"}, "required": {"type": "any"}, "none": {"type": "none"}}


def invalid(message: str) -> ProviderError:
    """A request the provider cannot say to Anthropic."""
    return ProviderError("invalid_request", message)


def request_body(
    request: GenerationRequest, *, max_tokens: int, temperature: float | None,
    thinking_budget: int,
) -> dict[str, Any]:  # fmt: skip
    """The Messages API body for ``request`` (``stream`` not set). ``max_tokens``,
    ``temperature`` and ``thinking_budget`` are the provider's defaults: a request's values win."""
    body: dict[str, Any] = {"model": request.model, "messages": _messages(request.messages)}
    system = [m for m in request.messages if m.role == "system"]
    if system:
        if all(isinstance(m.content, str) for m in system):
            body["system"] = "\n\n".join(m.text for m in system)
        else:
            body["system"] = [
                block
                for m in system
                for block in (
                    [{"type": "text", "text": m.content}]
                    if isinstance(m.content, str)
                    else _blocks(m.content)
                )
            ]
    sampling = request.sampling
    budget = _thinking_budget(sampling.get("reasoning_effort"), thinking_budget)
    if request.max_tokens is not None:
        body["max_tokens"] = request.max_tokens
        if budget:
            # Thinking counts toward max_tokens, which must stay above the budget.
            budget = min(budget, request.max_tokens - 1)
            if budget < MIN_THINKING_BUDGET:
                raise invalid(
                    f"reasoning with Anthropic needs max_tokens above {MIN_THINKING_BUDGET}"
                )
    else:
        body["max_tokens"] = max_tokens + budget  # the default answer, on top of the thinking
    if budget:
        body["thinking"] = {"type": "enabled", "budget_tokens": budget}
    if request.tools:
        body["tools"] = [_tool(tool) for tool in request.tools]
        choice = _tool_choice(request.tool_choice)
        if request.parallel_tool_calls is False and (choice or {}).get("type") != "none":
            choice = {**(choice or {"type": "auto"}), "disable_parallel_tool_use": True}
        if choice is not None:
            body["tool_choice"] = choice
    if temperature is not None:
        body["temperature"] = temperature
    for name in ("temperature", "top_p"):
        if name in sampling:
            body[name] = sampling[name]
    stop = sampling.get("stop")
    if stop is not None:
        body["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    if sampling.get("user") is not None:
        body["metadata"] = {"user_id": sampling["user"]}
    return body


def _thinking_budget(effort: Any, default: int) -> int:
    if effort is None:
        return default
    if effort == "none":
        return 0
    if effort not in THINKING_BUDGETS:
        raise invalid(
            f"reasoning_effort {effort!r} has no Anthropic thinking budget "
            f"(choices: none, {', '.join(THINKING_BUDGETS)})"
        )
    return THINKING_BUDGETS[effort]


def _messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """The conversation without its system messages; tool results as user messages of
    ``tool_result`` blocks, consecutive ones in one message (as Anthropic requires)."""
    out: list[dict[str, Any]] = []
    results: list[dict[str, Any]] | None = None  # the user message of tool results open now
    for message in messages:
        if message.role == "system":
            continue
        if message.role == "tool":
            if message.tool_call_id is None:
                raise invalid("a tool message needs the tool_call_id it answers")
            if results is None:
                results = []
                out.append({"role": "user", "content": results})
            content = message.content
            results.append({"type": "tool_result", "tool_use_id": message.tool_call_id,
                            "content": content if isinstance(content, str) else _blocks(content)})  # fmt: skip
            continue
        results = None
        if message.role == "assistant" and message.tool_calls:
            content = message.content
            blocks = (
                ([{"type": "text", "text": content}] if content else [])
                if isinstance(content, str)
                else _blocks(content)
            )
            blocks += [_tool_use(call) for call in message.tool_calls]
            out.append({"role": "assistant", "content": blocks})
        else:
            content = message.content
            out.append({"role": message.role,
                        "content": content if isinstance(content, str) else _blocks(content)})  # fmt: skip
    return out


def _blocks(parts: Sequence[ContentPart]) -> list[dict[str, Any]]:
    """Content parts as content blocks: OpenAI's text part is already Anthropic's text block;
    ``image_url`` becomes an image block; any other type (a native Anthropic block) goes as it is."""
    return [_image(part) if part.get("type") == "image_url" else plain(part) for part in parts]


def _image(part: ContentPart) -> dict[str, Any]:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, Mapping) else image
    if not isinstance(url, str):
        raise invalid("an image_url part needs a url")
    if url.startswith("data:"):
        header, sep, data = url[5:].partition(",")
        media_type, _, encoding = header.partition(";")
        if not sep or encoding != "base64" or not media_type:
            raise invalid("an image data: URL must be base64 with its media type")
        source = {"type": "base64", "media_type": media_type, "data": data}
    elif url.startswith(("https://", "http://")):
        source = {"type": "url", "url": url}
    else:
        raise invalid("an image URL must be a data: URL or http(s)")
    return {"type": "image", "source": source}


def _tool_use(call: ToolCall) -> dict[str, Any]:
    try:
        arguments = orjson.loads(call.arguments) if call.arguments.strip() else {}
    except orjson.JSONDecodeError:
        raise invalid(f"the arguments of tool call {call.id!r} are not JSON") from None
    if not isinstance(arguments, dict):
        raise invalid(f"the arguments of tool call {call.id!r} are not a JSON object")
    return {"type": "tool_use", "id": call.id, "name": call.name, "input": arguments}


def _tool(tool: Mapping[str, Any]) -> dict[str, Any]:
    """OpenAI's function tool as Anthropic's tool; another type (a native one) as it is."""
    if tool.get("type") != "function":
        return plain(tool)  # type: ignore[no-any-return]
    function = tool.get("function")
    if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
        raise invalid("a function tool needs a function with a name")
    out: dict[str, Any] = {"name": function["name"]}
    if function.get("description"):
        out["description"] = function["description"]
    schema = function.get("parameters")
    out["input_schema"] = plain(schema) if schema else {"type": "object", "properties": {}}
    return out


def _tool_choice(choice: str | Mapping[str, Any] | None) -> dict[str, Any] | None:
    if choice is None:
        return None
    if isinstance(choice, str):
        if choice not in _TOOL_CHOICES:
            raise invalid(f"tool_choice {choice!r} is not auto, required, none or a function")
        return dict(_TOOL_CHOICES[choice])
    function = choice.get("function")
    if choice.get("type") == "function" and isinstance(function, Mapping):
        return {"type": "tool", "name": function.get("name")}
    return plain(choice)  # type: ignore[no-any-return]


def tool_use_start(block: Mapping[str, Any], position: int, empty: str = "") -> ToolCallDelta:
    """A ``tool_use`` block's start as the first delta of call ``position``: its input, when the
    block carries it whole rather than in ``input_json_delta`` fragments, is the arguments
    (``empty`` for an empty input: ``"{}"`` for a whole message, ``""`` before fragments)."""
    call_id, name, arguments = block.get("id"), block.get("name"), block.get("input")
    if type(call_id) is not str or type(name) is not str:
        raise malformed("a tool_use block without a string id and name")
    if arguments and not isinstance(arguments, dict):
        raise malformed("a tool_use block whose input is not an object")
    return ToolCallDelta(
        position, call_id, name, orjson.dumps(arguments).decode() if arguments else empty
    )


def message_parts(message: Mapping[str, Any], model: str) -> list[Delta]:
    """A whole message (a non-streamed answer) as the parts a stream of it yields."""
    parts: list[Delta] = []
    position = 0
    try:
        for block in message.get("content") or ():
            kind = block.get("type")
            if kind == "text" and block.get("text"):
                parts.append(block["text"])
            elif kind == "thinking" and block.get("thinking"):
                parts.append(Reasoning(block["thinking"]))
                if block.get("signature") and isinstance(block["signature"], str):
                    parts.append(ReasoningSignature(block["signature"]))
            elif kind == "tool_use":
                parts.append(tool_use_start(block, position, "{}"))
                position += 1
        usage = message.get("usage") or {}
        stop = message.get("stop_reason") or "end_turn"
        parts.append(
            Finish(
                STOP_REASONS.get(stop, stop),
                message.get("model") or model,
                Usage(usage.get("input_tokens") or 0, usage.get("output_tokens") or 0),
                message.get("stop_sequence") if stop == "stop_sequence" else None,
            )
        )
    except (AttributeError, TypeError, orjson.JSONEncodeError):
        raise malformed("a message that is not a Messages API message") from None
    return parts
