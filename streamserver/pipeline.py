"""One pipeline for every stream: provider -> buffer -> formatter -> event log.

``StreamRun.run`` is the generation task a ``Stream`` owns. Everything per stream is resolved
before the first token; the per-token loop is a type check, a buffer push, and for each ready
segment one formatter call, one encode and one append. Metrics sinks see lifecycle calls only.

Structured parts take the other branch of that type check: reasoning goes through a buffer of its
own (the same strategy, a second instance made when the first reasoning arrives), tool-call
pieces straight to the formatter, never buffered. Only one kind of content is open at a time: a
change of kind flushes the buffer of the kind that ended first, so the client gets every part in
the order the provider produced it, and the formatter hears of the change (``boundary``).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable

from .errors import ProviderError
from .plan import OUTCOME_OF_CANCEL, StreamPlan, failure_of
from .retry import aclose, retry_delay
from .sink_fanout import SinkFanout
from .streams import Stream
from .tokens import tokenize
from .tool_calls import ToolCalls
from .types import (
    Buffer,
    Delta,
    Event,
    Finish,
    Outcome,
    PartKind,
    Reasoning,
    ReasoningSignature,
    StreamEnd,
    StreamFailure,
    ToolCall,
    ToolCallDelta,
    Usage,
)

log = logging.getLogger("streamserver.pipeline")


class StreamRun:
    """Runs one stream's generation into its log; ``run()`` is the stream's task."""

    __slots__ = (
        "_after",
        "_boundary",
        "_buffer",
        "_calls",
        "_characters",
        "_count",
        "_encode",
        "_ended_with",
        "_following",
        "_format",
        "_iterator",
        "_kind",
        "_log",
        "_out",
        "_reasoning_buffer",
        "_reasoning_tokens",
        "_record",
        "_segments",
        "_signed",
        "_started",
        "_text_out",
        "_timer",
        "_tokens",
        "_tool_calls",
        "_ttft",
        "_waiting",
        "_watch",
        "plan",
        "sinks",
        "stream",
    )

    def __init__(self, stream: Stream, plan: StreamPlan, sinks: SinkFanout) -> None:
        self.stream = stream
        self.plan = plan
        self.sinks = sinks
        self._tokens = 0
        self._segments = 0
        self._characters = 0
        self._timer: asyncio.TimerHandle | None = None
        self._ended_with: Finish | None = None
        self._started = 0.0
        self._ttft: float | None = None
        self._waiting = False
        self._watch: tuple[asyncio.TimerHandle | None, int, int] = (None, -1, 0)
        self._iterator: AsyncIterator[Delta] | None = None
        """The provider's open iterator (the current attempt's, while retrying)."""
        # Bound once: _emit runs for every segment.
        self._format = plan.formatter.segment
        self._encode = plan.encoder.segment
        self._log = stream.log
        self._record = stream.record
        self._count = stream.tokens_at.append
        """Beside each log append: the tokens produced so far (what the event is worth)."""
        # A formatter with events after the token events (optional: Formatter.after_segments)
        # gets an emit of its own, chosen once: the others pay nothing.
        self._after = getattr(plan.formatter, "after_segments", None)
        self._text_out: Callable[[str], None] = (
            self._emit if self._after is None else self._emit_and_follow
        )
        self._following = False
        """``after_segments`` is due at the end of this loop iteration."""
        # Structured parts: the kind of content open now, the buffer holding it (the timer and
        # the size cap release that one) and where its segments go.
        self._kind: PartKind | None = None
        self._signed = False
        """The reasoning open now was signed (``ReasoningSignature``): more is a new block."""
        self._buffer = plan.buffer
        self._out: Callable[[str], None] = self._text_out
        self._boundary = getattr(plan.formatter, "boundary", None)  # optional: Formatter.boundary
        self._reasoning_buffer: Buffer | None = None
        self._reasoning_tokens = 0
        self._calls: ToolCalls | None = None
        self._tool_calls: tuple[ToolCall, ...] = ()

    async def run(self) -> None:
        """Generate, then close the log with the formatter's end or error events."""
        plan, stream = self.plan, self.stream
        self._started = time.monotonic()
        self._emit_events(plan.formatter.start(plan.info))
        self.sinks.stream_started(plan.info)
        loop = asyncio.get_running_loop()
        limit = (
            loop.call_later(plan.max_stream_s, stream.cancel, "limit")
            if plan.max_stream_s > 0
            else None
        )
        if plan.upstream_idle_s > 0:
            self._watch = (loop.call_later(plan.upstream_idle_s / 4, self._check_idle), -1, 0)
        failure: StreamFailure | None = None
        outcome: Outcome = "completed"
        try:
            # The generation, inline rather than in a coroutine of its own: a frame less for
            # every stream's whole life. The first text comes through _opening (which retries),
            # the rest straight from the provider's iterator, so the retry costs the tokens after
            # the first nothing; the opening is dropped once done, not kept to the end.
            opening = self._opening()
            try:
                try:
                    go_on = await self._relay(opening)
                finally:
                    await aclose(opening)
                del opening
                if go_on and self._iterator is not None:
                    await self._relay(self._iterator)
            finally:
                if self._iterator is not None:
                    await aclose(self._iterator)
        except asyncio.CancelledError:
            reason = stream.cancel_reason
            if reason is None:  # not ours (event loop shutting down): let it propagate
                self._close(self._end("cancelled", None))
                raise
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()
            outcome = OUTCOME_OF_CANCEL[reason]
            failure = failure_of(reason, stream.id, plan)
        except ProviderError as exc:
            outcome = "error"
            failure = StreamFailure(
                exc.code, exc.message, stream.id, exc.retryable, exc.retry_after_s
            )
        except Exception:
            log.exception("stream %s failed", stream.id)
            outcome = "error"
            failure = StreamFailure("internal_error", "the stream failed unexpectedly", stream.id)
        finally:
            if limit is not None:
                limit.cancel()
            if self._watch[0] is not None:
                self._watch[0].cancel()
        summary = self._end(outcome, failure)
        try:
            if plan.epilogue is not None:
                stream.ending = True  # a cancel now would interrupt the epilogue, not the stream
                try:
                    self._emit_events(await plan.epilogue(stream, summary))
                except Exception:
                    log.exception("the epilogue of stream %s failed", stream.id)
        finally:
            self._close(summary)

    def _check_idle(self) -> None:
        # Runs every upstream_idle_s / 4 and compares token counts: no per-token timer work.
        # Silent through four checks in a row (and not held back by a slow reader) = idle.
        _, last_tokens, quiet = self._watch
        quiet = quiet + 1 if self._tokens == last_tokens and not self._waiting else 0
        if quiet >= 4:
            self._watch = (None, self._tokens, quiet)
            self.stream.cancel("upstream_idle")
            return
        handle = asyncio.get_running_loop().call_later(
            self.plan.upstream_idle_s / 4, self._check_idle
        )
        self._watch = (handle, self._tokens, quiet)

    async def _opening(self) -> AsyncIterator[Delta]:
        """The provider's deltas up to its first text, opening the stream again (up to the
        provider's ``max_retries`` times) when it fails with a retryable error before that text.

        Until the first text the client has seen only the start event, so a retry is invisible to
        it; after it, a failure ends the stream (the text already sent cannot be taken back). This
        is the one retry of a provider: an SDK's own retries stop when the response's headers
        arrive, and an upstream that answers, then drops before its first token, is retried too.
        """
        provider, request = self.plan.provider, self.plan.request
        retries: int = getattr(provider, "max_retries", 0)  # optional: Provider.max_retries
        for attempt in itertools.count():
            iterator = self._iterator = provider.stream(request)
            try:
                async for delta in iterator:
                    yield delta
                    if _is_content(delta):
                        return  # the rest is read from the iterator itself (run)
                self._iterator = None  # ended without text: nothing more to read
                return
            except ProviderError as exc:
                if not exc.retryable or attempt >= retries:
                    raise
                delay = retry_delay(attempt, exc.retry_after_s)
                if delay is None:
                    raise
                self._iterator = None
                await aclose(iterator)
                log.info("stream %s: retrying the provider after %s", self.stream.id, exc.code)
                await asyncio.sleep(delay)

    async def _relay(self, deltas: AsyncIterator[Delta]) -> bool:
        """Relay ``deltas`` into the log; False once ``max_tokens`` is reached. A provider that
        was given the cap (the request's ``max_tokens``) stops there itself: its own finish
        reason and usage are relayed, and only a delta past the cap is cut. One that was not
        told (the cap is ``limits.max_tokens`` alone) is cut at the cap, not waited for."""
        plan = self.plan
        log_ = self.stream.log
        buffer = plan.buffer
        push = buffer.push
        emit = self._text_out
        max_tokens = plan.max_tokens
        max_chars = plan.max_chars
        tokens = self._tokens
        # A buffer that holds nothing back (``raw``) is skipped: each delta is its own segment.
        passthrough = getattr(buffer, "passthrough", False)  # optional: Buffer.passthrough
        high_water = log_.high_water
        in_text = self._kind == "text"
        told = plan.request.max_tokens is not None  # the provider stops at the cap itself
        # Hot loop. Shaped for speed: locals only, no per-token hook, no allocation beyond
        # what the buffer, formatter and encoder need.
        async for delta in deltas:
            if type(delta) is str:
                if not delta:
                    continue
                if tokens >= max_tokens:
                    return self._cut()
                if not in_text:  # the first text, or text again after another part
                    self._switch("text")
                    in_text = True
                if not tokens:
                    self._first_token()
                tokens += 1
                self._tokens = tokens
                if passthrough:
                    emit(delta)
                else:
                    for text in push(delta):
                        emit(text)
                    held = buffer.held
                    if held:
                        if max_chars and held >= max_chars:
                            self._release_over_cap()
                        elif self._timer is None and plan.max_delay_s:
                            self._timer = asyncio.get_running_loop().call_later(
                                plan.max_delay_s, self._release_on_timer
                            )
                    elif self._timer is not None:
                        self._timer.cancel()
                        self._timer = None
            else:
                if tokens >= max_tokens and _is_content(delta):
                    return self._cut()
                if not self._part(delta, passthrough):  # a Finish, or an empty part
                    continue
                in_text = False
                if not tokens:
                    self._first_token()
                tokens += 1
                self._tokens = tokens
            if tokens >= max_tokens and not told:
                return self._cut()
            if log_.end - log_.floor >= high_water:  # the slowest reader is far behind
                self._waiting = True
                await log_.writable()
                self._waiting = False
        return True

    def _cut(self) -> bool:
        """End at ``max_tokens`` with ``length``; the provider is closed."""
        self._ended_with = Finish("length", self.plan.request.model)
        return False

    def _first_token(self) -> None:
        self._ttft = time.monotonic() - self._started
        self.sinks.first_token(self.plan.info, self._ttft)

    def _part(self, delta: Delta, passthrough: bool) -> bool:
        """One structured delta; False for one that carries no content (a ``Finish``)."""
        kind = type(delta)
        if kind is Reasoning:
            assert isinstance(delta, Reasoning)
            if not delta.text:
                return False
            if self._kind != "reasoning" or self._signed:
                self._signed = False
                self._switch("reasoning")
            self._reasoning_tokens += 1
            if passthrough:
                self._emit_reasoning(delta.text)
                return True
            buffer = self._buffer
            for text in buffer.push(delta.text):
                self._emit_reasoning(text)
            self._hold(buffer)
            return True
        if kind is ToolCallDelta:
            assert isinstance(delta, ToolCallDelta)
            if self._kind != "tool_call":
                self._switch("tool_call")
            self._tool_call(delta)
            return True
        if isinstance(delta, Finish):
            self._ended_with = _checked(delta)
        elif kind is ReasoningSignature:
            assert isinstance(delta, ReasoningSignature)
            self._sign_reasoning(delta.signature)
        return False

    def _sign_reasoning(self, signature: str) -> None:
        """After the reasoning it signs (held text flushed first), which it closes: reasoning
        after it is a block of its own. Rare: once a thinking block; none outside one."""
        if type(signature) is not str or not signature or self._kind != "reasoning":
            return
        self._flush()
        self._signed = True
        if self._record is not None:
            self._record.signatures.append((len(self._record.reasoning), signature))
        sign = getattr(self.plan.formatter, "reasoning_signature", None)  # optional
        if sign is not None:
            self._emit_events(sign(signature))

    def _switch(self, kind: PartKind) -> None:
        """Close the kind of content open now (its buffer flushed) and open ``kind``."""
        self._flush()
        ended = self._kind
        self._kind = kind
        if kind == "reasoning":
            if self._reasoning_buffer is None:
                self._reasoning_buffer = self.plan.new_buffer()
            self._buffer, self._out = self._reasoning_buffer, self._emit_reasoning
        else:
            self._buffer, self._out = self.plan.buffer, self._text_out
        if self._boundary is not None:
            self._emit_events(self._boundary(ended, kind))

    def _hold(self, buffer: Buffer) -> None:
        """After a push: the size cap, or the flush timer for the text the buffer still holds."""
        held = buffer.held
        if held:
            if self.plan.max_chars and held >= self.plan.max_chars:
                self._release_over_cap()
            elif self._timer is None and self.plan.max_delay_s:
                self._timer = asyncio.get_running_loop().call_later(
                    self.plan.max_delay_s, self._release_on_timer
                )
        elif self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _tool_call(self, delta: ToolCallDelta) -> None:
        if self._calls is None:
            self._calls = ToolCalls(self.stream.id, self.plan.formatter)
        self._emit_events(self._calls.add(delta))

    def _end_calls(self) -> None:
        """Every call is whole once generation ends: hand each on, in index order."""
        assert self._calls is not None
        calls = []
        for call, events in self._calls.finish():
            calls.append(call)
            self._emit_events(events)
            if self._record is not None:
                self._record.add_call(self._log.end, call)
        self._tool_calls = tuple(calls)

    def _emit_reasoning(self, text: str) -> None:
        if self._record is not None:
            self._record.reasoning.append(text)
        reasoning = getattr(self.plan.formatter, "reasoning", None)  # optional
        if reasoning is not None:
            self._emit_events(reasoning(text))

    def _emit(self, text: str) -> None:
        data = self._format(text, self._tokens)
        self._characters += len(text)
        log_ = self._log
        if self._record is not None:  # the one branch a stream without a record pays
            self._record.add(log_.end, text)
        if data is not None:
            log_.append(self._encode(log_.end, data))
            self._count(self._tokens)
            self._segments += 1

    def _emit_and_follow(self, text: str) -> None:
        self._emit(text)
        if not self._following:  # once per loop iteration, whatever the segments in it
            self._following = True
            asyncio.get_running_loop().call_soon(self._follow)

    def _follow(self) -> None:
        """The formatter's events after this iteration's token events (an ``object`` with the
        value they made): one parse and one event for a burst of segments, not one per segment.
        Run by the loop at the end of the iteration, or by ``_end`` before the end events."""
        if not self._following:  # _end ran it already
            return
        self._following = False
        assert self._after is not None
        events = self._after()
        if events:
            self._emit_events(events)

    def _release_on_timer(self) -> None:
        """The flush timer: emit the held text up to the last boundary the buffer respects.

        What it keeps back (a word in progress) gets one more period, then goes out whatever it
        is: so no text waits more than twice ``max_delay_ms``, and a stream that pauses mid-word
        is not cut there unless the pause outlasts that.
        """
        self._timer = None
        buffer = self._buffer
        text = self._release()
        if text:
            self._out(text)
        if buffer.held:
            self._timer = asyncio.get_running_loop().call_later(
                self.plan.max_delay_s, self._release_on_timer
            )

    def _release_over_cap(self) -> None:
        """The size cap: release up to a boundary too, and everything if that is not enough."""
        text = self._release()
        if text:
            self._out(text)
        if self._buffer.held >= self.plan.max_chars:
            self._flush()

    def _release(self) -> str:
        release = getattr(self._buffer, "release", None)  # optional: Buffer.release
        return release() if release is not None else self._buffer.flush()

    def _flush(self) -> None:
        """Emit whatever the open kind's buffer holds (its end, or a cap release not enough)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._kind is None or self._kind == "tool_call":
            return
        text = self._buffer.flush()
        if text:
            self._out(text)

    def _emit_events(self, events: Iterable[Event]) -> None:
        log_ = self.stream.log
        encode = self.plan.encoder.event
        count, tokens = self._count, self._tokens
        for event in events:
            log_.append(encode(log_.end, event))
            count(tokens)

    def _end(self, outcome: Outcome, failure: StreamFailure | None) -> StreamEnd:
        """Flush, then log the formatter's end (or error) events; the summary of the stream."""
        # The final flush happens on every outcome: text the provider produced is never dropped.
        self._flush()
        self._follow()
        if self._kind is not None and self._boundary is not None:
            self._emit_events(self._boundary(self._kind, None))
        if self._calls:
            self._end_calls()
        plan = self.plan
        # A provider that ends without a Finish: "length" if it stopped at the cap.
        reached = self._tokens >= plan.max_tokens
        ended = self._ended_with or Finish("length" if reached else "stop", plan.request.model)
        if outcome == "cancelled" or outcome == "client_gone":
            reason = "cancelled"
        elif failure is not None:
            reason = "error"
        else:
            reason = ended.reason
        summary = StreamEnd(
            stream_id=self.stream.id,
            model=ended.model or plan.request.model,
            outcome=outcome,
            finish_reason=reason,
            tokens=self._tokens,
            segments=self._segments,
            characters=self._characters,
            duration_s=time.monotonic() - self._started,
            ttft_s=self._ttft,
            usage=ended.usage or self._estimated_usage(),
            error=failure,
            tool_calls=self._tool_calls,
            reasoning_tokens=self._reasoning_tokens,
            stop_sequence=ended.stop_sequence if reason == "stop" else None,
        )
        try:
            if failure is None:
                self._emit_events(plan.formatter.end(summary))
            else:
                self._emit_events(plan.formatter.error(failure, summary))
        except Exception:  # a plugin's bug: the stream still closes, and the sinks hear of it
            log.exception("the formatter's end events of stream %s failed", self.stream.id)
        return summary

    def _estimated_usage(self) -> Usage:
        """The usage of a stream whose provider reported none (or was cancelled before it did):
        the prompt's token-sized pieces and the deltas produced, marked as an estimate."""
        prompt = sum(len(tokenize(m.text)) for m in self.plan.request.messages)
        return Usage(prompt, self._tokens, estimated=True)

    def _close(self, summary: StreamEnd) -> None:
        self.stream.summary = summary
        if self._record is not None:
            self._record.summary = summary
        self.stream.log.close()
        self.sinks.stream_finished(self.plan.info, summary)


