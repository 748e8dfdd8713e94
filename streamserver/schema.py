"""Turn a TOML table into a frozen dataclass, or say exactly which key is wrong and why.

Used for the core's own sections and for every plugin's declared options, so an operator gets the
same kind of message wherever the mistake is: the dotted key, what was expected, what was found.
Supported field types: ``str``, ``int``, ``float``, ``bool``, ``Literal[...]``, ``X | None``,
``tuple[T, ...]``, ``dict[str, T]`` and nested dataclasses. A number may declare its bounds with
``Annotated``: ``ttft_ms: Annotated[float, AT_LEAST_ZERO] = 300.0`` refuses ``-5`` with the key and
"expected a number at least 0"; ``Range`` makes any other bound.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from .errors import ConfigError

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Range:
    """The values a number option accepts, declared as ``Annotated[int, Range(1, 65535)]``."""

    minimum: float | None = None
    maximum: float | None = None
    minimum_excluded: bool = False
    """True: the value must be greater than ``minimum`` (a rate or a size that cannot be 0)."""

    def admits(self, value: float) -> bool:
        """Whether ``value`` lies in the range."""
        low, high = self.minimum, self.maximum
        above_low = low is None or value > low or (value == low and not self.minimum_excluded)
        return above_low and (high is None or value <= high)

    def describe(self) -> str:
        """``at least 0``, ``greater than 0``, ``from 1 to 65535``."""
        low, high = _number(self.minimum), _number(self.maximum)
        if self.minimum is not None and self.maximum is not None and not self.minimum_excluded:
            return f"from {low} to {high}"
        bounds = []
        if self.minimum is not None:
            bounds.append(f"greater than {low}" if self.minimum_excluded else f"at least {low}")
        if self.maximum is not None:
            bounds.append(f"at most {high}")
        return " and ".join(bounds)


AT_LEAST_ZERO = Range(minimum=0)
"""A duration, a count or a rate where 0 has a meaning (none, off, no pause)."""
AT_LEAST_ONE = Range(minimum=1)
"""A count or a size that must hold something."""
ABOVE_ZERO = Range(minimum=0, minimum_excluded=True)
"""A duration or a rate that must be positive (0 would divide by zero or never happen)."""


def _number(value: float | None) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def build(cls: type[T], table: object, key: str) -> T:
    """Validate ``table`` (a parsed TOML table) into an instance of the dataclass ``cls``.

    ``key`` is the dotted path of the table, used in error messages. Unknown keys, wrong types and
    missing required values raise ``ConfigError`` naming the offending key.
    """
    if not isinstance(table, Mapping):
        raise ConfigError(key, "a table", got=table)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    hints = typing.get_type_hints(cls, include_extras=True)  # keeps Annotated bounds
    for name in table:
        if name not in fields:
            raise ConfigError(join_key(key, name), "a known key", choices=fields)
    values: dict[str, Any] = {}
    for name, f in fields.items():
        if name in table:
            values[name] = convert(hints[name], table[name], join_key(key, name))
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(
                join_key(key, name), f"a value for this required key ({describe(hints[name])})"
            )
    return cls(**values)


def convert(hint: Any, value: object, key: str) -> Any:
    """Check ``value`` against the type ``hint``; return it in the dataclass's form."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is Annotated:
        converted = convert(args[0], value, key)  # a wrong type is said as for the plain type
        for bound in _ranges(hint):
            if not bound.admits(converted):
                raise ConfigError(key, describe(hint), got=value)
        return converted
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        for option in options:
            try:
                return convert(option, value, key)
            except ConfigError:
                continue
        raise ConfigError(key, describe(hint), got=value)
    if origin is typing.Literal:
        if value in args:
            return value
        raise ConfigError(key, "one of the choices", got=value, choices=[str(a) for a in args])
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(key, describe(hint), got=value)
        return tuple(convert(args[0], item, f"{key}[{i}]") for i, item in enumerate(value))
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(key, describe(hint), got=value)
        return {str(k): convert(args[1], v, join_key(key, str(k))) for k, v in value.items()}
    if dataclasses.is_dataclass(hint):
        return build(hint, value, key)  # type: ignore[arg-type]
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    elif hint is Any or hint is object:
        return value
    raise ConfigError(key, describe(hint), got=value)


def describe(hint: Any) -> str:
    """A person's name for a type: ``a list of strings``, ``a number``, ``one of "a", "b"``."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is Annotated:
        return " ".join([describe(args[0]), *(bound.describe() for bound in _ranges(hint))])
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe(a) for a in args if a is not type(None))
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin is tuple:
        return f"a list of {_plural(args[0])}"
    if origin is dict:
        return f"a table of {_plural(args[1])}"
    if dataclasses.is_dataclass(hint):
        return "a table"
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    return names.get(hint, str(hint))


def _ranges(hint: Any) -> list[Range]:
    return [meta for meta in hint.__metadata__ if isinstance(meta, Range)]


def _plural(hint: Any) -> str:
    names = {bool: "booleans", int: "integers", float: "numbers", str: "strings"}
    return names.get(hint, describe(hint))


def join_key(key: str, name: str) -> str:
    """Dotted key, quoting names that TOML would quote (``routes."/stream".buffer``)."""
    part = name if name.replace("_", "").replace("-", "").isalnum() else f'"{name}"'
    return f"{key}.{part}" if key else part
