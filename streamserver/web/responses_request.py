"""A Responses API request (``POST /v1/responses``) in the pipeline's words.

``input`` (a string, or a list of items: messages with ``input_text`` / ``output_text``
content, ``function_call`` and ``function_call_output`` items, the ``reasoning`` items of a
previous output, dropped as chat completions drop ``reasoning_content``) and ``instructions``
become the messages; the flat function tools (``{"type": "function", "name", "parameters"}``),
``tool_choice``, ``max_output_tokens``, ``text.format``, ``reasoning.effort`` and sampling become
the fields ``request_input.parse_stream_params`` checks, as a chat completions request's do.
What this server cannot honour (hosted tools, images and files, ``previous_response_id``,
background mode, ...) is a 400 naming it, never silently dropped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import StreamRejected
from ..request_messages import valid_text
from ..service import StreamService
from .openai_api import IGNORED_PARAMETERS, check_compatible, requested_model

GENERATION_PARAMETERS = ("model", "input", "instructions", "tools", "tool_choice",
                         "parallel_tool_calls", "max_output_tokens", "temperature", "top_p",
                         "reasoning", "text", "user")  # fmt: skip
"""What a request may say about the generation: all of it is forwarded (or refused)."""
UNHONOURED_PARAMETERS: dict[str, Any] = {
    "background": False,
    "include": [],
    "previous_response_id": None,
    "conversation": None,
    "prompt": None,
    "top_logprobs": None,
    "max_tool_calls": None,
    "truncation": "disabled",
}
"""Known parameters this server cannot honour, each with the one value (besides null) that asks
for nothing: any other value is a 400 ``unsupported_parameter`` naming it."""
KNOWN = frozenset({*GENERATION_PARAMETERS, "stream", "stream_options", *IGNORED_PARAMETERS,
                   *UNHONOURED_PARAMETERS})  # fmt: skip
SUMMARIES = ("auto",)
"""``reasoning.summary`` values taken: the summary is the model's reasoning as it streams it, so
a ``concise`` or ``detailed`` one cannot be promised."""
_STATUSES = (None, "in_progress", "completed", "incomplete")
_ITEM_KEYS = {
    "message": ("type", "role", "content", "id", "status", "phase"),
    "function_call": ("type", "call_id", "name", "arguments", "id", "status", "parsed_arguments"),
    "function_call_output": ("type", "call_id", "output", "id", "status"),
    "reasoning": ("type", "id", "summary", "content", "encrypted_content", "status"),
}
"""The keys of each input item type: what the SDK sends back of a previous output (its stream
helper's ``parsed_arguments`` and ``parsed`` included: derived from what this server sent, and
not sent on)."""
_TEXT = {"type": "text"}
_ROLES = ("user", "system", "developer", "assistant")
_PART_KEYS = {"input_text": {"type", "text"},
              "output_text": {"type", "text", "annotations", "logprobs", "parsed"}}  # fmt: skip


@dataclass(frozen=True, slots=True)
class ResponsesRequest:
    """A checked Responses request: the stream request's fields, how it is answered, and what
    the Response object repeats of it."""

    fields: dict[str, Any]
    """For ``parse_stream_params``: messages, model and the request parameters."""
    stream: bool
    echo: dict[str, Any]


def _refuse(code: str, message: str) -> StreamRejected:
    return StreamRejected(400, code, message)


def read_request(body: Mapping[str, Any], service: StreamService) -> ResponsesRequest:
    """``body`` checked and translated, or a 400 (404 for an unknown model) naming the field."""
    check_compatible(body, KNOWN, UNHONOURED_PARAMETERS)
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise _refuse("invalid_field", "'stream' must be true or false")
    _stream_options(body.get("stream_options"))
    fields: dict[str, Any] = {"model": requested_model(body, service)}
    fields["messages"] = _instructions(body.get("instructions")) + _input(body.get("input"))
    for name in ("parallel_tool_calls", "temperature", "top_p", "user"):
        if body.get(name) is not None:
            fields[name] = body[name]
    if body.get("max_output_tokens") is not None:
        fields["max_tokens"] = body["max_output_tokens"]
    if body.get("tools") is not None:
        fields["tools"] = _tools(body["tools"])
    if body.get("tool_choice") is not None:
        fields["tool_choice"] = _tool_choice(body["tool_choice"])
    reasoning = _reasoning(body.get("reasoning"))
    if reasoning.get("effort") is not None:
        fields["reasoning_effort"] = reasoning["effort"]
    text = _text(body.get("text"))
    if text.get("format", _TEXT) != _TEXT:  # plain text asks for nothing: not sent on
        fields["response_format"] = _format(text["format"])
    echo = {name: body[name] for name in ("instructions", "max_output_tokens", "metadata",
            "parallel_tool_calls", "store", "temperature", "tool_choice", "tools", "top_p",
            "user") if body.get(name) is not None}  # fmt: skip
    echo["reasoning"] = {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")}
    echo["text"] = {"format": text.get("format") or {"type": "text"}}
    return ResponsesRequest(fields, bool(stream), echo)


def _stream_options(options: object) -> None:
    """``stream_options``: only ``include_obfuscation`` (accepted: no padding is added)."""
    if options is None:
        return
    if not isinstance(options, dict) or set(options) - {"include_obfuscation"}:
        raise _refuse(
            "invalid_field", "'stream_options' must be an object with only include_obfuscation"
        )
    if not isinstance(options.get("include_obfuscation", False), bool | None):
        raise _refuse("invalid_field", "'stream_options.include_obfuscation' must be a boolean")


def _instructions(value: object) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, str):
        raise _refuse("invalid_field", "'instructions' must be a string")
    return [{"role": "system", "content": valid_text(value, "'instructions'")}] if value else []


def _input(value: object) -> list[dict[str, Any]]:
    """The input as chat messages: a string is one user message; consecutive function calls
    join the assistant message before them, as chat completions carry them."""
    if isinstance(value, str):
        return [{"role": "user", "content": valid_text(value, "'input'")}]
    if not isinstance(value, list) or not value:
        raise _refuse("invalid_input", "'input' must be a string or a non-empty list of items")
    messages: list[dict[str, Any]] = []
    for i, item in enumerate(value):
        at = f"input[{i}]"
        if not isinstance(item, dict):
            raise _refuse("invalid_input", f"{at} must be an object (a message or an item)")
        kind = item.get("type", "message")
        if not isinstance(kind, str) or kind not in _ITEM_KEYS:
            raise _refuse(
                "unsupported_input",
                f"{at}.type {kind!r} is not taken here; items: {', '.join(_ITEM_KEYS)}",
            )
        unknown = sorted(set(item) - set(_ITEM_KEYS[kind]))
        if unknown:
            raise _refuse("invalid_input", f"{at}.{unknown[0]} is not a key of a {kind} item")
        if item.get("status") not in _STATUSES or not isinstance(item.get("id", ""), str | None):
            raise _refuse(
                "invalid_input", f"{at}: 'id' must be a string and 'status' an item status"
            )
        if kind == "message":
            messages.append(_message(item, at))
        elif kind == "function_call":
            call = {"id": _name(item, "call_id", at), "type": "function",
                    "function": {"name": _name(item, "name", at),
                                 "arguments": _string(item, "arguments", at)}}  # fmt: skip
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item.get("output")
            if isinstance(output, list):
                content: str | list[dict[str, Any]] = _content(output, f"{at}.output", "input_text")
            else:
                content = _string(item, "output", at)
            messages.append({"role": "tool", "tool_call_id": _name(item, "call_id", at),
                             "content": content})  # fmt: skip
    if not messages:
        raise _refuse("invalid_input", "'input' holds no message or tool result to answer")
    return messages


def _message(item: Mapping[str, Any], at: str) -> dict[str, Any]:
    role = item.get("role")
    if role not in _ROLES:
        raise _refuse("invalid_input", f"{at}.role must be one of {', '.join(_ROLES)}")
    content = item.get("content")
    if isinstance(content, str):
        return {"role": role, "content": valid_text(content, f"{at}.content")}
    if role == "assistant":  # a reply sent back: its text, as a chat reply carries it
        parts = _content(content, f"{at}.content", "output_text")
        return {"role": role, "content": "".join(part["text"] for part in parts)}
    return {"role": role, "content": _content(content, f"{at}.content", "input_text")}


def _content(content: object, at: str, part_type: str) -> list[dict[str, Any]]:
    """Text content parts (``input_text``, or an assistant's ``output_text``) as chat's ``text``
    parts; anything else (images, files, refusals) is refused."""
    if not isinstance(content, list) or not content:
        raise _refuse("invalid_input", f"{at} must be a string or a non-empty list of parts")
    parts = []
    for j, part in enumerate(content):
        where = f"{at}[{j}]"
        if not isinstance(part, dict) or part.get("type") != part_type:
            raise _refuse(
                "unsupported_input", f"{where} must be an {part_type} part (only text is taken)"
            )
        # An output_text echoed back carries its (empty) annotations and logprobs.
        keys = _PART_KEYS[part_type]
        if set(part) - keys or part.get("annotations") or part.get("logprobs"):
            raise _refuse("invalid_input", f"{where} takes only {', '.join(sorted(keys))}")
        parts.append({"type": "text", "text": _string(part, "text", where)})
    return parts


def _string(item: Mapping[str, Any], key: str, at: str) -> str:
    value = item.get(key)
    if not isinstance(value, str):
        raise _refuse("invalid_input", f"{at}.{key} must be a string")
    return valid_text(value, f"{at}.{key}")


def _name(item: Mapping[str, Any], key: str, at: str) -> str:
    value = _string(item, key, at)
    if not value:
        raise _refuse("invalid_input", f"{at}.{key} must not be empty")
    return value


def _tools(tools: object) -> list[Any]:
    """The flat function tools in chat completions' shape (``{"type", "function": {...}}``);
    the request parameter checks then read them as a chat request's."""
    if not isinstance(tools, list):
        raise _refuse("invalid_field", "'tools' must be a list of function tools")
    translated: list[Any] = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or tool.get("type") != "function":
            raise _refuse(
                "unsupported_parameter",
                f"tools[{i}]: only function tools are served here ({{'type': 'function', 'name'}})",
            )
        unknown = sorted(set(tool) - {"type", "name", "description", "parameters", "strict"})
        if unknown:
            raise _refuse(
                "invalid_field", f"tools[{i}].{unknown[0]} is not a key of a function tool"
            )
        function = {key: tool[key] for key in ("name", "description", "parameters", "strict")
                    if tool.get(key) is not None}  # fmt: skip
        translated.append({"type": "function", "function": function})
    return translated


def _tool_choice(choice: object) -> object:
    if (
        isinstance(choice, dict)
        and choice.get("type") == "function"
        and set(choice)
        == {
            "type",
            "name",
        }
    ):
        return {"type": "function", "function": {"name": choice["name"]}}
    if isinstance(choice, dict):
        raise _refuse(
            "unsupported_parameter",
            "'tool_choice' is none, auto, required or {'type': 'function', 'name'} here",
        )
    return choice  # a string: checked as a chat request's


def _reasoning(value: object) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict) or set(value) - {"effort", "summary"}:
        raise _refuse("invalid_field", "'reasoning' must be an object with effort and summary")
    if value.get("summary") not in (None, *SUMMARIES):
        raise _refuse(
            "unsupported_parameter",
            "'reasoning.summary' can only be auto or null: the summary is the reasoning as the "
            "model streams it",
        )
    return value


def _text(value: object) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict) or set(value) - {"format", "verbosity"}:
        raise _refuse("invalid_field", "'text' must be an object with format (and verbosity)")
    if value.get("verbosity") is not None:
        raise _refuse("unsupported_parameter", "this server cannot honour 'text.verbosity'")
    return {"format": value["format"]} if value.get("format") is not None else {}


def _format(value: object) -> object:
    """``text.format`` as chat's ``response_format``: a ``json_schema`` format's name, schema,
    description and strictness move under ``json_schema``."""
    if isinstance(value, dict) and value.get("type") == "json_schema":
        named = {key: v for key, v in value.items() if key != "type" and v is not None}
        return {"type": "json_schema", "json_schema": named}
    return value  # text or json_object: checked as a chat request's
