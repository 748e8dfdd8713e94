"""A provider plugin for tests: it records every ``GenerationRequest`` it receives, so a test checks
exactly what was forwarded (messages, content parts, tools, sampling), and answers briefly.

It honours the request parameters its ``parameters`` option lists (default: all of them). Its
answer: with ``reasoning_effort`` set, a ``Reasoning`` first; then, when tools are offered and the
last message is not a tool result, one call of the first tool (``call_1``, its arguments in two
fragments) and finish reason ``tool_calls``; otherwise the text ``"recorded"`` (``"result: "`` and
the tool's answer after a tool result). Load it with ``plugins.modules = ["recording_provider"]``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from streamserver import hookimpl
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
class RecordingOptions:
    """``parameters``: what it says it honours; ``models``: the names it serves."""

    parameters: tuple[str, ...] = REQUEST_PARAMETERS
    models: tuple[str, ...] = ("recorder",)


class RecordingProvider:
    """Records each request; yields a short answer (see the module docstring)."""

    def __init__(self, options: RecordingOptions) -> None:
        self.parameters = frozenset(options.parameters)
        self._models = options.models
        self.requests: list[GenerationRequest] = []

    @property
    def models(self) -> Sequence[str]:
        return self._models

    async def aclose(self) -> None:
        pass

    def stream(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        self.requests.append(request)
        return self._answer(request)

    async def _answer(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        if request.sampling.get("reasoning_effort"):
            yield Reasoning("thinking it over")
        last = request.messages[-1]
        if request.tools and last.role != "tool":
            name = request.tools[0]["function"]["name"]
            yield ToolCallDelta(0, "call_1", name, '{"city": ')
            yield ToolCallDelta(0, arguments='"Paris"}')
            yield Finish("tool_calls", request.model, Usage(5, 2))
            return
        yield f"result: {last.text}" if last.role == "tool" else "recorded"
        yield Finish("stop", request.model, Usage(5, 1))


@hookimpl
def register_providers(register):
    register("recording", RecordingProvider, options=RecordingOptions)
