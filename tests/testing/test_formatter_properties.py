"""``assert_formatter_round_trip``: a built-in formatter passes it over SSE and WebSocket, and a
formatter that drops or changes a part fails it, with the stream and its events."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence

import pytest

from streamserver.builtins.formatters import ProductionFormatter, ProgressFormatter
from streamserver.testing import assert_formatter_round_trip
from streamserver.types import Delta, Event, Reasoning, ToolCallDelta


def production_parts(events: list[Event]) -> Iterator[Delta]:
    """What a client of the ``production`` shape rebuilds (README, "Tool calls and reasoning")."""
    for event in events:
        body = json.loads(event.data)
        kind = event.name or body["type"]
        if kind == "token":
            yield body["content"]
        elif kind == "reasoning":
            yield Reasoning(body["content"])
        elif kind == "tool_call_start":
            yield ToolCallDelta(body["index"], body["id"], body["name"])
        elif kind == "tool_call_delta":
            yield ToolCallDelta(body["index"], arguments=body["arguments"])


def progress_text(events: list[Event]) -> Iterator[Delta]:
    for event in events:
        if event.name == "token":
            yield json.loads(event.data)["content"]


@pytest.mark.parametrize("form", ["sse", "json"])
def test_the_production_formatter_reads_back_to_every_part(form):
    assert_formatter_round_trip(ProductionFormatter, parse=production_parts, form=form)


def test_a_text_only_formatter_is_checked_for_its_text():
    assert_formatter_round_trip(ProgressFormatter, parse=progress_text, carries=("text",))


class LosesReasoning(ProductionFormatter):
    def reasoning(self, text: str) -> Sequence[Event]:
        return ()


class TrimsFragments(ProductionFormatter):
    """Strips the spaces around an argument fragment: JSON still, but not what the model wrote."""

    def tool_call_arguments(self, index: int, fragment: str) -> Sequence[Event]:
        return super().tool_call_arguments(index, fragment.strip())


def test_a_formatter_that_drops_reasoning_fails():
    with pytest.raises(AssertionError, match="reasoning"):
        assert_formatter_round_trip(LosesReasoning, parse=production_parts)


def test_a_formatter_that_changes_tool_call_arguments_fails_showing_the_events():
    with pytest.raises(AssertionError, match=r"tool calls (.|\n)*its events:"):
        assert_formatter_round_trip(TrimsFragments, parse=production_parts)


def test_a_parser_that_misses_the_text_fails():
    def only_reasoning(events: list[Event]) -> Iterator[Delta]:
        return (part for part in production_parts(events) if not isinstance(part, str))

    with pytest.raises(AssertionError, match="text"):
        assert_formatter_round_trip(ProductionFormatter, parse=only_reasoning)
