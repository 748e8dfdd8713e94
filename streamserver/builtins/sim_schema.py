"""Plausible values that satisfy a JSON schema: the simulated ``sim-tools`` model's call arguments.

``SchemaValues(root, rng).value()`` walks a tool's ``parameters`` schema and builds a value that
validates against it, drawing every choice from ``rng`` (so a seed repeats it). It follows what
tool schemas use: ``type`` (one or a list), ``enum``, ``const``, objects (``properties``,
``required``, ``additionalProperties``, ``minProperties``/``maxProperties``), arrays (``items``,
``prefixItems``, ``minItems``/``maxItems``, ``uniqueItems``), strings (``minLength``/``maxLength``,
the formats ``date``, ``date-time``, ``time``, ``email``, ``uri``, ``uuid``, ``hostname``,
``ipv4``, ``ipv6``), integers and numbers (``minimum``/``maximum``, exclusive bounds in both the
draft-4 and the 2020-12 forms, ``multipleOf``), booleans, ``null``, ``anyOf``/``oneOf`` (one
branch, taken to exclude the others, as tool schemas' do), ``allOf`` (merged) and ``$ref`` to
the document's own ``$defs``/``definitions``. Property names steer the values (a ``city`` gets a
city, a ``query`` the user's words: ``sim_values``). Not followed: ``pattern``, ``not``, ``if``/``then``,
``contains``, ``dependentRequired``.
"""

from __future__ import annotations

import copy
import json
import math
import random
import re
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

from .sim_values import FORMATS, WORDS, Plausible, integer_range, number_range


class SchemaError(ValueError):
    """The schema cannot be met (contradictory bounds, a ``$ref`` that points nowhere, ...)."""


_DEEP = 4
"""Below this depth optional properties are left out and arrays kept short: recursion ends."""
_MAX_DEPTH = 32


def _unique_key(value: Any) -> str:
    """Equality as JSON Schema sees it: 1 and 1.0 are one value, true and 1 are two."""

    def normal(item: Any) -> Any:
        if isinstance(item, float) and item.is_integer():
            return int(item)
        if isinstance(item, list):
            return [normal(v) for v in item]
        if isinstance(item, dict):
            return {k: normal(v) for k, v in item.items()}
        return item

    return json.dumps(normal(value), sort_keys=True)


