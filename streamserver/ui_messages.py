"""What the AI SDK's ``useChat`` posts, read into a stream request: ``ChatRequest`` from the body
``DefaultChatTransport`` sends (``{id, messages, trigger, messageId}`` and the ``body`` fields the
page adds), its ``UIMessage``s turned into the request ``messages`` every route takes.

A UI message is a list of parts. What the model is sent again: text, a user's image files (as
``image_url`` content parts), and each tool part as the assistant's tool call plus the ``tool``
message with its result (its ``output``, ``errorText``, or the user's denial). An assistant
message that ran tools over several steps (``step-start`` between them) becomes one assistant
message per step, each followed by its results. A call that has no result yet goes as nothing
(no upstream takes a call without its result). What only the page shows is left out: reasoning
(DeepSeek refuses its own reasoning back), sources, ``data-*`` parts, ``step-start`` itself. Any
other part is a 400 ``invalid_messages`` naming it, as the rest of ``messages`` is read strictly;
the dicts built here then go through ``request_messages`` like any client's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from .conversations import CONVERSATION_ID
from .errors import StreamRejected

Trigger = Literal["submit-message", "regenerate-message"]
TRIGGERS: tuple[Trigger, ...] = ("submit-message", "regenerate-message")
CHAT_FIELDS = ("id", "messages", "trigger", "messageId")
"""The fields ``DefaultChatTransport`` always sends; every other field of the body is the page's
``body`` option (``model``, ``temperature``...), checked against the route's ``allow``."""
PAGE_ONLY_PARTS = ("reasoning", "step-start", "source-url", "source-document")
"""Parts the model is not sent again (``data-*`` parts neither)."""
RESULT_STATES = ("output-available", "output-error", "output-denied")
"""The states of a tool part that hold the call's result."""
CALL_STATES = ("input-streaming", "input-available", "approval-requested", "approval-responded",
               *RESULT_STATES)  # fmt: skip


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """One request of ``useChat``'s default transport, its messages ready for ``parse_messages``."""

    chat_id: str
    trigger: Trigger
    messages: list[dict[str, Any]]
    """The conversation in the request ``messages`` shape (role, content, tool calls)."""
    fields: dict[str, Any] = field(default_factory=dict)
    """The page's own ``body`` fields."""
    continues: str = ""
    """The id of the assistant message the answer continues (the chat ends with one: its tool
    results are in), which the stream's ``start`` names; empty for a new answer."""


def parse_chat_request(body: dict[str, Any]) -> ChatRequest:
    """The body of a ``useChat`` request, or a 400 saying what is wrong with it."""
    chat_id = body.get("id")
    if not isinstance(chat_id, str) or not CONVERSATION_ID.fullmatch(chat_id):
        raise StreamRejected(
            400,
            "invalid_chat_id",
            "'id' must be the chat's id: 1 to 64 characters of letters, digits, _ and -",
        )
    trigger = body.get("trigger")
    if trigger not in TRIGGERS:
        raise StreamRejected(
            400, "invalid_trigger", f"'trigger' must be one of {', '.join(TRIGGERS)}"
        )
    message_id = body.get("messageId")
    if message_id is not None and not isinstance(message_id, str):
        raise StreamRejected(400, "invalid_field", "'messageId' must be a string")
    ui_messages = body.get("messages")
    if not isinstance(ui_messages, list) or not ui_messages:
        raise _refuse("'messages' must be a non-empty list of UI messages")
    messages = [
        message
        for i, item in enumerate(ui_messages)
        for message in model_messages(item, f"messages[{i}]")
    ]
    fields = {key: value for key, value in body.items() if key not in CHAT_FIELDS}
    last = ui_messages[-1]
    continues = last.get("id") if last.get("role") == "assistant" else ""
    return ChatRequest(
        chat_id, trigger, messages, fields, continues if isinstance(continues, str) else ""
    )


def model_messages(item: object, at: str) -> list[dict[str, Any]]:
    """One UI message as the request messages it stands for (none for an empty reply)."""
    if not isinstance(item, dict):
        raise _refuse(f'{at} must be a UI message: {{"id", "role", "parts": [...]}}')
    role, parts = item.get("role"), item.get("parts")
    if role not in ("system", "user", "assistant"):
        raise _refuse(f"{at}.role must be system, user or assistant")
    if not isinstance(parts, list):
        raise _refuse(f"{at}.parts must be a list of parts")
    if role == "assistant":
        return _assistant(parts, at)
    content: list[dict[str, Any]] = []
    for j, part in enumerate(parts):
        where = f"{at}.parts[{j}]"
        kind = _kind(part, where)
        if kind == "text":
            content.append({"type": "text", "text": _text(part, where)})
        elif kind == "file" and role == "user":
            content.append(_image(part, where))
        elif not _page_only(kind):
            raise _refuse(f"{where} is a {kind!r} part, which a {role} message cannot send")
    if not content:
        raise _refuse(f"{at} has no text to send")
    if all(piece["type"] == "text" for piece in content):  # the plain form every provider takes
        return [{"role": role, "content": "".join(piece["text"] for piece in content)}]
    return [{"role": role, "content": content}]


