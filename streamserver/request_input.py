"""What a client sends, read strictly: a JSON object, a number, text, and a stream request's
fields checked into ``StreamParams`` (its messages by ``request_messages``, its request parameters
by ``request_parameters``, the route's pinned values merged in).

Every route and transport reads through these (the HTTP body itself is read in
``web/request.py``), so a JSON document nested past Python's recursion limit, a digit that is not
ASCII or half an emoji is refused the same way everywhere: a ``StreamRejected`` (400 or 413) the
HTTP layer answers in the JSON error contract, and the WebSocket answers with an error message on
a socket that stays open. Nothing here knows HTTP.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, get_args

from .config import Config
from .errors import StreamRejected
from .request_messages import parse_messages
from .request_messages import valid_text as valid_text  # the routes' one check of text
from .request_parameters import (
    NEEDS_TOOLS,
    NUMBER_BOUNDS,
    InvalidValue,
    check_parameter,
    check_together,
    parameter_value,
)
from .settings import Override, RouteSettings
from .types import REQUEST_PARAMETERS, Message

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
_CHOICES = ("model", "provider", "max_tokens", "buffer", "format")
"""The overrides that choose the pipeline; the rest are ``REQUEST_PARAMETERS``."""
_FIELDS = frozenset({"prompt", "messages", *_OVERRIDES})
assert set(_OVERRIDES) == {*_CHOICES, *REQUEST_PARAMETERS}, "settings.Override lists them all"

QUERY_PARAMETERS = ("temperature", "top_p", "stop", "seed", "presence_penalty",
                    "frequency_penalty", "user", "reasoning_effort")  # fmt: skip
"""The request parameters a query string (``GET /v1/stream``) may carry: the scalar ones, parsed
from their text; ``stop`` once, or repeated for several sequences. The others are JSON (a POST)."""
_QUERY_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,3})?")
"""A number in a query string: ASCII, no ``nan``, ``inf`` or ``1_0`` (all of which ``float`` takes)."""
_QUERY_INTEGER = re.compile(r"[+-]?[0-9]{1,19}")


@dataclass(frozen=True, slots=True)
class StreamParams:
    """A checked stream request: the conversation, the overrides the route allowed, and the
    request parameters (the route's pinned values among them) in the shapes providers get."""

    messages: tuple[Message, ...]
    model: str | None = None
    provider: str | None = None
    max_tokens: int | None = None
    buffer: str | None = None
    format: str | None = None
    tools: tuple[Mapping[str, Any], ...] = ()
    tool_choice: str | Mapping[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: Mapping[str, Any] | None = None
    sampling: Mapping[str, Any] = field(default_factory=dict)
    """The ``SAMPLING_PARAMETERS`` set, by name."""

    @property
    def parameters(self) -> tuple[str, ...]:
        """The names of the ``REQUEST_PARAMETERS`` this request sets (its provider must honour
        each)."""
        structured = {
            "tools": bool(self.tools),
            "tool_choice": self.tool_choice is not None,
            "parallel_tool_calls": self.parallel_tool_calls is not None,
            "response_format": self.response_format is not None,
        }
        return (*(name for name, given in structured.items() if given), *self.sampling)


def parse_stream_params(
    fields: Mapping[str, Any], route: RouteSettings, config: Config
) -> StreamParams:
    """Check the fields against the route (what it allows, what it pins) and the limits."""
    unknown = sorted(set(fields) - _FIELDS)
    if unknown:
        raise StreamRejected(
            400,
            "unknown_field",
            f"unknown field {unknown[0]!r}; known fields: {', '.join(sorted(_FIELDS))}",
        )
    messages = _messages(fields)
    size = sum(len(m.text) + sum(len(c.arguments) for c in m.tool_calls) for m in messages)
    if size > config.limits.max_prompt_chars:
        raise StreamRejected(
            413,
            "prompt_too_large",
            f"the prompt has {size} characters; the limit is {config.limits.max_prompt_chars}",
        )
    values: dict[str, Any] = {}
    for name in _CHOICES:
        if fields.get(name) in (None, ""):
            continue
        _allowed(name, route)
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
    parameters = _parameters(fields, route)
    return StreamParams(
        messages=messages,
        model=values.get("model"),
        provider=values.get("provider"),
        max_tokens=max_tokens,
        buffer=values.get("buffer"),
        format=values.get("format"),
        tools=parameters.pop("tools", ()),
        tool_choice=parameters.pop("tool_choice", None),
        parallel_tool_calls=parameters.pop("parallel_tool_calls", None),
        response_format=parameters.pop("response_format", None),
        sampling=parameters,
    )


def query_fields(items: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """A query string's fields for ``parse_stream_params``: the scalar request parameters read
    from their text (a value that is not a number stays text, and its check refuses it), ``stop``
    a list when it is repeated; an empty value is no value. Any other field is taken as it is,
    the last one when repeated."""
    fields: dict[str, Any] = {}
    stops: list[str] = []
    for name, text in items:
        if name == "stop":
            stops.append(text)
        elif name in REQUEST_PARAMETERS and name not in QUERY_PARAMETERS:
            raise StreamRejected(
                400,
                "invalid_field",
                f"{name!r} is JSON: send it in a POST body, not a query string",
            )
        elif name in QUERY_PARAMETERS:
            if text:
                fields[name] = _query_value(name, text)
            else:
                fields.pop(name, None)
        else:
            fields[name] = text
    if len(stops) == 1 and stops[0]:
        fields["stop"] = stops[0]
    elif len(stops) > 1:
        fields["stop"] = stops
    return fields


def _query_value(name: str, text: str) -> object:
    if name == "seed" and _QUERY_INTEGER.fullmatch(text):
        return int(text)
    if name in NUMBER_BOUNDS and _QUERY_NUMBER.fullmatch(text):
        return float(text)
    return text


def _allowed(name: str, route: RouteSettings) -> None:
    if name not in route.allow:
        raise StreamRejected(400, "override_not_allowed", f"this route does not accept {name!r}")


def _parameters(fields: Mapping[str, Any], route: RouteSettings) -> dict[str, Any]:
    """The request parameters the fields set, checked, with the route's pinned values."""
    values: dict[str, Any] = {}
    try:
        for name in REQUEST_PARAMETERS:
            if fields.get(name) is None:  # null is no value (the SDKs send None so)
                continue
            value = check_parameter(name, fields[name])
            if name in route.pin:
                if value != route.pin[name]:
                    raise StreamRejected(
                        400,
                        "parameter_pinned",
                        f"this route pins {name!r} to {parameter_value(route.pin[name])}",
                    )
            else:
                _allowed(name, route)
            values[name] = value
        for name, pinned in route.pin.items():
            if name not in NEEDS_TOOLS or values.get("tools"):  # those mean nothing without tools
                values[name] = pinned
        check_together(values)
    except InvalidValue as exc:
        raise StreamRejected(400, exc.code, str(exc)) from None
    return values


def _messages(fields: Mapping[str, Any]) -> tuple[Message, ...]:
    prompt, messages = fields.get("prompt"), fields.get("messages")
    if prompt is not None and messages is not None:
        raise StreamRejected(400, "invalid_field", "send either 'prompt' or 'messages', not both")
    if messages is None:
        if not isinstance(prompt, str) or not prompt.strip():
            raise StreamRejected(400, "missing_prompt", "a non-empty 'prompt' is required")
        return (Message("user", valid_text(prompt, "'prompt'")),)
    return parse_messages(messages)


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
