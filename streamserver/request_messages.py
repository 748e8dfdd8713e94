"""A request's ``messages``, read strictly into ``Message``s: the roles, string or list content,
an assistant's tool calls, a tool's result; and ``valid_text``, the one check for half an emoji.

What clients really send is accepted, no more: the keys the openai SDK's ``model_dump()`` and
LangChain's ``ChatOpenAI`` echo back with an assistant message (``refusal``, ``audio``,
``function_call`` and ``annotations``, all null; ``name``, which no provider here uses; what the
SDK's ``.stream()`` and ``.parse()`` helpers add: ``parsed``, ``reasoning_content``, a call's
``index`` and its function's ``parsed_arguments``, all derived from what this server sent and not
sent upstream again: DeepSeek refuses its own ``reasoning_content`` back), and ``developer``,
OpenAI's newer name for ``system``. Anything else is a 400 ``invalid_messages`` naming the
message and the key.
"""

from __future__ import annotations

from typing import Any

from .errors import StreamRejected
from .request_parameters import InvalidValue, json_value, lone_surrogate
from .types import ContentPart, Message, Role, ToolCall

ROLES = ("system", "developer", "user", "assistant", "tool")
"""The roles a message may have (``developer`` is read as ``system``)."""

_KEYS: dict[str, tuple[str, ...]] = {
    "system": ("role", "content", "name"),
    "user": ("role", "content", "name"),
    "assistant": ("role", "content", "name", "tool_calls", "refusal", "audio", "function_call",
                  "annotations", "parsed", "reasoning_content"),
    "tool": ("role", "content", "tool_call_id", "name"),
}  # fmt: skip
"""The keys each role's message may have."""
_NULL_ONLY = ("refusal", "audio", "function_call", "annotations")
"""Fields of a reply that the SDKs echo back as null: this server never gives a value for one
(a refusal, audio, a legacy function call, citations), so only null is accepted."""


def valid_text(text: str, where: str) -> str:
    """``text`` if it is valid Unicode, else a 400 naming ``where``.

    JSON can spell half a UTF-16 pair (``"\\ud83d"``), but no provider, store or plain-text client
    can take it: it is refused as bad input here, for every route, rather than fail later.
    """
    problem = lone_surrogate(text)
    if problem is not None:
        raise StreamRejected(400, "invalid_text", f"{where} holds {problem}")
    return text


def parse_messages(messages: object) -> tuple[Message, ...]:
    """The checked conversation, or a 400 ``invalid_messages`` (``invalid_text``) naming the
    message and what was expected."""
    if not isinstance(messages, list) or not messages:
        raise StreamRejected(400, "invalid_messages", "'messages' must be a non-empty list")
    return tuple(_message(item, f"messages[{i}]") for i, item in enumerate(messages))


def _refuse(message: str) -> StreamRejected:
    return StreamRejected(400, "invalid_messages", message)


def _message(item: object, at: str) -> Message:
    if not isinstance(item, dict):
        raise _refuse(f'{at} must be an object like {{"role": "user", "content": "..."}}')
    role = item.get("role")
    if role not in ROLES:
        raise _refuse(f"{at}.role must be one of {', '.join(ROLES)}")
    kind: Role = "system" if role == "developer" else role
    for key in item:
        if key not in _KEYS[kind]:
            raise _refuse(
                f"{at}.{key} is not a key of a message with role {role!r} "
                f"(its keys: {', '.join(_KEYS[kind])})"
            )
    for key in _NULL_ONLY:
        if item.get(key) is not None:
            raise _refuse(f"{at}.{key} must be null (this server never gives one to echo back)")
    _checked(item.get("parsed"), f"{at}.parsed")  # derived from the content: plain JSON, dropped
    reasoning = item.get("reasoning_content")
    if reasoning is not None and not isinstance(reasoning, str):
        raise _refuse(f"{at}.reasoning_content must be a string or null")
    name = item.get("name")
    if name is not None:
        if not isinstance(name, str):
            raise _refuse(f"{at}.name must be a string")
        valid_text(name, f"{at}.name")
    calls = _tool_calls(item.get("tool_calls"), at)
    content = item.get("content")
    if calls and content in (None, ""):
        content = ""  # an assistant message that only calls tools
    elif content is None:
        raise _refuse(
            f"{at}.content is required: a string or a non-empty list of content parts"
            + (" (or tool_calls)" if kind == "assistant" else "")
        )
    tool_call_id = None
    if kind == "tool":
        tool_call_id = item.get("tool_call_id")
        if not isinstance(tool_call_id, str) or not tool_call_id:
            raise _refuse(f"{at}.tool_call_id must be the id of the call this result answers")
        valid_text(tool_call_id, f"{at}.tool_call_id")
    return Message(kind, _content(content, at), calls, tool_call_id)


def _content(content: object, at: str) -> str | tuple[ContentPart, ...]:
    if isinstance(content, str):
        return valid_text(content, f"{at}.content")
    if not isinstance(content, list) or not content:
        raise _refuse(f"{at}.content must be a string or a non-empty list of content parts")
    parts = []
    for j, part in enumerate(content):
        where = f"{at}.content[{j}]"
        if not isinstance(part, dict) or not isinstance(part.get("type"), str) or not part["type"]:
            raise _refuse(f'{where} must be a content part: an object with a "type" (a string)')
        if part["type"] == "text":
            if not isinstance(part.get("text"), str):
                raise _refuse(f'{where}.text must be a string (a "text" part\'s text)')
            valid_text(part["text"], f"{where}.text")
        _checked(part, where)  # passed on untouched, but plain JSON within bounds
        parts.append(part)
    return tuple(parts)


def _tool_calls(value: object, at: str) -> tuple[ToolCall, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _refuse(f"{at}.tool_calls must be a list of tool calls")
    calls = []
    for i, call in enumerate(value):
        where = f"{at}.tool_calls[{i}]"
        shape = (
            f'{where} must be {{"id": a string, "type": "function", "function": {{"name": a '
            'string, "arguments": the JSON text of the arguments}}'
        )
        # ``index`` and ``parsed_arguments``: what the openai SDK's stream helper adds.
        if not isinstance(call, dict) or set(call) - {"index"} != {"id", "type", "function"}:
            raise _refuse(shape)
        function = call["function"]
        if (
            call["type"] != "function"
            or not isinstance(call["id"], str)
            or not call["id"]
            or not isinstance(function, dict)
            or set(function) - {"parsed_arguments"} != {"name", "arguments"}
            or not isinstance(function["name"], str)
            or not function["name"]
            or not isinstance(function["arguments"], str)
        ):
            raise _refuse(shape)
        valid_text(call["id"], f"{where}.id")
        valid_text(function["name"], f"{where}.function.name")
        valid_text(function["arguments"], f"{where}.function.arguments")
        _checked(function.get("parsed_arguments"), f"{where}.function.parsed_arguments")
        calls.append(ToolCall(call["id"], function["name"], function["arguments"], index=i))
    return tuple(calls)


def _checked(value: Any, where: str) -> None:
    try:
        json_value(value, where)
    except InvalidValue as exc:
        raise StreamRejected(
            400, "invalid_text" if exc.code == "invalid_text" else "invalid_messages", str(exc)
        ) from None
