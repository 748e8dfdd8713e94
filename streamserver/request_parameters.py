"""The request parameters beyond messages (``types.REQUEST_PARAMETERS``: tools, ``tool_choice``,
``response_format``, the sampling parameters), each checked for its type and bounds.

One set of checks serves a client's request (``request_input``: a 400 naming the field) and a
route's pinned values (``config``: a config error naming ``routes."<path>".pin.<name>``), so both
are held to the same rules. A check returns the value in the shape a provider gets (OpenAI's), or
raises ``InvalidValue`` saying where and what was expected. Nothing here knows HTTP or TOML.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from .types import REQUEST_PARAMETERS, SAMPLING_PARAMETERS

NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
"""A function's (or a JSON schema's) name, as OpenAI takes it (matched whole, ASCII only)."""
NAME_PATTERN = "^[a-zA-Z0-9_-]{1,64}$"
"""``NAME`` as a JSON Schema pattern."""
TOKEN_ID = re.compile(r"[0-9]{1,10}")
"""A ``logit_bias`` key: a token id in ASCII digits."""
MAX_DEPTH = 32
"""How deeply a structured value (a tool's JSON schema, a content part) may nest: far more than
any real schema needs, and a bound for every provider's encoder and SDK downstream."""
SEED_RANGE = (-(2**63), 2**63 - 1)
"""A seed is a signed 64-bit integer."""
REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh", "max")
"""The ``reasoning_effort`` values the openai SDK's types accept."""
TOOL_CHOICES = ("none", "auto", "required")
RESPONSE_FORMATS = ("text", "json_object", "json_schema")
MAX_STOP = 4
"""``stop`` holds at most this many sequences."""
NUMBER_BOUNDS: dict[str, tuple[float, float]] = {
    "temperature": (0, 2),
    "top_p": (0, 1),
    "presence_penalty": (-2, 2),
    "frequency_penalty": (-2, 2),
}
"""The sampling parameters that are plain numbers, with their bounds (inclusive)."""
NEEDS_TOOLS = ("tool_choice", "parallel_tool_calls")
"""Parameters that mean something only with ``tools``: a request sends them with tools, and a
route's pinned value of one is sent only to requests that have tools."""

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
"""In a Python string from JSON, a surrogate is always alone: ``json`` joins a valid pair."""


class InvalidValue(ValueError):
    """A parameter's value is wrong: ``where`` (``tools[0].function.name``) and what was expected.

    ``code`` is the client's error code: ``invalid_field``, or ``invalid_text`` for a lone
    surrogate (as for every text of a request)."""

    def __init__(self, where: str, expected: str, code: str = "invalid_field") -> None:
        self.where = where
        self.expected = expected
        self.code = code
        super().__init__(f"{where!r} must be {expected}")


def lone_surrogate(text: str) -> str | None:
    """What is wrong with ``text`` if it holds half of a UTF-16 pair (``None`` if nothing)."""
    found = _LONE_SURROGATE.search(text)
    if found is None:
        return None
    return (
        f"a lone surrogate (\\u{ord(found.group()):04x} at character {found.start()}), half of a "
        "UTF-16 pair: send the whole character"
    )


def check_parameter(name: str, value: object) -> Any:
    """``value`` of the request parameter ``name``, checked (``InvalidValue`` otherwise)."""
    return _CHECKS[name](value, name)


def check_together(values: Mapping[str, Any]) -> None:
    """What one parameter says about another: ``tool_choice`` and ``parallel_tool_calls`` need
    ``tools``, and a named ``tool_choice`` must name one of them."""
    tools = values.get("tools") or ()
    for name in NEEDS_TOOLS:
        if values.get(name) is not None and not tools:
            raise InvalidValue(name, "sent together with a non-empty 'tools'")
    choice = values.get("tool_choice")
    if isinstance(choice, Mapping):
        names = [tool["function"]["name"] for tool in tools]
        if choice["function"]["name"] not in names:
            raise InvalidValue(
                "tool_choice.function.name", f"the name of one of 'tools' ({', '.join(names)})"
            )


def parameter_value(value: object) -> str:
    """A short spelling of a value for a message (``0.2``, ``"auto"``, ``[...]``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value + '"' if len(value) <= 40 else '"' + value[:40] + '..."'
    if isinstance(value, int | float):
        return repr(value)
    return "{...}" if isinstance(value, Mapping) else "[...]"


def json_value(value: object, where: str) -> None:
    """``value`` must be plain JSON data (objects with string keys, lists, strings, numbers,
    booleans, null), at most ``MAX_DEPTH`` levels deep, with no lone surrogate in a string.

    Walked with a list, not recursion: a value just under the JSON decoder's own limit would
    otherwise exhaust the stack here."""
    pending: list[tuple[object, str, int]] = [(value, where, 1)]
    while pending:
        item, path, depth = pending.pop()
        if isinstance(item, str):
            _text(item, path)
        elif isinstance(item, Mapping | list):
            if depth > MAX_DEPTH:
                raise InvalidValue(where, f"JSON nested at most {MAX_DEPTH} levels deep")
            if isinstance(item, list):
                pending.extend((v, f"{path}[{i}]", depth + 1) for i, v in enumerate(item))
                continue
            for key, v in item.items():
                if not isinstance(key, str):
                    raise InvalidValue(path, "an object with string keys")
                _text(key, f"{path} (a key)")
                pending.append((v, f"{path}.{key}", depth + 1))
        elif item is not None and not isinstance(item, bool | int | float):
            raise InvalidValue(path, "JSON data (an object, list, string, number, boolean or null)")
        elif isinstance(item, float) and not math.isfinite(item):
            raise InvalidValue(path, "a finite number")


def _text(value: str, where: str) -> str:
    problem = lone_surrogate(value)
    if problem is not None:
        raise InvalidValue(where, f"text without {problem}", code="invalid_text")
    return value


def _string(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise InvalidValue(where, "a string")
    return _text(value, where)


def _object(
    value: object, where: str, keys: tuple[str, ...], required: tuple[str, ...] = ()
) -> dict[str, Any]:
    """``value`` as an object with only ``keys``, each of ``required`` present."""
    if not isinstance(value, dict):
        raise InvalidValue(where, f"an object with the keys {', '.join(keys)}")
    for key in value:
        if key not in keys:
            raise InvalidValue(f"{where}.{key}", f"left out: {where} takes only {', '.join(keys)}")
    for key in required:
        if key not in value:
            raise InvalidValue(f"{where}.{key}", "given (it is required)")
    return value


def _name(value: object, where: str) -> str:
    if not isinstance(value, str) or NAME.fullmatch(value) is None:
        raise InvalidValue(where, "a name of 1 to 64 characters a-z, A-Z, 0-9, _ or -")
    return value


def _boolean(value: object, where: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidValue(where, "true or false")
    return value


def _optional_boolean(value: object, where: str) -> bool | None:
    return None if value is None else _boolean(value, where)


def _number(value: object, where: str, low: float, high: float) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not low <= value <= high  # first: math.isfinite(10**400) raises OverflowError
        or not math.isfinite(value)
    ):
        raise InvalidValue(where, f"a number from {low:g} to {high:g}")
    return value


def _tools(value: object, where: str) -> tuple[dict[str, Any], ...]:
    if not isinstance(value, list):
        raise InvalidValue(where, 'a list of {"type": "function", "function": {...}} tools')
    checked = []
    for i, tool in enumerate(value):
        at = f"{where}[{i}]"
        if isinstance(tool, dict) and tool.get("type") != "function":
            raise InvalidValue(f"{at}.type", '"function" (the one kind of tool served here)')
        tool = _object(tool, at, ("type", "function"), required=("type", "function"))
        _named_schema(tool["function"], f"{at}.function", "parameters")
        checked.append(tool)
    return tuple(checked)


def _tool_choice(value: object, where: str) -> str | dict[str, Any]:
    if isinstance(value, str):
        if value not in TOOL_CHOICES:
            raise InvalidValue(where, f"one of {', '.join(TOOL_CHOICES)}, or a named function")
        return value
    if not isinstance(value, dict):
        raise InvalidValue(
            where, 'one of none, auto, required, or {"type": "function", "function": {"name"}}'
        )
    if value.get("type") != "function":
        raise InvalidValue(f"{where}.type", '"function" (naming one of the tools)')
    choice = _object(value, where, ("type", "function"), required=("type", "function"))
    function = _object(choice["function"], f"{where}.function", ("name",), required=("name",))
    _name(function["name"], f"{where}.function.name")
    return choice


def _response_format(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict) or value.get("type") not in RESPONSE_FORMATS:
        raise InvalidValue(where, f'an object with "type": one of {", ".join(RESPONSE_FORMATS)}')
    if value["type"] != "json_schema":
        return _object(value, where, ("type",))
    checked = _object(value, where, ("type", "json_schema"), required=("json_schema",))
    _named_schema(checked["json_schema"], f"{where}.json_schema", "schema")
    return checked


def _named_schema(value: object, at: str, schema_key: str) -> dict[str, Any]:
    """``{"name", "description"?, <schema_key>?: a JSON Schema, "strict"?}``: a tool's function
    (``parameters``) or a response format's ``json_schema`` (``schema``)."""
    checked = _object(value, at, ("name", "description", schema_key, "strict"), required=("name",))
    _name(checked["name"], f"{at}.name")
    if "description" in checked:
        _string(checked["description"], f"{at}.description")
    if schema_key in checked:
        if not isinstance(checked[schema_key], dict):
            raise InvalidValue(f"{at}.{schema_key}", "an object (a JSON Schema)")
        json_value(checked[schema_key], f"{at}.{schema_key}")
    if "strict" in checked:
        _optional_boolean(checked["strict"], f"{at}.strict")
    return checked


def _stop(value: object, where: str) -> str | list[str]:
    if isinstance(value, str):
        return _text(value, where)
    if not isinstance(value, list) or len(value) > MAX_STOP:
        raise InvalidValue(where, f"a string or a list of at most {MAX_STOP} strings")
    return [_string(item, f"{where}[{i}]") for i, item in enumerate(value)]


def _seed(value: object, where: str) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # 3.0 is an integer, as JSON Schema counts
    low, high = SEED_RANGE
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidValue(where, "an integer that fits in 64 bits (signed)")
    return value


def _logit_bias(value: object, where: str) -> dict[str, float]:
    if not isinstance(value, dict):
        raise InvalidValue(
            where, "an object of token ids (ASCII digits) to numbers from -100 to 100"
        )
    for key, bias in value.items():
        if not isinstance(key, str) or TOKEN_ID.fullmatch(key) is None:
            raise InvalidValue(f"{where} (a key)", "a token id in ASCII digits (at most 10)")
        _number(bias, f"{where}.{key}", -100, 100)
    return value


def _reasoning_effort(value: object, where: str) -> str:
    if value not in REASONING_EFFORTS:
        raise InvalidValue(where, f"one of {', '.join(REASONING_EFFORTS)}")
    assert isinstance(value, str)
    return value


def _bounded(name: str) -> Callable[[object, str], float]:
    low, high = NUMBER_BOUNDS[name]
    return lambda value, where: _number(value, where, low, high)


_CHECKS: dict[str, Callable[[object, str], Any]] = {
    "tools": _tools,
    "tool_choice": _tool_choice,
    "parallel_tool_calls": _boolean,
    "response_format": _response_format,
    **{name: _bounded(name) for name in NUMBER_BOUNDS},
    "stop": _stop,
    "seed": _seed,
    "logit_bias": _logit_bias,
    "user": _string,
    "reasoning_effort": _reasoning_effort,
}
assert set(_CHECKS) == set(REQUEST_PARAMETERS), "every request parameter has its check"
assert set(SAMPLING_PARAMETERS) <= set(_CHECKS)
