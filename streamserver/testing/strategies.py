"""Hypothesis strategies for what a provider may produce: text deltas that break naive code, and
whole scripts of text, reasoning and tool calls cut anywhere.

The kit's property tests draw from these, and so do the project's own lossless tests: a plugin
is held to exactly the inputs the built-in parts are.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from ..types import PartKind
from .parts import gather_parts
from .scripted import scripted_part

DANGEROUS = [
    "", "\n", "\r\n", "\r", "\n\n", "\r\r", " ", "  ", "data: ", "event: done", "id: 1", "retry: 0",
    ":", "[DONE]", "\\", '"', "🙂", "👨‍👩‍👧", "é", "\u2028", "\x00", "e.g. ", "Mr. ", "3.14", ". ",
    "! ", "? ", "…", "。", "```", "`", "[a](b)",
]  # fmt: skip
"""Deltas that break naive code: line ends of every kind (split CRLFs), SSE field names, JSON
escapes, graphemes of several code points, sentence ends and abbreviations, Markdown marks."""

pieces = st.one_of(st.sampled_from(DANGEROUS), st.text(max_size=8))
"""One text delta: a dangerous one or any short text."""

text_deltas = st.lists(st.one_of(st.sampled_from(DANGEROUS), st.text(max_size=12)), max_size=24)
"""A stream's text deltas."""

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(DANGEROUS)
    | st.text(max_size=6),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3)
    ),
    max_leaves=6,
)
"""A tool call's argument values."""


@dataclass
class Script:
    """A stream as the scripted provider plays it (``deltas``), and what a client must rebuild."""

    deltas: list[Any]
    """In the scripted provider's form: text, ``{"reasoning": ...}``, ``{"tool": i, ...}``."""
    text: str
    reasoning: str
    calls: dict[str, tuple[str, str]]
    """Call id -> (name, arguments JSON text)."""
    kinds: list[PartKind]
    """The kinds of content in order, consecutive repeats merged (empty deltas count for none)."""


def cuts(draw: Any, text: str) -> list[str]:
    """``text`` cut into non-empty fragments at any characters (inside a ``st.composite``)."""
    if not text:
        return []
    points = sorted(draw(st.sets(st.integers(1, max(1, len(text) - 1)), max_size=4)))
    points = [p for p in points if 0 < p < len(text)]
    return [text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True)]


@st.composite
def scripts(draw: Any) -> Script:
    """Text and reasoning in one ordered lane, each tool call (arguments cut at any character) in
    a lane of its own, the lanes interleaved at random: what a model streaming parallel calls
    between its words may send."""
    lanes: list[list[Any]] = [
        draw(st.lists(st.one_of(pieces, pieces.map(lambda t: {"reasoning": t})), max_size=10))
    ]
    calls: dict[str, tuple[str, str]] = {}
    for index in range(draw(st.integers(0, 3))):
        call_id, name = f"call_{index}", draw(st.sampled_from(["lookup", "get_weather", "f_1"]))
        arguments = json.dumps(draw(st.dictionaries(st.text(max_size=4), json_values, max_size=3)))
        fragments = cuts(draw, arguments)
        first = {"tool": index, "id": call_id, "name": name, "arguments": fragments[0]}
        lanes.append([first, *({"tool": index, "arguments": f} for f in fragments[1:])])
        calls[call_id] = (name, arguments)
    deltas: list[Any] = []
    while any(lanes):
        lane = draw(st.sampled_from([lane for lane in lanes if lane]))
        deltas.append(lane.pop(0))
    played = gather_parts(scripted_part(delta) for delta in deltas)
    return Script(deltas, played.text, played.reasoning, calls, played.kinds)
