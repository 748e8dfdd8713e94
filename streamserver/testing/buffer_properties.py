"""One call that proves a buffer keeps the contract the core relies on.

``assert_lossless_buffer(MyBuffer, MyOptions())`` drives fresh buffers the way the pipeline does
(deltas, the flush timer's ``release`` between them, the final ``flush``) with inputs drawn by
hypothesis, and fails with the smallest input that breaks one of:

- **lossless**: the segments, the releases and the final flush joined give back exactly the
  deltas joined, whitespace, line ends and every code point kept;
- **chunk-invariant**: that holds however the same text is cut into deltas, so what a client
  rebuilds never depends on how the upstream's network split the answer;
- **held is exact**: after every call, ``held`` is the count of characters pushed and not yet
  given back (the core's timer and size cap trust it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from .strategies import DANGEROUS, cuts

Step = str | None
"""What the core does to a buffer: push a delta (a string), or fire the flush timer (``None``)."""


def assert_lossless_buffer(
    factory: Callable[[Any], Any],
    options: Any = None,
    *,
    pieces: Sequence[str] = (),
    max_examples: int = 200,
) -> None:
    """Prove that buffers made by ``factory(options)`` are lossless and chunk-invariant, and that
    their ``held`` is exact; raise ``AssertionError`` with the smallest counterexample if not.

    ``pieces`` are deltas that matter to this buffer (its delimiters, the marks it tracks), drawn
    beside the project's dangerous deltas and arbitrary text. A buffer without ``release`` is
    driven as the core drives it: the timer flushes it whole. Call it from a plain (not async)
    test, and not from inside another ``@given``.
    """
    piece = st.one_of(st.sampled_from([*DANGEROUS, *pieces]), st.text(max_size=12))
    steps = st.lists(st.one_of(st.none(), piece), max_size=24)

    @settings(max_examples=max_examples, deadline=None)
    @given(steps=steps, data=st.data())
    def lossless_however_cut(steps: list[Step], data: st.DataObject) -> None:
        text = "".join(step for step in steps if step is not None)
        given_back = _drive(factory(options), steps)
        assert given_back == text, f"lost or changed text: pushed {text!r}, got {given_back!r}"
        recut = data.draw(_recut(text))
        given_back = _drive(factory(options), recut)
        assert given_back == text, (
            f"not chunk-invariant: {text!r} cut as {recut!r} gave back {given_back!r}"
        )

    lossless_however_cut()


def _recut(text: str) -> st.SearchStrategy[list[Step]]:
    """The same text cut elsewhere, with timer releases in between."""

    @st.composite
    def recut(draw: Any) -> list[Step]:
        out: list[Step] = []
        for fragment in cuts(draw, text):
            if draw(st.booleans()):
                out.append(None)
            out.append(fragment)
        return out

    return recut()


def _drive(buffer: Any, steps: Sequence[Step]) -> str:
    """Run ``steps`` through ``buffer``, checking ``held`` after each; return all it gave back."""
    release = getattr(buffer, "release", None) or buffer.flush
    out: list[str] = []
    pushed = given = 0
    for step in steps:
        if step is None:
            got = release()
            assert isinstance(got, str), f"release() returned {got!r}, not a str"
            ready: Sequence[str] = (got,)
        else:
            pushed += len(step)
            ready = buffer.push(step)
            assert all(isinstance(s, str) for s in ready), f"push({step!r}) returned {ready!r}"
        out.extend(ready)
        given += sum(map(len, ready))
        assert buffer.held == pushed - given, (
            f"held is {buffer.held} after {'a release' if step is None else f'push({step!r})'}, "
            f"but {pushed - given} characters are waiting"
        )
    rest = buffer.flush()
    assert isinstance(rest, str), f"flush() returned {rest!r}, not a str"
    assert buffer.held == 0, f"held is {buffer.held} after the final flush"
    return "".join([*out, rest])