def _assistant(parts: list[Any], at: str) -> list[dict[str, Any]]:
    """An assistant's parts, one request message per step: its text and the calls that have a
    result, then one ``tool`` message per result. Text after a call opens the next step even
    without a ``step-start`` (the results came between)."""
    messages: list[dict[str, Any]] = []
    text: list[str] = []
    calls: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []

    def end_step() -> None:
        if text or calls:
            message: dict[str, Any] = {"role": "assistant", "content": "".join(text)}
            if calls:
                message["tool_calls"] = list(calls)
            messages.append(message)
        messages.extend(results)
        text.clear()
        calls.clear()
        results.clear()

    for j, part in enumerate(parts):
        where = f"{at}.parts[{j}]"
        kind = _kind(part, where)
        if kind == "text":
            if calls:
                end_step()
            text.append(_text(part, where))
        elif kind.startswith("tool-") or kind == "dynamic-tool":
            answered = _tool(part, kind, where)
            if answered is not None:
                calls.append(answered[0])
                results.append(answered[1])
        elif kind == "step-start":
            if calls:
                end_step()
        elif not _page_only(kind):
            raise _refuse(f"{where} is a {kind!r} part, which an assistant message cannot send")
    end_step()
    return messages


def _tool(
    part: dict[str, Any], kind: str, where: str
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """A tool part as (the assistant's call, the ``tool`` message with its result), or ``None``
    while it has no result."""
    name = part.get("toolName") if kind == "dynamic-tool" else kind.removeprefix("tool-")
    call_id, state = part.get("toolCallId"), part.get("state")
    if not isinstance(name, str) or not name:
        raise _refuse(f"{where}.toolName must be the tool's name")
    if not isinstance(call_id, str) or not call_id:
        raise _refuse(f"{where}.toolCallId must be the call's id")
    if state not in CALL_STATES:
        raise _refuse(f"{where}.state must be one of {', '.join(CALL_STATES)}")
    if state not in RESULT_STATES:
        return None
    if "input" in part and part["input"] is not None:
        arguments = json.dumps(part["input"], ensure_ascii=False)
    elif isinstance(part.get("rawInput"), str):  # arguments that were not JSON: sent as they were
        arguments = part["rawInput"]
    else:
        arguments = "{}"
    if state == "output-available":
        output = part.get("output")
        result = output if isinstance(output, str) else json.dumps(output, ensure_ascii=False)
    elif state == "output-error":
        result = _string(part.get("errorText"), f"{where}.errorText")
    else:
        approval = part.get("approval")
        reason = approval.get("reason") if isinstance(approval, dict) else None
        result = "the user denied this call" + (f": {reason}" if isinstance(reason, str) else "")
    call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
    return call, {"role": "tool", "tool_call_id": call_id, "content": result}


def _image(part: dict[str, Any], where: str) -> dict[str, Any]:
    """A user's file part as the ``image_url`` content part (the one kind of file sent on)."""
    media, url = part.get("mediaType"), part.get("url")
    if not isinstance(media, str) or not media.startswith("image/"):
        raise _refuse(f"{where}: only image files can be sent (mediaType image/...)")
    return {"type": "image_url", "image_url": {"url": _string(url, f"{where}.url")}}


def _kind(part: object, where: str) -> str:
    if not isinstance(part, dict) or not isinstance(part.get("type"), str):
        raise _refuse(f'{where} must be a part: an object with a "type" (a string)')
    kind: str = part["type"]
    return kind


def _page_only(kind: str) -> bool:
    return kind in PAGE_ONLY_PARTS or kind.startswith("data-")


def _text(part: dict[str, Any], where: str) -> str:
    return _string(part.get("text"), f"{where}.text")


def _string(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise _refuse(f"{where} must be a string")
    return value


def _refuse(message: str) -> StreamRejected:
    return StreamRejected(400, "invalid_messages", message)
