"""The interfaces every part of the pipeline is written against.

Providers, buffers, formatters and metrics sinks are ``typing.Protocol``s: a plugin implements one
without importing anything from the core but these names. Members marked *optional* may be left
out; the core reads them once per stream or per app (never per token) and uses the default. The
data that crosses them is plain, frozen and serialisable, so a stream's events can live in another
process's store one day.

Pipeline: ``Provider --deltas--> Buffer --segments--> Formatter --events--> StreamLog``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, TypeAlias

MessageForm: TypeAlias = Literal["sse", "json"]
"""The two forms a formatter writes a stream's events in: ``"sse"``, an SSE event name and data;
``"json"``, one JSON text message per event (WebSocket frames, in-process readers)."""

Outcome: TypeAlias = Literal["completed", "cancelled", "client_gone", "error", "limit", "shutdown"]
"""How a stream ended, as metrics sinks see it."""


@dataclass(frozen=True, slots=True)
class Message:
    """One chat message sent to a provider."""

    role: Literal["system", "user", "assistant"]
    content: str


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """What a provider is asked to generate."""

    messages: tuple[Message, ...]
    model: str
    max_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts reported by the upstream (or estimated by the provider)."""

    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True, slots=True)
class Finish:
    """The last item a provider yields: why generation stopped, and what it cost.

    Text deltas are plain ``str`` (the hot path allocates nothing else per token); a provider yields
    one ``Finish`` at the end when it knows the reason, model or usage. Yielding none is allowed:
    the stream then ends with ``finish_reason = "stop"``.
    """

    reason: str = "stop"
    model: str | None = None
    usage: Usage | None = None


Delta: TypeAlias = "str | Finish"
"""What a provider's iterator yields: text as ``str``, metadata as one final ``Finish``."""


