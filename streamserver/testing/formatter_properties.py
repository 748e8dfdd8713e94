"""One call that proves a formatter's events carry the whole stream.

``assert_formatter_round_trip(MyFormatter, MyOptions(), parse=my_parse)`` plays streams drawn by
hypothesis (text, reasoning and parallel tool calls, arguments cut at any character, interleaved;
some ending in an upstream failure) through the real pipeline, with the scripted provider and the
formatter under test, through several buffers, then hands each stream's events to ``parse``: the
author's own client-side reader. It fails with the smallest stream whose parts do not come back
exactly, in the order the provider produced them.

The pipeline runs in this process (``StreamService``, as ``streamserver.generate`` runs it): the
formatter gets the very calls it gets in production (``start``, ``boundary``, ``segment``,
``reasoning``, the tool-call members, ``end`` or ``error``), and the events are read back from
the stream's log in the wire form the transports write (SSE bytes, decoded by the project's SSE
decoder, or JSON messages).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ..config import Config, load_config
from ..hookspecs import Register, hookimpl
from ..plugins import PluginRegistry
from ..request_input import parse_stream_params
from ..service import StreamService
from ..settings import RouteSettings
from ..sse_decoder import SSEDecoder
from ..types import Delta, Event, MessageForm, PartKind
from . import scripted
from .parts import Gathered, gather_parts
from .strategies import Script, scripts

FORMATTER = "formatter-under-test"
"""The name the formatter under test is registered under in the round trip's app."""

Parser = Callable[[list[Event]], Iterable[Delta]]
"""The author's reader: a stream's events in order -> the parts they carry (text as ``str``,
``Reasoning``, ``ToolCallDelta``: a call's first delta with its id and name)."""


def assert_formatter_round_trip(
    factory: Callable[[Any, MessageForm], Any],
    options: Any = None,
    *,
    parse: Parser,
    form: MessageForm = "sse",
    carries: Collection[PartKind] = ("text", "reasoning", "tool_call"),
    buffers: Sequence[str] = ("raw", "word", "sentence"),
    max_examples: int = 50,
) -> None:
    """Prove that what ``parse`` reads from the events of ``factory(options, form)`` is exactly
    the stream's text, reasoning and tool calls, in order; raise ``AssertionError`` with the
    smallest counterexample and its events if not.

    ``form`` is the wire form to check: ``"sse"`` (``Event(name, data)`` per SSE event, ``name``
    ``None`` for the default ``message``) or ``"json"`` (``Event(None, message)`` per WebSocket
    message). ``carries`` lists the kinds of content the shape has a place for; a text-only
    formatter says ``("text",)`` and is checked to give back every character of text, whatever
    else the stream held. Call it from a plain (not async) test.
    """
    assert "text" in carries, "a formatter carries the text at least"
    config = _round_trip_config(factory, options)
    with asyncio.Runner() as runner:
        service = runner.run(StreamService.open(config))
        try:

            @settings(max_examples=max_examples, deadline=None)
            @given(wanted=scripts(), buffer=st.sampled_from(buffers), fails=st.booleans())
            def round_trip(wanted: Script, buffer: str, fails: bool) -> None:
                events = runner.run(_play(service, config, wanted, buffer, form, fails))
                _compare(wanted, gather_parts(parse(events)), carries, events)

            round_trip()
        finally:
            runner.run(service.close())


class _FormatterUnderTest:
    """The plugin that registers the formatter under test, with the options the author gave."""

    def __init__(self, factory: Callable[[Any, MessageForm], Any], options: Any) -> None:
        self.factory = factory
        self.options = options

    @hookimpl
    def register_formatters(self, register: Register) -> None:
        """Offer the formatter under ``FORMATTER``."""
        register(FORMATTER, self.make)

    def make(self, _options: object, form: MessageForm) -> Any:
        """One formatter for one stream."""
        return self.factory(self.options, form)


def _round_trip_config(factory: Callable[[Any, MessageForm], Any], options: Any) -> Config:
    # Plugins loaded by hand: no entry points (an installed copy of the same formatter would
    # register its name twice) and no plugins directory.
    registry = PluginRegistry()
    registry.load(plugins_dir=None, modules=[scripted.__name__], entry_points=False)
    registry.register(_FormatterUnderTest(factory, options), FORMATTER)
    return load_config({"providers": {"scripted": {}}}, registry=registry)


async def _play(
    service: StreamService, config: Config, wanted: Script, buffer: str, form: MessageForm,
    fails: bool,
) -> list[Event]:  # fmt: skip
    """One stream of ``wanted`` through ``buffer``; every event it logged, in wire form."""
    route = RouteSettings(
        transport="ws" if form == "json" else "sse", formatter=FORMATTER, allow=("model", "buffer")
    )
    prompt = scripted.script(wanted.deltas, then="fail" if fails else "end")
    params = parse_stream_params({"prompt": prompt, "model": "scripted", "buffer": buffer},
                                 route, config)  # fmt: skip
    stream = await service.start("/round-trip", route, params, form)
    log, reader = stream.log, stream.attach(0)
    items: list[bytes | str] = []
    try:
        while not (log.closed and reader.pos == log.end):
            await log.wait(reader.pos)
            ready = log.read(reader.pos)
            items += ready
            log.advance(reader, reader.pos + len(ready))
    finally:
        stream.detach(reader)
        if stream.task is not None and not stream.task.done():
            await asyncio.wait([stream.task], timeout=5)
    if form == "json":
        return [Event(None, str(item)) for item in items]
    decoded = SSEDecoder().feed(b"".join(item for item in items if isinstance(item, bytes)))
    return [Event(None if e.event == "message" else e.event, e.data) for e in decoded]


def _compare(
    wanted: Script, got: Gathered, carries: Collection[PartKind], events: list[Event]
) -> None:
    shown = "\n  ".join(map(repr, events))
    where = f"\nthe stream's deltas: {wanted.deltas!r}\nits events:\n  {shown}"
    assert got.text == wanted.text, f"text {got.text!r}, expected {wanted.text!r}{where}"
    if "reasoning" in carries:
        assert got.reasoning == wanted.reasoning, (
            f"reasoning {got.reasoning!r}, expected {wanted.reasoning!r}{where}"
        )
    if "tool_call" in carries:
        assert got.by_id() == wanted.calls, (
            f"tool calls {got.by_id()!r}, expected {wanted.calls!r}{where}"
        )
    kinds: list[PartKind] = []
    for kind in wanted.kinds:
        if kind in carries and (not kinds or kinds[-1] != kind):
            kinds.append(kind)
    assert got.kinds == kinds, f"parts in the order {got.kinds}, expected {kinds}{where}"
