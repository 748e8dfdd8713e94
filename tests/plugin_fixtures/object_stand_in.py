"""A stand-in for the ``object`` formatter, for the demo page's tests of its JSON mode.

It sends the object stream's events exactly as the wire contract has them (``stream_start``,
``token`` ``{"content", "index"}``, ``object`` ``{"object"}`` when the value changed,
``object_end`` ``{"object", "valid", "errors"}``, ``error`` ``invalid_json`` with the ``offset``,
``stream_end``), so the page can be tested before the real formatter exists. A formatter sees one
event per text segment, so it reads its JSON from the scripted provider's *reasoning* deltas (a
reasoning segment may send several events): script the JSON text as ``{"reasoning": piece}``s.
It checks no schema (it never sees the request): valid means the text is JSON.

Load it with ``plugins.modules = ["scripted_provider", "object_stand_in"]``; it registers
``object``, so it cannot be loaded beside the real one: the tests using it switch to the real
formatter (and the simulated model's ``response_format``) once that is registered.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import jiter

from streamserver import hookimpl
from streamserver.builtins.formatters import ProductionFormatter
from streamserver.types import Event, MessageForm, StreamEnd, StreamFailure

_UNSET = object()


class ObjectStandIn(ProductionFormatter):
    """``production`` plus the object events, fed by the reasoning deltas (see the module)."""

    def __init__(self, options: object, form: MessageForm) -> None:
        super().__init__(options, form)
        self.text = ""
        self.last: object = _UNSET

    def reasoning(self, text: str) -> Sequence[Event]:
        events = [self.event("token", {"content": text, "index": self.index})]
        self.index += 1
        self.text += text
        try:
            value = jiter.from_json(self.text.encode(), partial_mode="trailing-strings")
        except ValueError:
            return events
        if value != self.last:
            self.last = value
            events.append(self.event("object", {"object": value}))
        return events

    def end(self, summary: StreamEnd) -> Sequence[Event]:
        try:
            value = json.loads(self.text)
        except json.JSONDecodeError as exc:
            failure = self.event(
                "error",
                {"error": f"the text is not JSON: {exc.msg}", "code": "invalid_json",
                 "offset": exc.pos, "stream_id": self.stream_id},
            )  # fmt: skip
            return (failure, *super().end(summary))
        verdict = self.event("object_end", {"object": value, "valid": True, "errors": []})
        return (verdict, *super().end(summary))

    def error(self, failure: StreamFailure, summary: StreamEnd) -> Sequence[Event]:
        return super().error(failure, summary)


@hookimpl
def register_formatters(register):
    register("object", ObjectStandIn, description="stand-in for the object formatter (tests)")