class Provider(Protocol):
    """Turns a generation request into an async iterator of deltas.

    One instance per ``[providers.<name>]`` section, created at start-up and closed at shutdown.
    """

    @property
    def models(self) -> Sequence[str]:
        """The model names this provider serves; the first is its default."""
        ...

    def stream(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        """Start generating; the returned iterator yields text deltas then at most one Finish.

        When the stream ends for any reason the core calls the iterator's ``aclose()`` if it has
        one (an async generator does), and that must close the upstream request at once: it is how
        a client that goes away stops the generation it no longer wants.
        """
        ...

    async def aclose(self) -> None:
        """Release connections and clients at shutdown."""
        ...

    error_responses: Mapping[int, int]
    """Optional: the upstream's HTTP error responses so far, by status (retried ones included),
    for ``/metrics``. A provider without it reports none."""

    max_retries: int
    """Optional (default 0): when the stream fails with a ``retryable`` ``ProviderError`` before
    its first text, the pipeline opens it again, up to this many times (see ``pipeline.py``)."""


class Buffer(Protocol):
    """Turns deltas into segments (whole words, sentences, ...), one instance per stream.

    Lossless: the concatenation of every segment returned by ``push`` and the final ``flush``
    equals the concatenation of every pushed delta, character for character.
    The core drives the flush timer (``max_delay_ms``) and ``max_chars`` for every buffer, using
    ``held`` to know whether text is waiting. When either fires it calls the buffer's
    ``release() -> str`` if it has one: the held text up to the last boundary the strategy
    respects (at least a word boundary), keeping the rest; ``""`` to keep everything a while
    longer. A buffer without ``release`` is flushed whole. Whatever ``release`` keeps back, the
    timer asks again one ``max_delay_ms`` later, so a buffer decides how long text may wait.
    """

    passthrough: bool
    """Optional (default False): True for a buffer that never holds text back (``raw``). The core
    then skips it and makes each delta its own segment, with no push, no ``held`` and no timer."""

    @property
    def held(self) -> int:
        """How many characters are waiting in the buffer (0 when empty)."""
        ...

    def push(self, text: str) -> Sequence[str]:
        """Take one delta; return the segments that are ready now (often none)."""
        ...

    def flush(self) -> str:
        """Return everything held (possibly ``""``) and empty the buffer."""
        ...

    def release(self) -> str:
        """Optional (default: ``flush``): what the flush timer or the size cap may send now.

        Called when text has waited ``max_delay_ms`` or passed ``max_chars``: return the held text
        up to the last boundary the strategy respects (a word boundary at least) and keep the
        rest, so a timer never cuts a word in half. A buffer without it is flushed whole.
        """
        ...


@dataclass(frozen=True, slots=True)
class Event:
    """One wire event: an SSE ``event:`` name (``None`` for the default) and its data.

    For the WebSocket transport ``data`` is the whole text frame and ``name`` is ignored.
    """

    name: str | None
    data: str


@dataclass(frozen=True, slots=True)
class StreamStart:
    """What a formatter and the sinks learn when a stream starts."""

    stream_id: str
    route: str
    provider: str
    model: str
    created: float
    """Unix time the stream was accepted."""
    key_id: str | None = None


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """What a formatter and the sinks learn when a stream ends (any outcome)."""

    stream_id: str
    model: str
    outcome: Outcome
    finish_reason: str
    tokens: int
    """Text deltas the provider produced."""
    segments: int
    """Segments the buffer emitted (= token events sent)."""
    characters: int
    duration_s: float
    ttft_s: float | None
    usage: Usage | None = None
    error: StreamFailure | None = None

    @property
    def tokens_per_second(self) -> float:
        """Generation rate over the whole stream; 0 for an instant or empty stream."""
        return self.tokens / self.duration_s if self.duration_s > 0 else 0.0


@dataclass(frozen=True, slots=True)
class StreamFailure:
    """A failure during a stream, as it is shown to the client: a code and a safe message."""

    code: str
    message: str
    stream_id: str = ""
    retryable: bool = False
    retry_after_s: float | None = None
    """How long the upstream asked to wait before trying again (its ``Retry-After``), if it said."""


class Formatter(Protocol):
    """Turns one stream's lifecycle into wire events; one instance per stream (it may keep state).

    ``segment`` is on the hot path: it returns only the data string of the token event, whose SSE
    event name is the fixed ``token_event``, so the core can encode it with one f-string.
    """

    token_event: str | None
    """SSE event name of segment events (``None`` = the default ``message``)."""

    headers: Mapping[str, str]
    """Optional (default none): extra response headers its clients expect (e.g. the AI SDK's
    ``x-vercel-ai-ui-message-stream``), read once when the stream starts."""

    def start(self, info: StreamStart) -> Sequence[Event]:
        """Events sent before the first segment (may be empty)."""
        ...

    def segment(self, text: str, tokens: int) -> str | None:
        """Data of the event for one segment; ``tokens`` counts deltas so far. ``None`` skips it."""
        ...

    def end(self, summary: StreamEnd) -> Sequence[Event]:
        """Events that close a stream that completed or was cancelled."""
        ...

    def error(self, failure: StreamFailure, summary: StreamEnd) -> Sequence[Event]:
        """Events that close a stream that failed: an error event, then whatever ends it cleanly."""
        ...


class MetricsSink(Protocol):
    """Observes stream lifecycles; never called per token. One instance per app.

    Calls run on a worker thread of their own, so a slow sink never slows a stream, unless the sink
    has ``inline = True`` (then it must not block: it runs on the event loop). Every member is
    optional: the core calls only the methods a sink defines. A sink that subclasses this Protocol
    inherits every method as a no-op and overrides just what it observes.
    """

    inline: bool = False
    """Run on the event loop instead of the sinks' worker thread."""

    def stream_started(self, info: StreamStart) -> None:
        """A stream was accepted and its generation started."""

    def first_token(self, info: StreamStart, ttft_s: float) -> None:
        """The first text delta arrived ``ttft_s`` seconds after the stream started."""

    def stream_finished(self, info: StreamStart, summary: StreamEnd) -> None:
        """The stream ended, whatever the outcome."""

    def stream_resumed(self, info: StreamStart) -> None:
        """A reader reattached to the stream past its first event (``Last-Event-ID``, ``resume``)."""

    def request_rejected(self, route: str, status: int, code: str) -> None:
        """A stream request was refused before it started."""

    def snapshot(self) -> dict[str, object]:
        """JSON-able figures for ``GET /v1/stream/metrics`` (none by default)."""
        return {}


SINK_METHODS = (
    "stream_started",
    "first_token",
    "stream_finished",
    "stream_resumed",
    "request_rejected",
)
"""The lifecycle calls a metrics sink may receive (``snapshot`` is read, not sent)."""
