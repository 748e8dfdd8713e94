"""The offline default provider: plausible English at a realistic pace, with no network at all.

Models:
- ``simulated``: generates text (a word-level Markov chain over a small built-in corpus), split into
  pieces the size of a BPE tokenizer's, after ``ttft_ms`` and at ``tokens_per_second``.
- ``echo``: streams back the last user message in token-sized pieces, so any text can be sent
  through the whole pipeline and compared on the other side.

``fail_after_tokens`` makes either model fail mid-stream (error paths, demos), ``seed`` makes the
output repeatable, and ``tokens_per_second = 0`` means as fast as possible (benchmarks).
"""

from __future__ import annotations

import asyncio
import math
import random
import sys
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from typing import Annotated

from ..errors import ProviderError
from ..hookspecs import Register, hookimpl
from ..schema import AT_LEAST_ONE, AT_LEAST_ZERO, Range
from ..tokens import tokenize
from ..types import Delta, Finish, GenerationRequest, Usage

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
    """Wakes the streams of one event loop that are due in the same millisecond with one timer.

    ``asyncio.sleep`` per token costs a future, a timer handle pushed into the loop's heap and
    popped from it (a Python ``__lt__`` call per comparison) and a cancel. Here a token costs a
    future and a list append, and one timer serves every stream due in that millisecond: 1,000
    paced tasks alone took 8-9 µs of CPU per token with ``asyncio.sleep`` and 3.8 with this.
    A stream is woken at the first millisecond boundary at or after its due time, never early;
    the loop rounds its own timeouts to milliseconds anyway.
    """

    __slots__ = ("loop", "slots")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.slots: dict[int, list[asyncio.Future[None]]] = {}

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
    models: tuple[str, ...] = ("simulated", "echo")
    """Model names offered; any name other than ``echo`` generates text."""


class SimulatedProvider:
    """See the module docstring."""

    def __init__(self, options: SimulatedOptions) -> None:
        self.options = options
        self._rng = random.Random()
        """Shared by this provider's unseeded streams (a generator each would be 2.5 KiB)."""
        self._pacer: _Pacer | None = None

    def _pacer_for(self, loop: asyncio.AbstractEventLoop) -> _Pacer:
        if self._pacer is None or self._pacer.loop is not loop:
            self._pacer = _Pacer(loop)
        return self._pacer

    @property
    def models(self) -> Sequence[str]:
        """``simulated`` and ``echo`` unless configured otherwise."""
        return self.options.models

    async def aclose(self) -> None:
        """Nothing to release."""

    def stream(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        """Generated or echoed text, paced."""
        return self._stream(request)

    async def _stream(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        options = self.options
        rng = random.Random(options.seed) if options.seed is not None else self._rng
        pieces = self._pieces(request, rng)
        prompt_tokens = sum(len(tokenize(m.text)) for m in request.messages)
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
        pace = self._pacer_for(loop).wait
        due = clock()
        count = 0
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
                due += gap + jitter * (2 * rng.random() - 1) if jitter else gap
            elif not count & 63:
                await asyncio.sleep(0)  # flat out, but let the rest of the server breathe
            yield piece
            count += 1
        if fail_at is not None and count >= fail_at:
            raise ProviderError(
                "provider_error",
                f"the simulated model failed after {count} tokens (fail_after_tokens)",
            )
        reason = "length" if cut_short else "stop"
        yield Finish(reason, request.model, Usage(prompt_tokens, count))

    def _pieces(self, request: GenerationRequest, rng: random.Random) -> Iterator[str]:
        if request.model == "echo":
            users = [m.text for m in request.messages if m.role == "user"]
            yield from tokenize(users[-1] if users else "")
            return
        pool = _sentence_pool()
        first = rng.choice(pool)[0]
        yield from first
        produced = len(first)
        while produced < self.options.answer_tokens:
            pieces = rng.choice(pool)[1]
            yield from pieces
            produced += len(pieces)


@hookimpl
def register_providers(register: Register) -> None:
    """The offline simulated model."""
    register(
        "simulated",
        SimulatedProvider,
        options=SimulatedOptions,
        description="offline text generator with realistic pacing; model 'echo' repeats the prompt",
    )