def _count(value: object) -> int:
    return value if type(value) is int and value >= 0 else 0


def _checked(finish: Finish) -> Finish:
    """A provider's ``Finish`` with the types the formatters and sinks rely on: an upstream's
    odd ``finish_reason`` (a list, ``null``) or usage (strings, ``null``) must not break the end
    of the stream. Once per stream."""
    usage = finish.usage
    if usage is not None and not (type(usage.prompt_tokens) is int
                                  and type(usage.completion_tokens) is int):  # fmt: skip
        usage = Usage(_count(usage.prompt_tokens), _count(usage.completion_tokens), True)
    reason = finish.reason if type(finish.reason) is str and finish.reason else "stop"
    model = finish.model if type(finish.model) is str else None
    stop = finish.stop_sequence if type(finish.stop_sequence) is str else None
    stop = stop or None  # an empty one says nothing
    if (usage is finish.usage and reason is finish.reason and model is finish.model
            and stop is finish.stop_sequence):  # fmt: skip
        return finish
    return Finish(reason, model, usage, stop)


def _is_content(delta: Delta) -> bool:
    """Whether a delta is content the client sees (after it, a failure cannot be retried)."""
    kind = type(delta)
    if kind is str:
        return bool(delta)
    if kind is Reasoning:
        return bool(delta.text)  # type: ignore[union-attr]
    return kind is ToolCallDelta
