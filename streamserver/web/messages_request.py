"""A Messages API request body (``POST /v1/messages``) in the words the pipeline takes: the
stream request fields of ``request_input`` (messages, tools and parameters in OpenAI's shapes,
which every provider translates from), checked there like any other request's.

Only the Messages API's own shapes are read here (roles ``user`` and ``assistant``, content
blocks, ``system``, ``tool_choice`` types, ``thinking``, ``stop_sequences``); what they become is
held to the same checks as a chat completions request. The ``anthropic`` provider translates
them back on its way out (``builtins/anthropic_messages.py``), so a request relayed to Anthropic
reaches it as it was sent, but for the limits said below.

- ``thinking`` becomes ``reasoning_effort``: ``disabled`` is ``none``; an ``enabled`` budget is
  the largest effort whose budget it reaches (``minimal`` 1024 tokens, ``low`` 2048, ``medium``
  8192, ``high`` 16384 and above), since a provider is asked for an effort, not a budget.
- ``thinking`` and ``redacted_thinking`` blocks of an assistant message that Anthropic signed are
  kept as they came, as content parts: the ``anthropic`` provider sends them back (Anthropic
  refuses a thinking turn that called tools without them), every other provider leaves them out,
  as the chat completions route leaves ``reasoning_content`` out. An unsigned one (another
  provider's reasoning) is left out here.
- A ``tool_result``'s ``is_error`` and any block's ``cache_control`` are accepted and not carried
  (the chat completions shape has no word for them).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..builtins.anthropic_messages import MIN_THINKING_BUDGET, THINKING_BUDGETS
from ..errors import StreamRejected
from ..request_input import parse_count

REQUIRED = ("model", "messages", "max_tokens")
"""What every Messages API request names."""
OPTIONAL = ("system", "stream", "tools", "tool_choice", "temperature", "top_p",
            "stop_sequences", "thinking", "metadata")  # fmt: skip
"""What a request may add; any other field (``top_k``, server tools, ...) is a 400."""
EFFORTS = ("minimal", "low", "medium", "high")
"""The efforts a thinking budget maps to, in the order of their budgets."""
TOOL_KEYS = frozenset({"name", "description", "input_schema", "type", "cache_control"})


def invalid(message: str) -> StreamRejected:
    """A request the Messages API would refuse: 400 ``invalid_request``."""
    return StreamRejected(400, "invalid_request", message)


def messages_fields(body: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
    """The stream request fields of a Messages API body, and whether it asks for a stream."""
    for name in REQUIRED:
        if body.get(name) is None:
            raise invalid(f"{name}: Field required")
    unknown = sorted(set(body) - {*REQUIRED, *OPTIONAL})
    if unknown:
        raise invalid(f"{unknown[0]}: this server does not support this field")
    if not isinstance(body["model"], str):
        raise invalid("model: must be a string")
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise invalid("stream: must be true or false")
    max_tokens = parse_count(body["max_tokens"])
    if max_tokens is None or max_tokens < 1 or isinstance(body["max_tokens"], str):
        raise invalid("max_tokens: must be a positive integer")
    fields: dict[str, Any] = {"model": body["model"], "max_tokens": max_tokens}
    fields["messages"] = [*_system(body.get("system")), *_conversation(body["messages"])]
    if body.get("tools") is not None:
        fields["tools"] = _tools(body["tools"])
    if body.get("tool_choice") is not None:
        fields.update(_tool_choice(body["tool_choice"]))
    for name in ("temperature", "top_p"):
        if body.get(name) is not None:
            fields[name] = body[name]
    if body.get("stop_sequences") is not None:
        fields["stop"] = body["stop_sequences"]
    if body.get("thinking") is not None:
        fields["reasoning_effort"] = _effort(body["thinking"], max_tokens)
    metadata = body.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, dict) or set(metadata) - {"user_id"}:
            raise invalid('metadata: must be an object like {"user_id": "..."}')
        if metadata.get("user_id") is not None:
            fields["user"] = metadata["user_id"]
    return fields, bool(stream)


def _system(system: object) -> list[dict[str, Any]]:
    if system is None:
        return []
    if isinstance(system, str):
        return [{"role": "system", "content": system}] if system else []
    if not isinstance(system, list) or not all(_is_block(b, "text") for b in system):
        raise invalid("system: must be a string or a list of text blocks")
    return [{"role": "system", "content": [_text_part(b) for b in system]}] if system else []


def _conversation(messages: object) -> list[dict[str, Any]]:
    """The messages as chat messages: a user message's ``tool_result`` blocks become ``tool``
    messages (in their place among its other blocks), an assistant's ``tool_use`` blocks its
    ``tool_calls``."""
    if not isinstance(messages, list) or not messages:
        raise invalid("messages: must be a non-empty list")
    out: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        at = f"messages.{i}"
        if not isinstance(message, dict) or set(message) != {"role", "content"}:
            raise invalid(f'{at}: must be an object like {{"role": "user", "content": "..."}}')
        role, content = message["role"], message["content"]
        if role not in ("user", "assistant"):
            raise invalid(f"{at}.role: must be user or assistant (the system prompt is 'system')")
        if isinstance(content, str):
            out.append({"role": role, "content": content})
        elif not isinstance(content, list) or not content:
            raise invalid(f"{at}.content: must be a string or a non-empty list of blocks")
        elif role == "user":
            out.extend(_user(content, at))
        else:
            out.append(_assistant(content, at))
    return out


def _user(blocks: list[Any], at: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []  # the user message open now
    for j, block in enumerate(blocks):
        where = f"{at}.content.{j}"
        if _is_block(block, "tool_result"):
            if parts:
                out.append({"role": "user", "content": parts})
                parts = []
            out.append(_tool_result(block, where))
        else:
            parts.append(_part(block, where))
    if parts:
        out.append({"role": "user", "content": parts})
    return out


def _assistant(blocks: list[Any], at: str) -> dict[str, Any]:
    parts, calls = [], []
    for j, block in enumerate(blocks):
        where = f"{at}.content.{j}"
        if _is_block(block, "tool_use"):
            calls.append(_tool_use(block, where))
        elif _is_block(block, "thinking") or _is_block(block, "redacted_thinking"):
            signed = _signed_thinking(block, where)
            if signed is not None:
                parts.append(signed)
        else:
            parts.append(_part(block, where))
    # Text blocks alone are the text (a chat completions reply's content is a string).
    texts = [part["text"] for part in parts if part["type"] == "text"]
    content = "".join(texts) if len(texts) == len(parts) and all(map(_is_str, texts)) else parts
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if calls:
        message["tool_calls"] = calls
    return message


def _signed_thinking(block: dict[str, Any], where: str) -> dict[str, Any] | None:
    """A thinking block Anthropic signed, as it came (its fields only), to go back to it; an
    unsigned one (another provider's reasoning, or none to check) is left out."""
    if block["type"] == "redacted_thinking":
        data = block.get("data")
        if not isinstance(data, str):
            raise invalid(f"{where}.data: must be a string (the redacted thinking)")
        return {"type": "redacted_thinking", "data": data}
    thinking, signature = block.get("thinking"), block.get("signature")
    if not isinstance(thinking, str) or not isinstance(signature, (str, type(None))):
        raise invalid(f"{where}: a thinking block has a string thinking and signature")
    if not signature:
        return None
    return {"type": "thinking", "thinking": thinking, "signature": signature}


def _is_str(value: object) -> bool:
    return isinstance(value, str)


def _is_block(block: object, kind: str) -> bool:
    return isinstance(block, dict) and block.get("type") == kind


def _part(block: object, where: str) -> dict[str, Any]:
    """A content block as a content part: text as it is (``cache_control`` left out), an image
    as ``image_url`` (a ``data:`` URL for base64), any other block passed on untouched."""
    if not isinstance(block, dict) or not isinstance(block.get("type"), str):
        raise invalid(f'{where}: must be a content block: an object with a "type"')
    if block["type"] == "text":
        return _text_part(block)
    if block["type"] != "image":
        return block
    source = block.get("source")
    if _is_block(source, "base64"):
        assert isinstance(source, dict)
        media_type, data = source.get("media_type"), source.get("data")
        if isinstance(media_type, str) and isinstance(data, str):
            return {"type": "image_url", "image_url": {"url": f"data:{media_type};base64,{data}"}}
    elif _is_block(source, "url"):
        assert isinstance(source, dict)
        if isinstance(source.get("url"), str):
            return {"type": "image_url", "image_url": {"url": source["url"]}}
    raise invalid(f"{where}.source: must be a base64 source (media_type, data) or a url source")


def _text_part(block: dict[str, Any]) -> dict[str, Any]:
    return {"type": "text", "text": block.get("text")}  # request_messages checks the text


def _tool_result(block: dict[str, Any], where: str) -> dict[str, Any]:
    content = block.get("content", "")
    if isinstance(content, list):
        content = [_part(part, f"{where}.content.{k}") for k, part in enumerate(content)] or ""
    if not isinstance(content, (str, list)):
        raise invalid(f"{where}.content: must be a string or a list of blocks")
    return {"role": "tool", "tool_call_id": block.get("tool_use_id"), "content": content}


def _tool_use(block: dict[str, Any], where: str) -> dict[str, Any]:
    call_id, name, arguments = block.get("id"), block.get("name"), block.get("input")
    if not isinstance(call_id, str) or not isinstance(name, str) or not isinstance(arguments, dict):
        raise invalid(f"{where}: a tool_use block has an id, a name and an input object")
    text = json.dumps(arguments, ensure_ascii=False)
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": text}}


def _tools(tools: object) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise invalid("tools: must be a list of tools")
    out = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or set(tool) - TOOL_KEYS or "input_schema" not in tool:
            raise invalid(
                f"tools.{i}: must be a custom tool {{name, description, input_schema}} "
                "(this server runs no server tools)"
            )
        if tool.get("type") not in (None, "custom"):
            raise invalid(f"tools.{i}.type: this server runs no server tools, only custom ones")
        function = {"name": tool.get("name"), "parameters": tool["input_schema"]}
        if tool.get("description") is not None:
            function["description"] = tool["description"]
        out.append({"type": "function", "function": function})
    return out


def _tool_choice(choice: object) -> dict[str, Any]:
    """``tool_choice`` and ``parallel_tool_calls`` (``disable_parallel_tool_use``)."""
    if not isinstance(choice, dict) or set(choice) - {"type", "name", "disable_parallel_tool_use"}:
        raise invalid('tool_choice: must be an object like {"type": "auto"}')
    kind = choice.get("type")
    named = {"auto": "auto", "any": "required", "none": "none"}
    if kind == "tool":
        fields: dict[str, Any] = {
            "tool_choice": {"type": "function", "function": {"name": choice.get("name")}}
        }
    elif isinstance(kind, str) and kind in named and "name" not in choice:
        fields = {"tool_choice": named[kind]}
    else:
        raise invalid("tool_choice.type: must be auto, any, none, or tool with a name")
    disable = choice.get("disable_parallel_tool_use")
    if disable is not None:
        if not isinstance(disable, bool) or kind == "none":
            raise invalid(
                "tool_choice.disable_parallel_tool_use: true or false, with a tool choice"
            )
        fields["parallel_tool_calls"] = not disable
    return fields


def _effort(thinking: object, max_tokens: int) -> str:
    """``thinking`` as a ``reasoning_effort`` (see the module docstring)."""
    if isinstance(thinking, dict) and thinking == {"type": "disabled"}:
        return "none"
    if (
        not isinstance(thinking, dict)
        or thinking.keys() != {"type", "budget_tokens"}
        or (thinking["type"] != "enabled")
    ):
        raise invalid('thinking: must be {"type": "enabled", "budget_tokens": n} or disabled')
    budget = parse_count(thinking["budget_tokens"])
    if budget is None or budget < MIN_THINKING_BUDGET or isinstance(thinking["budget_tokens"], str):
        raise invalid(
            f"thinking.budget_tokens: must be an integer of at least {MIN_THINKING_BUDGET}"
        )
    if budget >= max_tokens:
        raise invalid("max_tokens: must be greater than thinking.budget_tokens")
    return [effort for effort in EFFORTS if THINKING_BUDGETS[effort] <= budget][-1]
