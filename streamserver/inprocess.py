"""Run the configured pipeline in your own process, without HTTP: for scripts and notebooks.

::

    async for segment in streamserver.generate("Explain SSE", config="config.toml", buffer="sentence"):
        print(segment.text)

Each ``Segment`` carries its ``index`` and the ``model``; the last one also carries
``finish_reason``. ``stream.text`` is everything so far (``await stream.collect()`` waits for it all).
``generate_sync`` is the same for code without an event loop.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from .blocking import iterate_blocking
from .config import Config, load_config
from .errors import ProviderError
from .request_input import parse_stream_params
from .service import StreamService
from .settings import RouteSettings

_ROUTE = RouteSettings(
    transport="ws", formatter="production", allow=("model", "provider", "max_tokens", "buffer")
)
"""The in-process "route": production messages (WebSocket form), every choice open to the caller."""


@dataclass(frozen=True, slots=True)
class Segment:
    """One piece of the answer, with its place in the stream."""

    text: str
    index: int
    model: str
    finish_reason: str | None = None
    """Set on the last segment only: ``stop``, ``length``, ``cancelled``."""


class Generation:
    """An answer being generated: iterate it for segments; ``text`` is what has arrived so far."""

    def __init__(self, prompt: str | None, config: Any, options: Mapping[str, Any]) -> None:
        self._prompt = prompt
        self._config = config
        self._options = dict(options)
        self._parts: list[str] = []

    @property
    def text(self) -> str:
        """Everything generated so far."""
        return "".join(self._parts)

    async def collect(self) -> str:
        """Run to the end and return the whole text."""
        async for _ in self:
            pass
        return self.text

    async def __aiter__(self) -> AsyncGenerator[Segment, None]:
        config: Config = load_config(self._config)
        service = await StreamService.open(config)
        fields: dict[str, Any] = {k: v for k, v in self._options.items() if v is not None}
        if self._prompt is not None:
            fields["prompt"] = self._prompt
        stream = service.start(
            "(in-process)", _ROUTE, parse_stream_params(fields, _ROUTE, config), "json"
        )
        reader = stream.attach(0)
        model = ""
        held: Segment | None = None  # one segment is held back so the last can carry finish_reason
        pos = 0
        try:
            while True:
                await stream.log.wait(pos)
                items = stream.log.read(pos)
                pos += len(items)
                stream.log.advance(reader, pos)
                for item in items:
                    message = json.loads(item)
                    kind = message.get("type")
                    if kind == "stream_start":
                        model = message["model"]
                    elif kind == "token":
                        if held is not None:
                            yield held
                        held = Segment(message["content"], message["index"], model)
                        self._parts.append(held.text)
                    elif kind == "error":
                        raise ProviderError(message["code"], message["error"])
                    elif kind == "stream_end":
                        if held is not None:
                            yield Segment(held.text, held.index, model, message["finish_reason"])
                        return
        finally:
            stream.detach(reader)
            if stream.task is not None and not stream.task.done():
                await asyncio.wait([stream.task], timeout=5)
            await service.close()


def generate(
    prompt: str | None = None,
    *,
    config: Any = None,
    messages: list[dict[str, str]] | None = None,
    model: str | None = None,
    provider: str | None = None,
    buffer: str | None = None,
    max_tokens: int | None = None,
) -> Generation:
    """Stream an answer from the configured providers in this process.

    ``config`` is what ``load_config`` takes (a path, a dict, a Config); ``None`` uses the built-in
    defaults (the offline ``simulated`` provider).
    """
    options = {
        "messages": messages,
        "model": model,
        "provider": provider,
        "buffer": buffer,
        "max_tokens": max_tokens,
    }
    return Generation(prompt, {} if config is None else config, options)


def generate_sync(prompt: str | None = None, **options: Any) -> Iterator[Segment]:
    """``generate`` for code without an event loop: ``for segment in generate_sync("hi"): ...``."""
    loop = asyncio.new_event_loop()
    yield from iterate_blocking(loop, generate(prompt, **options).__aiter__())