class SchemaValues:
    """Values for one schema document (``root`` holds the ``$defs`` its ``$ref``s point into)."""

    def __init__(self, root: Any, rng: random.Random, prompt: str = "") -> None:
        self.root = root
        self.rng = rng
        self.plausible = Plausible(prompt)

    def value(self) -> Any:
        """A value valid against the whole document."""
        return self._value(self.root, "", 0)

    # Schemas

    def _resolve(self, schema: Any, depth: int) -> Any:
        """``schema`` with its ``$ref`` (and ``allOf``) replaced by what they stand for."""
        while isinstance(schema, Mapping) and "$ref" in schema:
            if depth > _MAX_DEPTH:
                raise SchemaError("the schema's $ref recursion has no end that satisfies it")
            target = self._pointer(schema["$ref"])
            rest = {k: v for k, v in schema.items() if k != "$ref"}
            schema = {**target, **rest} if isinstance(target, Mapping) and rest else target
            depth += 1
        if isinstance(schema, Mapping) and "allOf" in schema:
            merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
            for part in schema["allOf"]:
                part = self._resolve(part, depth + 1)
                if part is False:
                    raise SchemaError("an allOf holds a schema that accepts nothing")
                if not isinstance(part, Mapping):
                    continue
                for key, item in part.items():
                    if key == "properties":
                        merged["properties"] = {**merged.get("properties", {}), **item}
                    elif key == "required":
                        merged["required"] = [*merged.get("required", ()), *item]
                    else:
                        merged[key] = item
            schema = merged
        return schema

    def _pointer(self, ref: Any) -> Any:
        if not isinstance(ref, str) or not ref.startswith("#"):
            raise SchemaError(
                f"$ref {ref!r} is not a reference into the schema itself (#/$defs/...)"
            )
        node = self.root
        for token in ref[1:].lstrip("/").split("/") if ref != "#" else ():
            token = token.replace("~1", "/").replace("~0", "~")
            if not isinstance(node, Mapping) or token not in node:
                raise SchemaError(f"$ref {ref!r} points to nothing in the schema")
            node = node[token]
        return node

    def _value(self, schema: Any, name: str, depth: int) -> Any:
        if depth > _MAX_DEPTH:
            raise SchemaError("the schema nests deeper than 32 levels without an end")
        schema = self._resolve(schema, depth)
        if schema is False:
            raise SchemaError("a schema of false accepts no value")
        if not isinstance(schema, Mapping):  # true, or not a schema at all: anything goes
            return self._string({}, name)
        if "const" in schema:
            return copy.deepcopy(schema["const"])
        if "enum" in schema:
            if not schema["enum"]:
                raise SchemaError("an empty enum accepts no value")
            return copy.deepcopy(self.rng.choice(list(schema["enum"])))
        for key in ("oneOf", "anyOf"):
            if key in schema:
                return self._value(self._branch(schema, key, depth), name, depth + 1)
        kind = self._type(schema, depth)
        if kind == "object":
            return self._object(schema, depth)
        if kind == "array":
            return self._array(schema, name, depth)
        if kind == "integer":
            return self._integer(schema, name)
        if kind == "number":
            return self._number(schema, name)
        if kind == "boolean":
            return self.rng.random() < 0.5
        if kind == "null":
            return None
        return self._string(schema, name)

    def _branch(self, schema: Mapping[str, Any], key: str, depth: int) -> Any:
        """One branch of an ``anyOf``/``oneOf``, with the schema's other keys merged in."""
        branches = list(schema[key])
        if not branches:
            raise SchemaError(f"an empty {key} accepts no value")
        if depth >= _DEEP:  # take a branch that ends the recursion when there is one
            ending = [b for b in branches if not (isinstance(b, Mapping) and "$ref" in b)]
            branches = ending or branches
        branch = self._resolve(self.rng.choice(branches), depth + 1)
        rest = {k: v for k, v in schema.items() if k != key}
        if isinstance(branch, Mapping):
            return {**rest, **branch}
        return branch if not rest or branch is False else rest

    def _type(self, schema: Mapping[str, Any], depth: int) -> str:
        kind = schema.get("type")
        if isinstance(kind, list):
            if not kind:
                raise SchemaError("an empty type list accepts no value")
            if depth >= _DEEP:
                flat = [k for k in kind if k not in ("object", "array")]
                kind = flat or kind
            kind = str(self.rng.choice(kind))
        if isinstance(kind, str):
            if kind not in _TYPES:
                raise SchemaError(
                    f"{kind!r} is not a JSON Schema type (one of {', '.join(_TYPES)})"
                )
            return kind
        if {"properties", "required", "additionalProperties"} & schema.keys():
            return "object"
        if {"items", "prefixItems", "minItems", "maxItems"} & schema.keys():
            return "array"
        if {
            "minimum",
            "maximum",
            "exclusiveMinimum",
            "exclusiveMaximum",
            "multipleOf",
        } & schema.keys():
            return "number"
        return "string"

    # Values of each type

    def _object(self, schema: Mapping[str, Any], depth: int) -> dict[str, Any]:
        properties: Mapping[str, Any] = schema.get("properties") or {}
        required = list(dict.fromkeys(schema.get("required") or ()))
        extra = schema.get("additionalProperties", True)
        least = _size_of(schema, "minProperties")
        most = schema.get("maxProperties")
        if most is not None and len(required) > most:
            raise SchemaError("more required properties than maxProperties allows")
        optional = [key for key in properties if key not in required]
        room = len(optional) if most is None else max(0, int(most) - len(required))
        chosen = [key for key in optional if depth < _DEEP and self.rng.random() < 0.6][:room]
        for key in optional:  # minProperties: fill with the properties left out first
            if len(required) + len(chosen) >= least or len(chosen) >= room:
                break
            if key not in chosen:
                chosen.append(key)
        names = required + [key for key in optional if key in chosen]
        while len(names) < least:
            if extra is False:
                raise SchemaError("minProperties needs more properties than the schema allows")
            names.append(f"extra_{len(names)}")
        result: dict[str, Any] = {}
        for key in names:
            sub = properties.get(key, extra if isinstance(extra, Mapping) else True)
            result[key] = self._value(sub, key, depth + 1)
        return result

    def _array(self, schema: Mapping[str, Any], name: str, depth: int) -> list[Any]:
        items = schema.get("items", True)
        prefix = list(schema.get("prefixItems") or (items if isinstance(items, list) else ()))
        rest = items if not isinstance(items, list) else schema.get("additionalItems", True)
        least = _size_of(schema, "minItems")
        most = schema.get("maxItems")
        if rest is False:
            most = len(prefix) if most is None else min(int(most), len(prefix))
        upper = least + 2 if most is None else int(most)
        if least > upper:
            raise SchemaError("minItems is more than the array may hold")
        count = least if depth >= _DEEP else self.rng.randint(min(max(least, 1), upper), upper)
        unique = bool(schema.get("uniqueItems"))
        result: list[Any] = []
        seen: set[str] = set()
        singular = re.sub(r"ies$", "y", name) if name.endswith("ies") else name.removesuffix("s")
        for index in range(count):
            sub = prefix[index] if index < len(prefix) else rest
            for attempt in range(40):  # the name's few plausible values, then any value
                item = self._value(sub, singular if attempt < 8 else "", depth + 1)
                key = _unique_key(item) if unique else ""
                if key not in seen:
                    break
            else:
                if index >= least:
                    break  # enough distinct items already
                raise SchemaError("uniqueItems: the items' schema has too few distinct values")
            if unique:
                seen.add(key)
            result.append(item)
        return result

    def _string(self, schema: Mapping[str, Any], name: str) -> str:
        rng = self.rng
        fmt = schema.get("format")
        if isinstance(fmt, str) and fmt in FORMATS:
            return FORMATS[fmt](rng)
        least = _size_of(schema, "minLength")
        most = schema.get("maxLength")
        if most is not None and least > most:
            raise SchemaError("minLength is more than maxLength")
        words = [self.plausible.string(name, rng)]
        length = len(words[0])
        while length < least:
            words.append(rng.choice(WORDS))
            length += 1 + len(words[-1])
        text = " ".join(words)
        if most is not None and len(text) > most:
            cut = text[: int(most)]
            text = cut.rstrip() if len(cut.rstrip()) >= least else cut
        return text

    def _integer(self, schema: Mapping[str, Any], name: str) -> int:
        low, high = _bounds(schema)
        least = None if low is None else math.floor(low[0]) + 1 if low[1] else math.ceil(low[0])
        most = None if high is None else math.ceil(high[0]) - 1 if high[1] else math.floor(high[0])
        step = _step(schema)
        # An integer that is a multiple of p/q is a multiple of p.
        whole = 1 if step is None else Fraction(str(step)).numerator
        least, most = _range(least, most, integer_range(name), whole)
        first, last = math.ceil(least / whole), math.floor(most / whole)
        if step is None:
            return self.rng.randint(first, last)
        for k in self._ks(first, last):
            if isinstance(step, int) or (k * whole / step).is_integer():
                return k * whole
        raise SchemaError(f"no multiple of {step} lies within the bounds")

    def _number(self, schema: Mapping[str, Any], name: str) -> float | int:
        low, high = _bounds(schema)
        step = _step(schema)
        least, most = _range(
            None if low is None else low[0], None if high is None else high[0],
            number_range(name), step,
        )  # fmt: skip

        def fits(x: float) -> bool:
            above = low is None or (x > low[0] if low[1] else x >= low[0])
            below = high is None or (x < high[0] if high[1] else x <= high[0])
            return above and below

        rng = self.rng
        if step is not None:
            for k in self._ks(math.ceil(least / step), math.floor(most / step)):
                candidate = k * step
                if fits(candidate) and (isinstance(step, int) or (candidate / step).is_integer()):
                    return candidate
            raise SchemaError(f"no multiple of {step} lies within the bounds")
        for _ in range(20):
            candidate = round(rng.uniform(least, most), 2)
            if fits(candidate):
                return candidate
        middle: float = (least + most) / 2
        if fits(middle):
            return middle
        raise SchemaError("the number's bounds leave no room")

    def _ks(self, first: int, last: int) -> list[int]:
        """Multipliers to try for a ``multipleOf``: a few at random, then the lowest in order
        (a float step's multiples are not all multiples as JSON Schema computes them)."""
        if first > last:
            return []
        return [
            *(self.rng.randint(first, last) for _ in range(20)),
            *range(first, min(last, first + 200) + 1),
        ]


