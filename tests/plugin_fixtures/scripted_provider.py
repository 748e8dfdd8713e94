"""A provider plugin for tests: it yields exactly the deltas the prompt asks for.

The last user message is a JSON script::

    {"deltas": ["a", "", "b\\n"], "gap_ms": 0, "then": "end" | "fail" | "hang", "finish": "stop"}

A delta is text (a string), or a structured part: ``{"reasoning": "..."}`` yields
``Reasoning``, ``{"tool": 0, "id": "call_1", "name": "f", "arguments": "{\\"a\\""}`` a
``ToolCallDelta`` (``id``, ``name`` and ``arguments`` each optional).

``then = "fail"`` raises a ``ProviderError`` after the deltas; ``"hang"`` waits forever (until the
stream is cancelled). The provider records when each of its iterators was closed, so tests can
prove that cancellation reaches the upstream. Load it with ``plugins.modules =
["scripted_provider"]``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from streamserver import ProviderError, hookimpl
from streamserver.types import (
    REQUEST_PARAMETERS,
    Delta,
    Finish,
    GenerationRequest,
    Reasoning,
    ToolCallDelta,
    Usage,
)


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

    async def _run(self, script: dict, model: str) -> AsyncIterator[Delta]:
        loop = asyncio.get_running_loop()
        self.started.append(loop.time())
        try:
            for delta in script.get("deltas", []):
                if script.get("gap_ms"):
                    await asyncio.sleep(script["gap_ms"] / 1000)
                self.yielded += 1
                yield _delta(delta)
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


def _delta(item: str | dict) -> Delta:
    if isinstance(item, str):
        return item
    if "reasoning" in item:
        return Reasoning(item["reasoning"])
    return ToolCallDelta(item["tool"], item.get("id"), item.get("name"), item.get("arguments", ""))


@hookimpl
def register_providers(register):
    register("scripted", ScriptedProvider, options=ScriptedOptions)
