"""The offline default provider: plausible English at a realistic pace, with no network at all.

Models:
- ``simulated``: generates text (a word-level Markov chain over a small built-in corpus), split into
  pieces the size of a BPE tokenizer's, after ``ttft_ms`` and at ``tokens_per_second``.
- ``echo``: streams back the last user message in token-sized pieces, so any text can be sent
  through the whole pipeline and compared on the other side.
- ``sim-tools``: calls the offered tools (``ToolCallDelta``s, arguments made from each tool's JSON
  schema), then answers in text quoting the results it is sent back (``sim_structured``).
- ``sim-reasoner``: streams its thinking (``Reasoning``, as long as ``reasoning_effort`` asks)
  before its text answer.

With a ``response_format`` every model but ``echo`` answers in JSON (its text is
``json.dumps`` of a value valid against the ``json_schema``'s schema, or of a plausible object
for ``json_object``), in token-sized pieces; ``sim-tools`` still calls its tools first.

``fail_after_tokens`` makes any model fail mid-stream (error paths, demos), ``seed`` (the config's
or the request's) makes the output repeatable, and ``tokens_per_second = 0`` means as fast as
possible (benchmarks). Every delta, text, reasoning or a piece of a call, is one token: paced,
counted for ``max_tokens``, ``fail_after_tokens`` and the usage.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import sys
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from ..errors import ProviderError
from ..hookspecs import Register, hookimpl
from ..schema import AT_LEAST_ONE, AT_LEAST_ZERO, Range
from ..tokens import tokenize
from ..types import Delta, Finish, GenerationRequest, Reasoning, Usage
from .sim_structured import (
    REASONER_MODEL,
    TOOLS_MODEL,
    call_deltas,
    calls_for,
    json_answer,
    last_user_text,
    reasoning_for,
    results_answer,
)

BURST_TOKENS = 64
"""Unpaced, a stream yields to the event loop after at most this many tokens..."""
BURST_S = 0.0001
"""...or once its burst has taken this long."""
TURNS_PER_ITERATION = 5
"""Unpaced streams' bursts one loop iteration runs (about 0.5 ms of them): the others wait for a
later one, in turn. Whatever the concurrency, a new stream's accept, request and first write
each wait about that long, not one burst of every running stream (issue 20, point 2). A new
stream's first burst and a stream woken by its socket's drain do not wait their turn: it bounds
the bursts that yielded, not every burst."""

_CORPUS = """\
Streaming changes how people experience a model. The first words arrive while the rest is still \
being written, so the answer feels alive instead of slow. A good server keeps that rhythm steady \
under load and never drops a single character on the way. Every token travels from the provider \
through a buffer and a formatter before it reaches the client. The buffer decides when text is \
ready to show, and the formatter decides what it looks like on the wire. Some clients want every \
token as it comes, while others prefer whole words or whole sentences. When the connection drops, \
the client can resume from the last event it saw, and nothing is repeated or lost. Backpressure \
keeps memory flat when a reader falls behind, because the producer simply waits. Metrics show how \
long the first token took and how fast the rest followed. In practice the hardest part is not \
the happy path but the edges: slow readers, vanished clients, and upstreams that stall. A careful \
design treats each of those as an ordinary event with a clear outcome. That is why the pipeline \
is small, and why each part can be replaced by a plugin. Operators choose the parts in a single \
configuration file and can see at a glance what each route will do. Developers can write a new \
buffer in a few lines and test it against the same guarantees as the built-in ones. The result \
is a server that is pleasant to run and easy to trust.\
"""


class _MarkovText:
    """Order-2 word chain over the corpus: English-looking sentences of any length."""

    def __init__(self, corpus: str) -> None:
        words = corpus.split()
        self.starts = [
            (a, b)
            for a, b, prev in zip(words[1:], words[2:], words, strict=False)
            if prev.endswith(".")
        ]
        self.starts.append((words[0], words[1]))
        self.chain: dict[tuple[str, str], list[str]] = {}
        for a, b, c in zip(words, words[1:], words[2:], strict=False):
            self.chain.setdefault((a, b), []).append(c)

    def sentences(self, rng: random.Random) -> Iterator[str]:
        """An endless supply of sentences, each ending with a full stop."""
        while True:
            a, b = rng.choice(self.starts)
            words = [a, b]
            while not words[-1].endswith(".") and len(words) < 40:
                followers = self.chain.get((words[-2], words[-1]))
                if not followers:
                    break
                words.append(rng.choice(followers))
            sentence = " ".join(words)
            yield sentence if sentence.endswith(".") else sentence + "."


_TEXT = _MarkovText(_CORPUS)
_POOL_SIZE = 512
_pool: list[tuple[tuple[str, ...], tuple[str, ...]]] = []


def _sentence_pool() -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
    """512 generated sentences, tokenized once (as the first and as a following sentence).

    Generation then costs a random choice per sentence instead of a Markov walk and a regex
    per sentence, so the simulated model is cheap enough to measure the server, not itself.
    The pieces are interned: the corpus has a few hundred distinct ones, and 20,000 separate
    string objects were 1.2 MiB of every server's memory.
    """
    if not _pool:
        sentences = _TEXT.sentences(random.Random(0))
        for _ in range(_POOL_SIZE):
            sentence = next(sentences)
            _pool.append(
                (
                    tuple(map(sys.intern, tokenize(sentence))),
                    tuple(map(sys.intern, tokenize(" " + sentence))),
                )
            )
    return _pool


class _Pacer:
    """How the streams of one event loop wait: paced ones for their due time, unpaced ones for
    their turn.

    Paced, the streams due in the same millisecond are woken by one timer.

    ``asyncio.sleep`` per token costs a future, a timer handle pushed into the loop's heap and
    popped from it (a Python ``__lt__`` call per comparison) and a cancel. Here a token costs a
    future and a list append, and one timer serves every stream due in that millisecond: 1,000
    paced tasks alone took 8-9 µs of CPU per token with ``asyncio.sleep`` and 3.8 with this.
    A stream is woken at the first millisecond boundary at or after its due time, never early;
    the loop rounds its own timeouts to milliseconds anyway.

    Unpaced, a stream yields after each burst, and the next loop iteration takes at most
    ``TURNS_PER_ITERATION`` bursts; the streams over that wait for a later iteration in the order
    they yielded. Bursts stay as long (what they save per token is kept), but a loop iteration
    holds about ``TURNS_PER_ITERATION × BURST_S`` of them instead of one per running stream.
    """

    __slots__ = ("ahead", "loop", "slots", "ticking", "turns")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.slots: dict[int, list[asyncio.Future[None]]] = {}
        self.turns: deque[asyncio.Future[None]] = deque()
        """Unpaced streams waiting for an iteration with room, first come first."""
        self.ahead = 0
        """Bursts the next loop iteration already runs."""
        self.ticking = False
        """``_tick`` is due as the first callback of the next iteration."""

    def wait(self, due: float) -> asyncio.Future[None]:
        """A future that is done once the loop's clock has reached ``due``."""
        slot = math.ceil(due * 1000)
        future = self.loop.create_future()
        waiting = self.slots.get(slot)
        if waiting is None:
            self.slots[slot] = waiting = []
            self.loop.call_at(slot / 1000, self._wake, slot)
        waiting.append(future)
        return future

    def _wake(self, slot: int) -> None:
        for future in self.slots.pop(slot):
            if not future.done():  # a cancelled stream's
                future.set_result(None)

    def turn(self) -> Awaitable[None]:
        """Wait for this stream's next burst: the next loop iteration if it has room and no
        stream is waiting, else a later one."""
        if not self.ticking:
            self.ticking = True
            self.loop.call_soon(self._tick)
        if self.ahead < TURNS_PER_ITERATION and not self.turns:
            self.ahead += 1
            return asyncio.sleep(0)
        future = self.loop.create_future()
        self.turns.append(future)
        return future

    def _tick(self) -> None:
        # The first callback of each iteration while unpaced streams run (scheduled first in
        # the one before): what was scheduled for this iteration runs now; count the next one's.
        turns = self.turns
        if not self.ahead and not turns:
            self.ticking = False
            return
        self.loop.call_soon(self._tick)
        ahead = 0
        while turns and ahead < TURNS_PER_ITERATION:
            future = turns.popleft()
            if not future.done():  # a cancelled stream's
                future.set_result(None)  # its task runs in the next iteration
                ahead += 1
        self.ahead = ahead


