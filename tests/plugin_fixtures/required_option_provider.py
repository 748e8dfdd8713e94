"""Plugins whose options have a required key.

- provider ``greeter``: ``greeting`` has no default. Configured without it, loading must stop with
  a ``ConfigError`` naming the key, as for the core's own sections; with it, every answer is the
  greeting.
- buffer ``needy``: ``size`` has no default. Left out of the config it is simply not offered (the
  core builds every other buffer with its defaults); with ``[buffers.needy] size = N`` it cuts the
  text into pieces of N characters.
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


@dataclass(frozen=True, slots=True)
class NeedyOptions:
    """``[buffers.needy]`` options."""

    size: int
    """Required: characters per segment."""


class NeedyBuffer:
    """Segments of exactly ``size`` characters (the rest at the end)."""

    def __init__(self, options: NeedyOptions) -> None:
        self.size = options.size
        self.text = ""

    @property
    def held(self) -> int:
        return len(self.text)

    def push(self, text: str) -> Sequence[str]:
        self.text += text
        cut = len(self.text) - len(self.text) % self.size
        ready, self.text = self.text[:cut], self.text[cut:]
        return [ready[i : i + self.size] for i in range(0, cut, self.size)]

    def flush(self) -> str:
        text, self.text = self.text, ""
        return text


@hookimpl
def register_providers(register):
    register("greeter", GreeterProvider, options=GreeterOptions)


@hookimpl
def register_buffers(register):
    register("needy", NeedyBuffer, options=NeedyOptions)
