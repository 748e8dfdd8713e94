"""Run the configured pipeline in your own process, without HTTP: for scripts and notebooks.

::

    async for segment in streamserver.generate("Explain SSE", config="config.toml", buffer="sentence"):
        print(segment.text)

Each ``Segment`` carries its ``index`` and the ``model``; the last one also carries
``finish_reason``. ``stream.text`` is everything so far (``await stream.collect()`` waits for it all);
``stream.reasoning`` the model's reasoning so far, ``stream.tool_calls`` the calls it made (whole,
once it has ended) and ``stream.summary`` the finish reason and usage.
``generate_sync`` is the same for code without an event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from .blocking import iterate_blocking
from .config import Config, load_config
from .errors import ProviderError
from .record import StreamRecord
from .request_input import parse_stream_params
from .service import StreamService
from .settings import STREAM_ALLOW, RouteSettings
from .types import StreamEnd, ToolCall

_ROUTE = RouteSettings(
    transport="ws",
    formatter="text",
    allow=tuple(name for name in STREAM_ALLOW if name != "format"),
)
"""The in-process "route": every choice open to the caller. Segments come from the stream's
record, so its formatter only fills a log nobody parses: the plainest one does."""


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
        self._record: StreamRecord | None = None

    @property
    def text(self) -> str:
        """Everything generated so far."""
        return "".join(self._parts)

    @property
    def reasoning(self) -> str:
        """The model's reasoning so far ("" for a model that shows none)."""
        return "" if self._record is None else "".join(self._record.reasoning)

    @property
    def tool_calls(self) -> tuple[ToolCall, ...]:
        """The tool calls the model made, whole (empty until the generation has ended)."""
        return () if self._record is None else self._record.calls()

    @property
    def summary(self) -> StreamEnd | None:
        """How it ended (finish reason, usage, tool calls), once it has."""
        return None if self._record is None else self._record.summary

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
        stream = await service.start(
            "(in-process)",
            _ROUTE,
            parse_stream_params(fields, _ROUTE, config),
            "json",
            keep_record=True,
        )
        record = self._record = stream.record
        assert record is not None
        log = stream.log
        model = stream.info.model if stream.info is not None else ""
        reader = stream.attach(0)
        held: Segment | None = None  # one segment is held back so the last can carry finish_reason
        taken = 0
        try:
            while True:
                await log.wait(reader.pos)
                log.advance(reader, log.end)  # read: the producer may go on
                reader.delivered = reader.pos
                texts = record.texts
                while taken < len(texts):
                    if held is not None:
                        yield held
                    held = Segment(texts[taken], taken, model)
                    self._parts.append(held.text)
                    taken += 1
                if log.closed and taken == len(record.texts):
                    summary = record.summary
                    if summary is not None and summary.error is not None:
                        raise ProviderError(summary.error.code, summary.error.message)
                    if held is not None:
                        reason = summary.finish_reason if summary is not None else "cancelled"
                        yield Segment(held.text, held.index, model, reason)
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
    messages: list[dict[str, Any]] | None = None,
    model: str | None = None,
    provider: str | None = None,
    buffer: str | None = None,
    max_tokens: int | None = None,
    **parameters: Any,
) -> Generation:
    """Stream an answer from the configured providers in this process.

    ``config`` is what ``load_config`` takes (a path, a dict, a Config); ``None`` uses the built-in
    defaults (the offline ``simulated`` provider). ``messages`` are in the chat completions shape
    (tool calls and results included); ``parameters`` are the request parameters a route takes
    (``tools``, ``tool_choice``, ``temperature``, ...), checked the same way.
    """
    options = {
        "messages": messages,
        "model": model,
        "provider": provider,
        "buffer": buffer,
        "max_tokens": max_tokens,
        **parameters,
    }
    return Generation(prompt, {} if config is None else config, options)


def generate_sync(prompt: str | None = None, **options: Any) -> Iterator[Segment]:
    """``generate`` for code without an event loop: ``for segment in generate_sync("hi"): ...``."""
    loop = asyncio.new_event_loop()
    yield from iterate_blocking(loop, generate(prompt, **options).__aiter__())
