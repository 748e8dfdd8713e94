"""What a provider's stream of parts says once gathered (text joined, reasoning joined, calls
rebuilt by index), for the provider-level tests of the SDK providers (importable from the tests
beside it: pytest puts this directory on ``sys.path``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from streamserver.devtools.fake_upstream import PlannedCall
from streamserver.types import Finish, GenerationRequest, Reasoning, ToolCallDelta


@dataclass
class Gathered:
    """Everything one ``provider.stream(request)`` yielded, put back together."""

    text: str = ""
    reasoning: str = ""
    calls: list[PlannedCall] = field(default_factory=list)
    """Rebuilt by index: the first delta's id and name, every fragment's arguments joined."""
    indexes: list[int] = field(default_factory=list)
    finish: Finish | None = None
    kinds: list[str] = field(default_factory=list)
    """The kinds of part in the order they came, each run of one kind once."""


async def gather(provider: Any, request: GenerationRequest) -> Gathered:
    """Run ``provider.stream(request)`` to its end and gather its parts."""
    got = Gathered()
    calls: dict[int, list[Any]] = {}
    async for part in provider.stream(request):
        assert got.finish is None, "a part after the Finish"
        if isinstance(part, str):
            kind = "text"
            got.text += part
        elif isinstance(part, Reasoning):
            kind = "reasoning"
            got.reasoning += part.text
        elif isinstance(part, ToolCallDelta):
            kind = "tool_call"
            if part.index not in calls:
                calls[part.index] = [part.id, part.name or "", ""]
            calls[part.index][2] += part.arguments
        else:
            assert isinstance(part, Finish)
            got.finish = part
            continue
        if not got.kinds or got.kinds[-1] != kind:
            got.kinds.append(kind)
    got.indexes = sorted(calls)
    got.calls = [PlannedCall(*calls[i]) for i in got.indexes]
    return got
