"""A provider plugin whose options have a required key: ``greeting`` has no default.

Configured without it, loading must stop with a ``ConfigError`` naming the key, as for the core's
own sections; configured with it, every answer is the greeting.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from streamserver import hookimpl
from streamserver.types import Delta, Finish, GenerationRequest


@dataclass(frozen=True, slots=True)
class GreeterOptions:
    """``[providers.greeter]`` options."""

    greeting: str
    """Required: the text of every answer."""
    times: int = 1
    """How many times the greeting is repeated."""


class GreeterProvider:
    """Streams its configured greeting, one word at a time."""

    def __init__(self, options: GreeterOptions) -> None:
        self.text = " ".join([options.greeting] * options.times)

    @property
    def models(self) -> Sequence[str]:
        return ("greeter",)

    async def aclose(self) -> None:
        pass

    def stream(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        return self._run(request.model)

    async def _run(self, model: str) -> AsyncIterator[Delta]:
        for i, word in enumerate(self.text.split(" ")):
            yield word if i == 0 else " " + word
        yield Finish("stop", model)


@hookimpl
def register_providers(register):
    register("greeter", GreeterProvider, options=GreeterOptions)
