"""A formatter plugin with a bug, for tests: its segments are numbers, not text.

Load it with ``plugins.modules = ["broken_formatter"]``; it registers ``broken``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from streamserver import hookimpl
from streamserver.types import Event, StreamEnd, StreamFailure, StreamStart


class BrokenFormatter:
    """``segment`` returns an int where the contract says str."""

    token_event = "token"

    def __init__(self, options: Any, form: str) -> None:
        pass

    def start(self, info: StreamStart) -> Sequence[Event]:
        return ()

    def segment(self, text: str, tokens: int) -> Any:
        return tokens

    def end(self, summary: StreamEnd) -> Sequence[Event]:
        return (Event("done", '{"type": "done"}'),)

    def error(self, failure: StreamFailure, summary: StreamEnd) -> Sequence[Event]:
        return self.end(summary)


@hookimpl
def register_formatters(register):
    register("broken", BrokenFormatter, description="a formatter with a bug (tests)")
