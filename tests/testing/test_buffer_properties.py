"""``assert_lossless_buffer``: it passes a buffer that keeps the contract (the built-ins are proven
with it in ``tests/builtins/test_buffers.py``) and fails, saying why, each way a buffer breaks it."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from streamserver.builtins.buffers import WordBuffer, WordOptions
from streamserver.testing import assert_lossless_buffer


class DropsCarriageReturns(WordBuffer):
    """Loses the ``\\r`` of the text it flushes: what a buffer that "normalises" line ends does."""

    def flush(self) -> str:
        return super().flush().replace("\r", "")


class MiscountsHeld:
    """Lossless, but ``held`` counts the deltas it holds instead of their characters."""

    def __init__(self, options: object) -> None:
        self.parts: list[str] = []

    @property
    def held(self) -> int:
        return len(self.parts)

    def push(self, text: str) -> Sequence[str]:
        self.parts.append(text)
        return ()

    def flush(self) -> str:
        text, self.parts = "".join(self.parts), []
        return text


class RepeatsOnRelease(WordBuffer):
    """Its ``release`` gives the held text out but keeps it too: sent twice once the timer fires."""

    def release(self) -> str:
        return self.text


def test_a_lossless_buffer_passes():
    assert_lossless_buffer(WordBuffer, WordOptions(min_words=2))


def test_a_buffer_that_changes_the_text_fails_with_what_it_gave_back():
    with pytest.raises(AssertionError, match="lost or changed text"):
        assert_lossless_buffer(DropsCarriageReturns, WordOptions(), pieces=["\r\n"])


def test_a_buffer_whose_held_is_wrong_fails():
    with pytest.raises(AssertionError, match="held is"):
        assert_lossless_buffer(MiscountsHeld)


def test_a_release_that_keeps_what_it_gave_out_fails():
    with pytest.raises(AssertionError, match=r"held is|lost or changed"):
        assert_lossless_buffer(RepeatsOnRelease, WordOptions())


def test_the_buffer_given_no_options_gets_none():
    made: list[object] = []

    def factory(options: object) -> WordBuffer:
        made.append(options)
        return WordBuffer(WordOptions())

    assert_lossless_buffer(factory, max_examples=5)

    assert made and set(made) == {None}
