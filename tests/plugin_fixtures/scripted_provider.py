"""A provider plugin for tests: it yields exactly the deltas the prompt asks for.

The last user message is a JSON script::

    {"deltas": ["a", "", "b\\n"], "gap_ms": 0, "then": "end" | "fail" | "hang", "finish": "stop"}

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
from streamserver.types import Delta, Finish, GenerationRequest, Usage


@dataclass(frozen=True, slots=True)
class ScriptedOptions:
    """No real options; ``label`` exists so tests can check option validation of a plugin."""

    label: str = "scripted"


class ScriptedProvider:
    """Yields the scripted deltas; records start and close times."""

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
        return self._run(json.loads(request.messages[-1].content), request.model)

    async def _run(self, script: dict, model: str) -> AsyncIterator[Delta]:
        loop = asyncio.get_running_loop()
        self.started.append(loop.time())
        try:
            for delta in script.get("deltas", []):
                if script.get("gap_ms"):
                    await asyncio.sleep(script["gap_ms"] / 1000)
                self.yielded += 1
                yield delta
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


@hookimpl
def register_providers(register):
    register("scripted", ScriptedProvider, options=ScriptedOptions)
