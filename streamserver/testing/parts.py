"""What a stream of parts says once gathered: text joined, reasoning joined, tool calls rebuilt by
index, and the kinds of content in the order they came.

One gathering serves both sides of a test: what a provider yielded (``gather``) and what a client
rebuilt from a formatter's events (``gather_parts`` over the parts a parser returns), so the two
compare field by field.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..devtools.fake_formats import PlannedCall
from ..types import (
    Delta,
    Finish,
    GenerationRequest,
    PartKind,
    Reasoning,
    ReasoningSignature,
    ToolCallDelta,
)


@dataclass
class Gathered:
    """Every part of one stream, put back together."""

    text: str = ""
    reasoning: str = ""
    calls: list[PlannedCall] = field(default_factory=list)
    """Rebuilt by index: the first delta's id and name, every fragment's arguments joined."""
    indexes: list[int] = field(default_factory=list)
    finish: Finish | None = None
    signatures: list[str] = field(default_factory=list)
    """Each ``ReasoningSignature``, in order."""
    kinds: list[PartKind] = field(default_factory=list)
    """The kinds of content in the order they came, each run of one kind once (an empty text
    or reasoning delta carries no content and counts for none)."""

    def by_id(self) -> dict[str, tuple[str, str]]:
        """The calls as ``{id: (name, arguments)}``."""
        return {call.id: (call.name, call.arguments) for call in self.calls}


def gather_parts(parts: Iterable[Delta]) -> Gathered:
    """Gather ``parts`` (text as ``str``, ``Reasoning`` and its ``ReasoningSignature``,
    ``ToolCallDelta``, at most one ``Finish``, last). A call's first delta must carry its id:
    later ones may name only its index."""
    got = Gathered()
    calls: dict[int, list[Any]] = {}
    for part in parts:
        assert got.finish is None, f"a part after the Finish: {part!r}"
        kind: PartKind
        if isinstance(part, str):
            kind = "text"
            got.text += part
            empty = not part
        elif isinstance(part, Reasoning):
            kind = "reasoning"
            got.reasoning += part.text
            empty = not part.text
        elif isinstance(part, ReasoningSignature):
            assert got.kinds and got.kinds[-1] == "reasoning", "a signature of no reasoning"
            got.signatures.append(part.signature)
            continue
        elif isinstance(part, ToolCallDelta):
            kind, empty = "tool_call", False
            if part.index not in calls:
                assert part.id is not None, f"the first delta of call {part.index} has no id"
                calls[part.index] = [part.id, part.name or "", ""]
            calls[part.index][2] += part.arguments
        else:
            assert isinstance(part, Finish), f"not a part: {part!r}"
            got.finish = part
            continue
        if not empty and (not got.kinds or got.kinds[-1] != kind):
            got.kinds.append(kind)
    got.indexes = sorted(calls)
    got.calls = [PlannedCall(*calls[i]) for i in got.indexes]
    return got


async def gather(provider: Any, request: GenerationRequest) -> Gathered:
    """Run ``provider.stream(request)`` to its end and gather its parts."""
    stream: AsyncIterable[Delta] = provider.stream(request)
    return gather_parts([part async for part in stream])