_TYPES = ("object", "array", "string", "integer", "number", "boolean", "null")

MAX_SIZE = 10_000
"""The largest ``minLength``, ``minItems`` or ``minProperties`` the simulated model writes."""


def _size_of(schema: Mapping[str, Any], keyword: str) -> int:
    """A ``min*`` size keyword: a whole number up to ``MAX_SIZE``, else ``SchemaError``."""
    value = schema.get(keyword, 0)
    if type(value) is float and value.is_integer():
        value = int(value)
    if type(value) is not int or value < 0:
        raise SchemaError(f"{keyword} must be a whole number of 0 or more")
    if value > MAX_SIZE:
        raise SchemaError(f"{keyword} {value} is more than the simulated model writes ({MAX_SIZE})")
    return value


def _bounds(
    schema: Mapping[str, Any],
) -> tuple[tuple[float, bool] | None, tuple[float, bool] | None]:
    """(lower, exclusive) and (upper, exclusive), in the 2020-12 or the draft-4 form."""

    def one(inclusive: str, exclusive: str) -> tuple[float, bool] | None:
        strict = schema.get(exclusive)
        if isinstance(strict, bool):  # draft 4: a flag on minimum/maximum
            return (schema[inclusive], strict) if inclusive in schema else None
        limits = [(schema[inclusive], False)] if inclusive in schema else []
        if strict is not None:
            limits.append((strict, True))
        if not limits:
            return None
        if inclusive == "minimum":  # the stricter bound wins; at one value, the exclusive one
            return max(limits, key=lambda limit: (limit[0], limit[1]))
        return min(limits, key=lambda limit: (limit[0], not limit[1]))

    return one("minimum", "exclusiveMinimum"), one("maximum", "exclusiveMaximum")


def _step(schema: Mapping[str, Any]) -> int | float | None:
    step = schema.get("multipleOf")
    if step is not None and (isinstance(step, bool) or not step > 0):
        raise SchemaError(f"multipleOf must be a number above 0, not {step!r}")
    return step


def _range(least: Any, most: Any, default: tuple[Any, Any], step: Any = None) -> tuple[Any, Any]:
    """The schema's bounds, the missing ones from ``default`` (moved to fit the other, and wide
    enough for ten multiples of ``step``)."""
    low, high = default
    if least is None and most is None:
        least, most = low, high
    elif least is None:
        least = low if low < most else most - (high - low)
        if step:
            least = min(least, most - 10 * step)
    elif most is None:
        most = high if high > least else least + (high - low)
        if step:
            most = max(most, least + 10 * step)
    if least > most:
        raise SchemaError(f"the bounds leave no room (at least {least}, at most {most})")
    return least, most
