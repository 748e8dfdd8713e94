"""A provider plugin for tests: it yields exactly the deltas the prompt asks for.

The kit's fixtures load it into every app they start (``plugins.modules =
["streamserver.testing.scripted"]`` elsewhere), so a buffer's or a formatter's test can send the
exact deltas it wants through a real stream; ``streamserver.testing.script`` writes the prompt.

The last user message is a JSON script::

    {"deltas": ["a", "", "b\\n"], "gap_ms": 0, "then": "end" | "fail" | "hang", "finish": "stop"}

A delta is text (a string), or a structured part: ``{"reasoning": "..."}`` yields
``Reasoning`` (``{"signature": "..."}`` its ``ReasoningSignature``),
``{"tool": 0, "id": "call_1", "name": "f", "arguments": "{\\"a\\""}`` a
``ToolCallDelta`` (``id``, ``name`` and ``arguments`` each optional).

``then = "fail"`` raises a ``ProviderError`` after the deltas; ``"hang"`` waits forever (until the
stream is cancelled). The provider records when each of its iterators was closed, so tests can
prove that cancellation reaches the upstream.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ProviderError
from ..hookspecs import Register, hookimpl
from ..types import (
    REQUEST_PARAMETERS,
    Delta,
    Finish,
    GenerationRequest,
    Reasoning,
    ReasoningSignature,
    ToolCallDelta,
    Usage,
)


def script(deltas: Sequence[str | dict[str, Any]], **options: Any) -> str:
    """The prompt that makes the scripted provider yield ``deltas`` (``options``: ``gap_ms``,
    ``then``, ``finish``); send it with ``model = "scripted"``."""
    return json.dumps({"deltas": list(deltas), **options})


@dataclass(frozen=True, slots=True)
class ScriptedOptions:
    """No real options; ``label`` exists so tests can check option validation of a plugin."""

    label: str = "scripted"


class ScriptedProvider:
    """Yields the scripted deltas; records start and close times."""

    parameters = frozenset(REQUEST_PARAMETERS)
    """Every request parameter is accepted (``tools`` from a client's ``bind_tools``...): the script,
    not the request, decides what it yields."""

    def __init__(self, options: ScriptedOptions) -> None:
        self.options = options
        self.started: list[float] = []
        self.closed: list[float] = []
        self.yielded = 0
        self.requests: list[GenerationRequest] = []

    @property
    def models(self) -> Sequence[str]:
        return ("scripted",)

    async def aclose(self) -> None:
        pass

    def stream(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        self.requests.append(request)
        return self._run(json.loads(request.messages[-1].text), request.model)

    async def _run(self, script: dict[str, Any], model: str) -> AsyncIterator[Delta]:
        loop = asyncio.get_running_loop()
        self.started.append(loop.time())
        try:
            for delta in script.get("deltas", []):
                if script.get("gap_ms"):
                    await asyncio.sleep(script["gap_ms"] / 1000)
                self.yielded += 1
                yield scripted_part(delta)
            then = script.get("then", "end")
            if then == "fail":
                raise ProviderError("upstream_error", "the scripted upstream failed")
            if then == "hang":
                await asyncio.Event().wait()
            yield Finish(
                script.get("finish", "stop"), model, Usage(1, len(script.get("deltas", [])))
            )
        finally:
            self.closed.append(loop.time())


def scripted_part(item: str | dict[str, Any]) -> Delta:
    """The part one delta of a script stands for."""
    if isinstance(item, str):
        return item
    if "reasoning" in item:
        return Reasoning(item["reasoning"])
    if "signature" in item:
        return ReasoningSignature(item["signature"])
    return ToolCallDelta(item["tool"], item.get("id"), item.get("name"), item.get("arguments", ""))


@hookimpl
def register_providers(register: Register) -> None:
    register("scripted", ScriptedProvider, options=ScriptedOptions)