@dataclass(frozen=True, slots=True)
class SimulatedOptions:
    """``[providers.simulated]`` options."""

    ttft_ms: Annotated[float, AT_LEAST_ZERO] = 300.0
    """Delay before the first token."""
    tokens_per_second: Annotated[float, AT_LEAST_ZERO] = 40.0
    """Pace after the first token; 0 = as fast as possible."""
    jitter: Annotated[float, Range(0, 1)] = 0.25
    """Random variation of each gap, as a fraction of the mean gap (0 = metronome)."""
    answer_tokens: Annotated[int, AT_LEAST_ONE] = 160
    """About how long a generated answer is (ends at the sentence that passes it)."""
    seed: int | None = None
    """Fix the randomness: the same request then gives the same text and pacing."""
    fail_after_tokens: Annotated[int, AT_LEAST_ZERO] | None = None
    """Raise a provider error after this many tokens."""
    models: tuple[str, ...] = ("simulated", "echo", TOOLS_MODEL, REASONER_MODEL)
    """Model names offered; any name other than ``echo``, ``sim-tools`` and ``sim-reasoner``
    generates text like ``simulated``."""


class SimulatedProvider:
    """See the module docstring."""

    parameters: Collection[str] = frozenset(
        {"tools", "tool_choice", "parallel_tool_calls", "response_format", "reasoning_effort",
         "seed", "stop", "user", "temperature"}
    )  # fmt: skip
    """What it honours: ``seed`` (this request's generator), ``stop``, ``temperature`` (0 is
    greedy: the same text for the same conversation, whatever the seed; any other value samples),
    ``user`` (accepted, changes nothing), ``response_format`` (JSON that satisfies it, from every
    model but ``echo``), and the structured models' ``tools``, ``tool_choice``,
    ``parallel_tool_calls`` and ``reasoning_effort`` (the other models never call a tool nor
    think: ``tool_choice`` ``"required"`` or a named function on them is refused, ``tool_models``)."""

    def __init__(self, options: SimulatedOptions) -> None:
        self.options = options
        self._rng = random.Random()
        """Shared by this provider's unseeded streams (a generator each would be 2.5 KiB)."""
        self._pacer: _Pacer | None = None
        _sentence_pool()  # built now (tens of ms), not in the first request's loop iteration

    def _pacer_for(self, loop: asyncio.AbstractEventLoop) -> _Pacer:
        if self._pacer is None or self._pacer.loop is not loop:
            self._pacer = _Pacer(loop)
        return self._pacer

    @property
    def models(self) -> Sequence[str]:
        """``simulated``, ``echo``, ``sim-tools`` and ``sim-reasoner`` unless configured otherwise."""
        return self.options.models

    @property
    def tool_models(self) -> Collection[str]:
        """``sim-tools``, if it is offered: no other model calls a tool."""
        return [TOOLS_MODEL] if TOOLS_MODEL in self.options.models else []

    async def aclose(self) -> None:
        """Nothing to release."""

    def stream(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        """Generated or echoed text, tool calls or reasoning, paced."""
        return self._stream(request)

    def check(self, request: GenerationRequest) -> None:
        """Refuse what the model cannot meet before the stream starts (a forced call on a model
        that calls no tools, an unknown ``reasoning_effort``, a tool's or a ``response_format``'s
        schema no value satisfies): the
        response is planned once, with a throwaway generator, and dropped. A plain text
        request has nothing that can fail: it is not planned."""
        if (
            request.model not in (TOOLS_MODEL, REASONER_MODEL)
            and not request.forces_call
            and not request.response_format
            and not request.sampling.get("stop")
        ):
            return
        _Script(request, random.Random(0), 1)

    def _generators(self, request: GenerationRequest) -> tuple[random.Random, random.Random]:
        """The stream's generators: one for what it says, one for its pacing, so that the
        pacing (``tokens_per_second``, ``jitter``) never changes the text of a seed."""
        sampling = request.sampling
        if sampling.get("temperature") == 0:  # greedy: the conversation decides
            key = repr([request.model, *((m.role, m.text) for m in request.messages)])
            return random.Random(key), random.Random("pace " + key)
        seed = sampling.get("seed")
        if not isinstance(seed, int) or isinstance(seed, bool):
            seed = self.options.seed
        if seed is None:
            return self._rng, self._rng
        return random.Random(seed), random.Random(f"pace {seed}")

    async def _stream(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        options = self.options
        rng, pace_rng = self._generators(request)
        script = _Script(request, rng, options.answer_tokens)  # fails before the first token
        pieces = script.deltas
        prompt_tokens = _prompt_tokens(request)
        # Stop before the token that would pass max_tokens, or fail at fail_after_tokens.
        fail_at = options.fail_after_tokens
        limit = request.max_tokens
        stop_at = min(n for n in (limit, fail_at, 1 << 62) if n is not None)
        gap = 1.0 / options.tokens_per_second if options.tokens_per_second > 0 else 0.0
        jitter = options.jitter * gap
        if options.ttft_ms > 0:
            await asyncio.sleep(options.ttft_ms / 1000)
        loop = asyncio.get_running_loop()
        clock = loop.time
        pacer = self._pacer_for(loop)
        pace, turn = pacer.wait, pacer.turn
        due = clock()
        count = 0
        burst_end, burst_due = BURST_TOKENS, due + BURST_S
        cut_short = False
        for piece in pieces:
            if count == stop_at:
                cut_short = True
                break
            if gap:
                # Paced against a schedule, not by sleeping a gap after each token: late wakeups
                # under load do not slow the average rate.
                if due > clock():
                    await pace(due)
                due += gap + jitter * (2 * pace_rng.random() - 1) if jitter else gap
            elif count == burst_end or (not count & 3 and clock() > burst_due):
                # Flat out, but in short bursts bounded by time as well as by count, taking
                # turns on the loop with the other unpaced streams.
                await turn()
                burst_end, burst_due = count + BURST_TOKENS, clock() + BURST_S
            yield piece
            count += 1
        if fail_at is not None and count >= fail_at:
            raise ProviderError(
                "provider_error",
                f"the simulated model failed after {count} tokens (fail_after_tokens)",
            )
        if cut_short:
            yield Finish("length", request.model, Usage(prompt_tokens, count))
        else:
            usage = Usage(prompt_tokens, count)
            yield Finish(script.reason, request.model, usage, script.stop_sequence)


class _Script:
    """What one response says, decided before its first token: its deltas and finish reason."""

    __slots__ = ("deltas", "reason", "stop_sequence")
    deltas: Iterator[Delta]
    reason: str
    stop_sequence: str | None
    """The request's stop sequence the text ended at, once its deltas have found it."""

    def __init__(self, request: GenerationRequest, rng: random.Random, answer_tokens: int) -> None:
        self.reason = "stop"
        self.stop_sequence = None
        model = request.model
        tools = model == TOOLS_MODEL
        if not tools and request.forces_call:  # the core refuses it first (tool_models)
            raise ProviderError(
                "invalid_tool_choice",
                f"model {model!r} does not call tools (sim-tools does): tool_choice cannot be met",
            )
        text: Iterator[str]
        if model == "echo":
            text = iter(tokenize(last_user_text(request.messages)))
        elif tools and (calls := calls_for(request, rng)):
            self.reason = "tool_calls"
            self.deltas = call_deltas(calls)
            return
        elif (answer := json_answer(request, rng)) is not None:
            text = iter(tokenize(answer))
        else:
            opening = results_answer(request.messages) if tools else None
            text = _answer(rng, answer_tokens, opening or "")
        stops = _stop_sequences(request.sampling.get("stop"))
        if stops:
            text = _before_stop(text, stops, self)
        if model == REASONER_MODEL:
            thinking = [Reasoning(piece) for piece in tokenize(reasoning_for(request, rng))]
            self.deltas = _chain(thinking, text)
        else:
            self.deltas = text


def _answer(rng: random.Random, answer_tokens: int, opening: str = "") -> Iterator[str]:
    """Generated sentences, after ``opening``, to about ``answer_tokens`` pieces."""
    pool = _sentence_pool()
    first = tokenize(opening) if opening else rng.choice(pool)[0]
    yield from first
    produced = len(first)
    while produced < answer_tokens:
        pieces = rng.choice(pool)[1]
        yield from pieces
        produced += len(pieces)


def _chain(first: Iterable[Delta], then: Iterable[Delta]) -> Iterator[Delta]:
    yield from first
    yield from then


def _stop_sequences(stop: Any) -> tuple[str, ...]:
    """``stop`` as OpenAI takes it: one string or a list of them (empty ones mean nothing)."""
    if isinstance(stop, str):
        stop = (stop,)
    if not isinstance(stop, list | tuple):
        return ()
    return tuple(s for s in stop if isinstance(s, str) and s)


def _before_stop(pieces: Iterator[str], stops: tuple[str, ...], script: _Script) -> Iterator[str]:
    """``pieces`` up to the first stop sequence to complete (left out, and told to ``script``),
    however the pieces cut the text.

    A piece is held back while a stop sequence could still begin in it: until the text after it
    is as long as the longest sequence minus one, so any match ending later is seen whole first.
    """
    longest = max(map(len, stops))
    held: list[str] = []
    text = ""
    for piece in pieces:
        held.append(piece)
        text += piece
        # The match that ends first (as a model sees it complete, token by token), the longest
        # of those ending together: the same whatever the pieces.
        found = [(i + len(s), -len(s), s) for s in stops if (i := text.find(s)) >= 0]
        if found:
            end, _, script.stop_sequence = min(found)
            cut = end - len(script.stop_sequence)
            for kept in held:
                if cut <= 0:
                    break
                yield kept[:cut]
                cut -= len(kept)
            return
        while held and len(text) - len(held[0]) >= longest - 1:
            first = held.pop(0)
            text = text[len(first) :]
            yield first
    yield from held


def _prompt_tokens(request: GenerationRequest) -> int:
    """The conversation's tokens, counted as the answer's are: messages, calls and tools."""
    count = sum(len(tokenize(m.text)) for m in request.messages)
    for message in request.messages:
        count += sum(len(tokenize(call.arguments)) + 1 for call in message.tool_calls)
    if request.tools:
        count += len(tokenize(json.dumps(list(request.tools), default=str)))
    return count


@hookimpl
def register_providers(register: Register) -> None:
    """The offline simulated model."""
    register(
        "simulated",
        SimulatedProvider,
        options=SimulatedOptions,
        description="offline model with realistic pacing; 'echo' repeats the prompt, 'sim-tools' "
        "calls tools, 'sim-reasoner' thinks first",
    )
