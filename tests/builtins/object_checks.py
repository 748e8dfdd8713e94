"""What an object stream promises, checked independently of the formatter's own lexer: the
partial values' prefix consistency, and the value each prefix of a JSON text holds."""

from __future__ import annotations

from typing import Any

import jiter

_SCALAR_CHARS = "0123456789+-.eEtruefalsn"


def consistent(partial: Any, later: Any) -> bool:
    """Whether ``partial`` is an earlier view of ``later`` (a later partial, or the final value):
    dict keys in the same order, each but the last equal, the last consistent; list items the
    same way; a string a prefix; a scalar equal (with its type: ``1`` is not ``1.0`` nor ``True``)."""
    if isinstance(later, dict):
        if not isinstance(partial, dict):
            return False
        keys, later_keys = list(partial), list(later)
        if keys != later_keys[: len(keys)]:
            return False
        return all(
            consistent(partial[k], later[k]) if i == len(keys) - 1 else same(partial[k], later[k])
            for i, k in enumerate(keys)
        )
    if isinstance(later, list):
        if not isinstance(partial, list) or len(partial) > len(later):
            return False
        return all(
            consistent(p, q) if i == len(partial) - 1 else same(p, q)
            for i, (p, q) in enumerate(zip(partial, later, strict=False))
        )
    if isinstance(later, str):
        return isinstance(partial, str) and later.startswith(partial)
    return same(partial, later)


def same(a: Any, b: Any) -> bool:
    """Equal, types included, all the way down."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


NOTHING = object()
"""What a prefix that holds no value yet (``""``, ``"  "``, ``"12"``) holds."""


def held(prefix: str) -> Any:
    """The value a prefix of a JSON text holds, as an object stream must show it: what jiter's
    partial mode reads, a number or literal at the very end (outside a string) left out, since
    it may not be complete."""
    in_string = escaped = False
    for c in prefix:
        if escaped:
            escaped = False
        elif in_string:
            if c == "\\":
                escaped = True
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
    cut = prefix if in_string else prefix.rstrip(_SCALAR_CHARS)
    if not cut.strip():
        return NOTHING
    return jiter.from_json(cut.encode(), partial_mode="trailing-strings")
