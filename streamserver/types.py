"""The interfaces every part of the pipeline is written against.

Providers, buffers, formatters and metrics sinks are ``typing.Protocol``s: a plugin implements one
without importing anything from the core but these names. Members marked *optional* may be left
out; the core reads them once per stream or per app (never per token) and uses the default. The
data that crosses them is plain, frozen and serialisable, so a stream's events can live in another
process's store one day.

Pipeline: ``Provider --deltas--> Buffer --segments--> Formatter --events--> StreamLog``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeAlias

from .trace_context import TraceContext

MessageForm: TypeAlias = Literal["sse", "json"]
"""The two forms a formatter writes a stream's events in: ``"sse"``, an SSE event name and data;
``"json"``, one JSON text message per event (WebSocket frames, in-process readers)."""

Outcome: TypeAlias = Literal["completed", "cancelled", "client_gone", "error", "limit", "shutdown"]
"""How a stream ended, as metrics sinks see it."""


Role: TypeAlias = Literal["system", "user", "assistant", "tool"]

ContentPart: TypeAlias = Mapping[str, Any]
"""One part of a message's content in OpenAI's shape: ``{"type": "text", "text": ...}``,
``{"type": "image_url", "image_url": {...}}``, or any other type, passed through untouched."""


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One whole tool call: in an assistant message, in a stream's record and its summary."""

    id: str
    name: str
    arguments: str
    """The arguments as the model wrote them: JSON text (not parsed, so nothing is lost)."""
    index: int = 0
    """Its place among the calls of one response (parallel calls have 0, 1, ...)."""

    def openai(self) -> dict[str, Any]:
        """The call in the chat completions shape (``message.tool_calls``)."""
        return {"id": self.id, "type": "function",
                "function": {"name": self.name, "arguments": self.arguments}}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Message:
    """One chat message sent to a provider.

    ``content`` is a string, or a tuple of content parts (text, images, any other type). An
    ``assistant`` message may carry the ``tool_calls`` it made; a ``tool`` message answers one,
    naming it in ``tool_call_id``.
    """

    role: Role
    content: str | tuple[ContentPart, ...]
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None

    @property
    def text(self) -> str:
        """The content's text: the string, or its text parts joined (other parts left out)."""
        if isinstance(self.content, str):
            return self.content
        return "".join(
            str(part.get("text", "")) for part in self.content if part.get("type") == "text"
        )


SAMPLING_PARAMETERS = (
    "temperature",
    "top_p",
    "stop",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "user",
    "reasoning_effort",
)
"""The sampling parameters a request may carry (OpenAI's names), in ``GenerationRequest.sampling``."""

REQUEST_PARAMETERS = ("tools", "tool_choice", "parallel_tool_calls", "response_format",
                      *SAMPLING_PARAMETERS)  # fmt: skip
"""Every request parameter beyond messages, model and ``max_tokens``: a provider lists those it
honours in ``Provider.parameters``; a request with any other is refused before it starts."""


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """What a provider is asked to generate.

    Parameters left unset (``None``, empty) are not sent: the provider's configured defaults
    apply. Values are in OpenAI's shapes, checked for their types; a provider translates them.
    """

    messages: tuple[Message, ...]
    model: str
    max_tokens: int | None = None
    tools: tuple[Mapping[str, Any], ...] = ()
    """``{"type": "function", "function": {"name", "description", "parameters"}}`` each."""
    tool_choice: str | Mapping[str, Any] | None = None
    """``"none"``, ``"auto"``, ``"required"`` or ``{"type": "function", "function": {"name"}}``."""
    parallel_tool_calls: bool | None = None
    response_format: Mapping[str, Any] | None = None
    """``{"type": "text" | "json_object" | "json_schema", ...}``."""
    sampling: Mapping[str, Any] = field(default_factory=dict)
    """The ``SAMPLING_PARAMETERS`` the request set (``temperature``, ``stop``, ...)."""
    traceparent: str | None = None
    """The W3C ``traceparent`` header to send upstream (the stream's span; ``None``: no tracing
    sink), so the upstream's own spans join the stream's trace."""

    @property
    def forces_call(self) -> bool:
        """``tool_choice`` asks for a call: ``"required"`` or a named function."""
        return self.tool_choice == "required" or isinstance(self.tool_choice, Mapping)


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts reported by the upstream, or estimated (``estimated``) when it reported none:
    a stream cancelled before the upstream's usage arrived, a provider that never reports it."""

    prompt_tokens: int
    completion_tokens: int
    estimated: bool = False
    reasoning_tokens: int | None = None
    """Of ``completion_tokens``, the reasoning, as the upstream counted it (``None``: it did not
    say; the stream's own count of reasoning deltas, ``StreamEnd.reasoning_tokens``, stands in)."""


