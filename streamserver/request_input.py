"""What a client sends, read strictly: a JSON object, a number, text, and a stream request's
fields checked into ``StreamParams``.

Every route and transport reads through these (the HTTP body itself is read in
``web/request.py``), so a JSON document nested past Python's recursion limit, a digit that is not
ASCII or half an emoji is refused the same way everywhere: a ``StreamRejected`` (400 or 413) the
HTTP layer answers in the JSON error contract, and the WebSocket answers with an error message on
a socket that stays open. Nothing here knows HTTP.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, get_args

from .config import Config
from .errors import StreamRejected
from .settings import Override, RouteSettings
from .types import Message

MAX_DIGITS = 18
"""A request number has at most this many digits: it fits in 64 bits, and ``int()`` is never
asked for one of the thousands of digits it refuses (``sys.get_int_max_str_digits``)."""


def parse_json_object(text: str | bytes, what: str) -> dict[str, Any]:
    """``text`` as a JSON object, or 400 ``invalid_json`` saying why (``what``: "the body")."""
    try:
        data = json.loads(text)
    except RecursionError:
        # The C decoder recurses per level: a few KB of brackets exhaust the stack.
        raise StreamRejected(400, "invalid_json", f"{what} is nested too deeply") from None
    except ValueError as exc:  # UnicodeDecodeError included
        raise StreamRejected(400, "invalid_json", f"{what} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise StreamRejected(400, "invalid_json", f"{what} must be a JSON object")
    return data


def parse_count(value: object) -> int | None:
    """``value`` as a whole number of 0 or more, or ``None`` if it is not one (the caller refuses
    it, naming the field).

    A JSON integer (``3.0`` is one, as JSON Schema counts), or a string of at most
    ``MAX_DIGITS`` ASCII digits (a query parameter, a header): ``str.isdigit`` alone also takes
    ``²`` (which ``int`` refuses) and Arabic-Indic digits (which ``int`` reads).
    """
    if isinstance(value, str):
        if value.isascii() and value.isdigit() and len(value) <= MAX_DIGITS:
            return int(value)
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


_OVERRIDES: tuple[Override, ...] = get_args(Override)
_FIELDS = frozenset({"prompt", "messages", *_OVERRIDES})
_ROLES = ("system", "user", "assistant")


@dataclass(frozen=True, slots=True)
class StreamParams:
    """A checked stream request: the conversation and the overrides the route allowed."""

    messages: tuple[Message, ...]
    model: str | None = None
    provider: str | None = None
    max_tokens: int | None = None
    buffer: str | None = None
    format: str | None = None


def parse_stream_params(
    fields: Mapping[str, Any], route: RouteSettings, config: Config
) -> StreamParams:
    """Check the fields against the route and the limits."""
    unknown = sorted(set(fields) - _FIELDS)
    if unknown:
        raise StreamRejected(
            400,
            "unknown_field",
            f"unknown field {unknown[0]!r}; known fields: {', '.join(sorted(_FIELDS))}",
        )
    messages = _messages(fields)
    size = sum(len(m.content) for m in messages)
    if size > config.limits.max_prompt_chars:
        raise StreamRejected(
            413,
            "prompt_too_large",
            f"the prompt has {size} characters; the limit is {config.limits.max_prompt_chars}",
        )
    values: dict[str, Any] = {}
    for name in _OVERRIDES:
        if fields.get(name) in (None, ""):
            continue
        if name not in route.allow:
            raise StreamRejected(
                400, "override_not_allowed", f"this route does not accept {name!r}"
            )
        values[name] = fields[name]
    for name in ("model", "provider", "buffer", "format"):
        if name in values and not isinstance(values[name], str):
            raise StreamRejected(400, "invalid_field", f"{name!r} must be a string")
    max_tokens = _max_tokens(values.get("max_tokens"), config.limits.max_tokens)
    for name, choices in (("buffer", config.buffers), ("format", config.formatters)):
        value = values.get(name)
        if value is not None and value not in choices:
            raise StreamRejected(
                400,
                f"unknown_{name}",
                f"unknown {name} {value!r}; choices: {', '.join(sorted(choices))}",
            )
    return StreamParams(
        messages=messages,
        model=values.get("model"),
        provider=values.get("provider"),
        max_tokens=max_tokens,
        buffer=values.get("buffer"),
        format=values.get("format"),
    )


def _messages(fields: Mapping[str, Any]) -> tuple[Message, ...]:
    prompt, messages = fields.get("prompt"), fields.get("messages")
    if prompt is not None and messages is not None:
        raise StreamRejected(400, "invalid_field", "send either 'prompt' or 'messages', not both")
    if messages is None:
        if not isinstance(prompt, str) or not prompt.strip():
            raise StreamRejected(400, "missing_prompt", "a non-empty 'prompt' is required")
        return (Message("user", valid_text(prompt, "'prompt'")),)
    if not isinstance(messages, list) or not messages:
        raise StreamRejected(400, "invalid_messages", "'messages' must be a non-empty list")
    checked = []
    for i, item in enumerate(messages):
        if (
            not isinstance(item, dict)
            or item.get("role") not in _ROLES
            or not isinstance(item.get("content"), str)
            or set(item) - {"role", "content"}
        ):
            raise StreamRejected(
                400,
                "invalid_messages",
                f'messages[{i}] must be {{"role": one of {", ".join(_ROLES)}, "content": a string}}',
            )
        checked.append(Message(item["role"], valid_text(item["content"], f"messages[{i}].content")))
    return tuple(checked)


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
"""In a Python string from JSON, a surrogate is always alone: ``json`` joins a valid pair."""


def valid_text(text: str, where: str) -> str:
    """``text`` if it is valid Unicode, else a 400 naming ``where``.

    JSON can spell half a UTF-16 pair (``"\\ud83d"``), but no provider, store or plain-text client
    can take it: it is refused as bad input here, for every route, rather than fail later.
    """
    found = _LONE_SURROGATE.search(text)
    if found is not None:
        raise StreamRejected(
            400,
            "invalid_text",
            f"{where} holds a lone surrogate (\\u{ord(found.group()):04x} at character "
            f"{found.start()}), half of a UTF-16 pair: send the whole character",
        )
    return text


def _max_tokens(value: object, cap: int) -> int | None:
    if value is None:
        return None
    value = parse_count(value)
    if value is None or value < 1:
        raise StreamRejected(
            400, "invalid_max_tokens", "'max_tokens' must be a positive integer (ASCII digits)"
        )
    if value > cap:
        raise StreamRejected(400, "max_tokens_too_large", f"'max_tokens' may be at most {cap}")
    return value
