"""The ``object`` formatter: ``production``'s events, plus the JSON value the text holds while it
forms and, at the end, the whole value checked against the request's schema.

Per text segment: the ``token`` event exactly as ``production`` sends it (the text stays
lossless and resumable). After the segments of one event-loop iteration (``after_segments``):
``object`` ``{"object": <partial value>}`` when they changed the value (``PartialJSON`` says when
without parsing the rest of the time), so a burst of segments costs one parse and one event, and
a paced stream gets one per segment that changed it, never later than its token. At the end, before
``stream_end``: ``object_end`` ``{"object", "valid", "errors"}`` (the value as ``json.loads``
reads the whole text; ``errors`` the schema's, the best match first, each with its JSON path), or
``error`` ``invalid_json`` with the character offset where the text stopped being JSON.

The schema comes from the request: the service gives a formatter whose options have a
``response_format`` field the request's ``response_format`` (``StreamService.start``). A
``json_schema`` one validates the value; ``json_object``, or none, takes any JSON. A schema that
is not one (``{"type": 12}``) is a 400 before the stream starts.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from ..errors import StreamRejected
from ..hookspecs import Register, hookimpl
from ..types import Event, MessageForm, StreamEnd
from .formatters import ProductionFormatter, json_text
from .partial_json import PartialJSON

MAX_ERRORS = 20
"""The schema errors an ``object_end`` lists at most (the best match first)."""


@dataclass(frozen=True, slots=True)
class ObjectOptions:
    """``[formatters.object]`` options."""

    response_format: dict[str, Any] | None = None
    """Set for each stream from the request's ``response_format`` (a route that always wants
    one pins it: ``[routes."/v1/stream".pin] response_format = {...}``)."""


class SchemaCheck:
    """A value against one schema: ``jsonschema`` says what is wrong, the best match first,
    each error with its JSON path; ``jsonschema-rs`` says first whether anything is (about 1 µs
    where ``jsonschema`` takes 1 ms for a 10-item object, 4 µs per token of a 267-token one), so
    a valid value, the usual case, never runs the slow one. Formats are annotations in both, as
    ``jsonschema`` treats them by default. A schema that passes its metaschema but cannot be
    compiled (a ``$ref`` to a remote schema: the server fetches none; a ``$schema`` of no known
    draft) is a ``SchemaError`` here, a 400 before the stream starts, not a failure at its end.
    Where the two could differ (a ``pattern`` in a corner of one regex dialect), a value
    ``jsonschema-rs`` finds valid stands."""

    __slots__ = ("fast", "full")

    def __init__(self, schema: Any) -> None:
        import jsonschema
        import jsonschema_rs

        cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
        cls.check_schema(schema)
        self.full = cls(schema)
        try:
            self.fast = jsonschema_rs.validator_for(schema, validate_formats=False, offline=True)
        except (ValueError, jsonschema_rs.ReferencingError) as exc:  # its ValidationError is one
            raise jsonschema.SchemaError(str(exc).partition("\n")[0]) from None

    def errors(self, value: Any) -> list[dict[str, str]]:
        """What is wrong with ``value`` (``{"path", "message"}`` each, at most ``MAX_ERRORS``,
        the best match first); none when it satisfies the schema."""
        if self.fast.is_valid(value):
            return []
        found = list(self.full.iter_errors(value))
        if not found:
            return []
        from jsonschema.exceptions import best_match

        best = best_match(found)
        ordered = [best, *(e for e in found if e is not best)][:MAX_ERRORS]
        return [{"path": e.json_path, "message": e.message} for e in ordered]


@functools.lru_cache(maxsize=64)
def _validator(schema_text: str) -> SchemaCheck:
    """The check of a schema (given as its JSON text, so it can be a cache key): its
    ``$schema``'s draft, else 2020-12. Checked against the draft's metaschema once, not per
    stream (a few hundred microseconds)."""
    return SchemaCheck(json.loads(schema_text))


def schema_validator(response_format: Mapping[str, Any] | None) -> SchemaCheck | None:
    """The validator of a ``json_schema`` response format (None: any JSON goes); a schema that
    is not a valid JSON Schema is a 400 ``invalid_field`` saying where."""
    if not response_format or response_format.get("type") != "json_schema":
        return None
    schema = (response_format.get("json_schema") or {}).get("schema")
    if schema is None:
        return None
    # Here, not at start-up: the two validators are ~6 MB resident, paid by a server once a
    # stream asks for a schema (its first such stream waits ~25 ms for the import).
    import jsonschema

    try:
        return _validator(json.dumps(schema, sort_keys=True))
    except jsonschema.SchemaError as exc:
        where = "".join(f"[{p!r}]" if isinstance(p, int) else f".{p}" for p in exc.absolute_path)
        raise StreamRejected(
            400,
            "invalid_field",
            f"response_format.json_schema.schema{where} is not a valid JSON Schema: {exc.message}",
        ) from None


def _object_json(value: Any) -> str:
    """JSON text of a value: orjson (about 5x the standard encoder on these trees), the standard
    encoder for what orjson refuses (an integer past 64 bits)."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json_text({"v": value})[6:-1]


class ObjectFormatter(ProductionFormatter):
    """See the module docstring."""

    def __init__(self, options: ObjectOptions, form: MessageForm) -> None:
        super().__init__(options, form)
        self.validator = schema_validator(options.response_format)
        self.partial = PartialJSON()
        self.pending = False
        self.last = ""
        """The JSON of the last ``object`` event's value."""
        self.head = '{"type": "object", "object": ' if self.json else '{"object": '

    def segment(self, text: str, tokens: int) -> str:
        """``production``'s token event; the text goes on to the partial value."""
        if self.partial.feed(text):
            self.pending = True
        return super().segment(text, tokens)

    def after_segments(self) -> Sequence[Event]:
        """``object`` with the value parsed so far, when the segments since the last call
        changed it."""
        if not self.pending:
            return ()
        self.pending = False
        has, value = self.partial.value()
        if not has:
            return ()
        encoded = _object_json(value)
        if encoded == self.last:  # a piece that could have changed it did not (a lone surrogate)
            return ()
        self.last = encoded
        return (Event(None if self.json else "object", self.head + encoded + "}"),)

    def end(self, summary: StreamEnd) -> Sequence[Event]:
        """``object_end`` (or ``error`` ``invalid_json``), then ``stream_end``; after a failure
        (its ``error`` event already sent) ``stream_end`` only: the text is not a whole value."""
        if summary.error is not None:
            return super().end(summary)
        text = self.partial.text
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            message = f"the text is not JSON: {exc.msg} at character {exc.pos}"
            error = self.event(
                "error",
                {"error": message, "code": "invalid_json", "message": message,
                 "offset": exc.pos, "stream_id": self.stream_id},
            )  # fmt: skip
            return (error, *super().end(summary))
        errors = self.validator.errors(value) if self.validator is not None else []
        payload = {"object": value, "valid": not errors, "errors": errors}
        return (self.event("object_end", payload), *super().end(summary))


@hookimpl
def register_formatters(register: Register) -> None:
    """The object stream."""
    register(
        "object",
        ObjectFormatter,
        options=ObjectOptions,
        description="production's events, object with the partial value, object_end validated",
    )