@dataclass(frozen=True, slots=True)
class Finish:
    """The last item a provider yields: why generation stopped, and what it cost.

    Text deltas are plain ``str`` (the hot path allocates nothing else per token); a provider yields
    one ``Finish`` at the end when it knows the reason (``stop``, ``length``, ``tool_calls``,
    ``content_filter``, ...), model or usage. Yielding none is allowed: the stream then ends with
    ``finish_reason = "stop"``.
    """

    reason: str = "stop"
    model: str | None = None
    usage: Usage | None = None
    stop_sequence: str | None = None
    """The stop sequence (of the request's ``stop``) that ended the text, when the provider says
    which one (the Messages API, the simulated model); the reason is ``stop`` then."""


@dataclass(frozen=True, slots=True)
class Reasoning:
    """A piece of the model's reasoning (thinking), streamed before or between the answer's text.

    From a provider, one delta; to a formatter, one segment of the stream's reasoning buffer.
    """

    text: str


@dataclass(frozen=True, slots=True)
class ReasoningSignature:
    """The signature of the reasoning just streamed: Anthropic signs each thinking block, and a
    client sends the block back with it on its next turn (else Anthropic refuses a thinking turn
    that called tools). Only a formatter that has a word for it says it (``anthropic``)."""

    signature: str


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A piece of a tool call, as upstreams stream them.

    The first delta of a call (a new ``index``) carries its ``id`` and ``name``; later ones carry
    ``arguments`` fragments, which the core never splits, delays or buffers. Calls end when the
    generation does; the core then hands each whole ``ToolCall`` on.
    """

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


Delta: TypeAlias = "str | Reasoning | ReasoningSignature | ToolCallDelta | Finish"
"""What a provider's iterator yields: text as ``str`` (the fast path), ``Reasoning`` (with the
``ReasoningSignature`` a provider may add after it) and ``ToolCallDelta`` parts, then at most one
``Finish``."""

PartKind: TypeAlias = Literal["text", "reasoning", "tool_call"]
"""The kinds of content a stream carries, in the order the provider produced them."""


class Provider(Protocol):
    """Turns a generation request into an async iterator of deltas.

    One instance per ``[providers.<name>]`` section, created at start-up and closed at shutdown.
    """

    @property
    def models(self) -> Sequence[str]:
        """The model names this provider serves; the first is its default."""
        ...

    def stream(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        """Start generating; the returned iterator yields deltas (text, reasoning, tool-call
        pieces) then at most one Finish.

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

    parameters: Collection[str]
    """Optional (default none): the ``REQUEST_PARAMETERS`` this provider honours (tools,
    sampling, ...). A request that sets any other is refused with 400 ``unsupported_parameter``
    before its stream starts: never silently dropped. Content parts other than text are the
    provider's to pass on or refuse (``ProviderError`` before the first token)."""

    tool_models: Collection[str]
    """Optional (default: every model): the models that can call tools. A request that forces a
    call (``tool_choice`` ``"required"`` or a named function) on another model is refused with
    400 ``invalid_tool_choice`` before its stream starts, and the OpenAPI document says so."""

    def check(self, request: GenerationRequest) -> None:
        """Optional: raise ``ProviderError`` for a request this provider cannot meet (a
        ``tool_choice`` its model cannot honour, content it cannot translate). Called before the
        stream starts, so the client gets a 400 with the error's code and message instead of a
        stream that fails at once. Must be quick and must not call the upstream."""
        ...

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
    trace: TraceContext | None = None
    """The stream's trace and span (``None`` unless a sink ``traces``)."""


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """What a formatter and the sinks learn when a stream ends (any outcome)."""

    stream_id: str
    model: str
    outcome: Outcome
    finish_reason: str
    tokens: int
    """Deltas the provider produced: text, reasoning and tool-call pieces."""
    segments: int
    """Segments the buffer emitted (= token events sent)."""
    characters: int
    duration_s: float
    ttft_s: float | None
    usage: Usage | None = None
    error: StreamFailure | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    """The tool calls the model made, whole, in index order."""
    reasoning_tokens: int = 0
    """Of ``tokens``, the reasoning deltas."""
    stop_sequence: str | None = None
    """The stop sequence that ended the text, when the provider said which (``Finish``)."""

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

    def after_segments(self) -> Sequence[Event]:
        """Optional: events logged after the token events of the segments given since the last
        call (the ``object`` formatter's value so far), often none. Called at most once per
        event-loop iteration, after that iteration's segments (a burst of them costs one call),
        and before the end events; a formatter without it costs the pipeline nothing."""
        ...

    # Structured parts: all optional. A formatter without them carries text only (its clients
    # still get every text segment; the reasoning and tool calls are in the stream's summary).

    def boundary(self, ended: PartKind | None, starting: PartKind | None) -> Sequence[Event]:
        """Optional: the kind of content changes (``None``: the stream's start or end). Called
        before the first text, at each change between text, reasoning and tool calls, and once
        more at the end (before ``end`` or ``error``) if content was sent; never per segment."""
        ...

    def reasoning(self, text: str) -> Sequence[Event]:
        """Optional: events for one segment of reasoning (its own buffer's)."""
        ...

    def tool_call_start(self, index: int, call_id: str, name: str) -> Sequence[Event]:
        """Optional: a tool call begins (before its arguments)."""
        ...

    def tool_call_arguments(self, index: int, fragment: str) -> Sequence[Event]:
        """Optional: a fragment of call ``index``'s arguments, as the upstream sent it."""
        ...

    def tool_call_end(self, call: ToolCall) -> Sequence[Event]:
        """Optional: a call is whole (generation ended; after the boundary into ``None``)."""
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
    traces: bool = False
    """The sink records spans: with one, every stream gets a trace context (``StreamStart.trace``,
    continuing the request's ``traceparent``) and providers send its ``traceparent`` upstream."""

    def stream_started(self, info: StreamStart) -> None:
        """A stream was accepted and its generation started."""

    def first_token(self, info: StreamStart, ttft_s: float) -> None:
        """The first delta (text, reasoning or a tool call) arrived ``ttft_s`` seconds after the stream started."""

    def stream_finished(self, info: StreamStart, summary: StreamEnd) -> None:
        """The stream ended, whatever the outcome."""

    def stream_resumed(self, info: StreamStart) -> None:
        """A reader reattached to the stream past its first event (``Last-Event-ID``, ``resume``)."""

    def tokens_delivered(self, info: StreamStart, delivered: int, replayed: int) -> None:
        """Tokens reached a client: ``delivered`` newly (a reader that left got this much further
        than any before it), ``replayed`` again (a resume or a second reader was sent events
        already logged). Reported as readers leave and resume, so it may follow
        ``stream_finished``; the sums over a stream are what it delivered and replayed."""

    def request_rejected(self, route: str, status: int, code: str) -> None:
        """A stream request was refused before it started."""

    def snapshot(self) -> dict[str, object]:
        """JSON-able figures for ``GET /v1/stream/metrics`` (none by default)."""
        return {}

    def close(self) -> None:
        """The app is stopping and no lifecycle call follows: flush and release what the sink
        holds. Runs on a worker thread, so it may block (briefly: the app waits for it)."""


SINK_METHODS = (
    "stream_started",
    "first_token",
    "stream_finished",
    "stream_resumed",
    "tokens_delivered",
    "request_rejected",
)
"""The lifecycle calls a metrics sink may receive (``snapshot`` is read, not sent; ``close``
comes once, after them all)."""
