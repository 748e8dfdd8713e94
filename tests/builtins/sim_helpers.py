"""Helpers of the simulated provider's tests: the provider as the server builds it, requests, and
what a stream said, reassembled (text, reasoning, whole tool calls, the finish)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from conftest import FAST_SIMULATED, base_config

from streamserver import load_config
from streamserver.types import (
    Delta,
    Finish,
    GenerationRequest,
    Message,
    Provider,
    Reasoning,
    ToolCall,
    ToolCallDelta,
)

QUESTION = "Tell me about streaming."


def simulated(**options: Any) -> Provider:
    """A provider from the ``[providers.simulated]`` section ``FAST_SIMULATED | options``, built by
    its registered factory from validated options, as the server builds it."""
    config = load_config(base_config(providers={"simulated": {**FAST_SIMULATED, **options}}))
    part = config.providers["simulated"]
    return part.registration.factory(part.options)  # type: ignore[operator,no-any-return]


def request(
    prompt: str = QUESTION,
    model: str = "simulated",
    max_tokens: int | None = None,
    **fields: Any,
) -> GenerationRequest:
    """One user message to ``model``; ``fields`` are the request's other fields (``tools``, ...)."""
    return GenerationRequest((Message("user", prompt),), model, max_tokens, **fields)


def tool(name: str, parameters: Any = None, description: str = "") -> dict[str, Any]:
    """A function tool in OpenAI's shape."""
    function: dict[str, Any] = {"name": name, "description": description}
    if parameters is not None:
        function["parameters"] = parameters
    return {"type": "function", "function": function}


@dataclass
class Said:
    """Everything one stream yielded, in order, and what it adds up to."""

    deltas: list[Delta] = field(default_factory=list)

    @property
    def finish(self) -> Finish | None:
        last = self.deltas[-1] if self.deltas else None
        return last if isinstance(last, Finish) else None

    @property
    def text(self) -> str:
        return "".join(d for d in self.deltas if isinstance(d, str))

    @property
    def reasoning(self) -> str:
        return "".join(d.text for d in self.deltas if isinstance(d, Reasoning))

    @property
    def calls(self) -> list[ToolCall]:
        """The tool calls, whole, as the pipeline assembles them from their deltas."""
        calls: dict[int, ToolCall] = {}
        for delta in self.deltas:
            if isinstance(delta, ToolCallDelta):
                call = calls.get(delta.index)
                if call is None:
                    assert delta.id and delta.name, "a call's first delta names it"
                    calls[delta.index] = ToolCall(delta.id, delta.name, "", delta.index)
                else:
                    assert delta.id is None and delta.name is None
                    calls[delta.index] = ToolCall(
                        call.id, call.name, call.arguments + delta.arguments, call.index
                    )
        return [calls[i] for i in sorted(calls)]

    def arguments(self, index: int = 0) -> Any:
        """Call ``index``'s arguments, parsed."""
        return json.loads(self.calls[index].arguments)

    def kinds(self) -> list[str]:
        """The kind of each delta, consecutive repeats folded: ["reasoning", "text", "finish"]."""
        names = {str: "text", Reasoning: "reasoning", ToolCallDelta: "tool_call", Finish: "finish"}
        folded: list[str] = []
        for delta in self.deltas:
            kind = names[type(delta)]
            if not folded or folded[-1] != kind:
                folded.append(kind)
        return folded


async def say(provider: Provider, req: GenerationRequest) -> Said:
    """Every delta of one stream."""
    said = Said()
    async for delta in provider.stream(req):
        said.deltas.append(delta)
    return said
