"""Built-in buffer strategies: raw, delimiter, word, sentence.

The core adds the flush timer (``max_delay_ms``), the size cap (``max_chars``) and the final flush
to every one of them, so each strategy only decides where a segment may end. When the timer or the
cap fires, a strategy gives up its held text through the last word boundary (``release``), so a slow
stream still never shows half a word. All of them are lossless: they cut the text, never change it.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated

from ..hookspecs import Register, hookimpl
from ..schema import AT_LEAST_ONE

_NOTHING: tuple[str, ...] = ()


class RawBuffer:
    """Every delta as it comes: one segment per delta, nothing held."""

    held = 0
    passthrough = True
    """The pipeline may skip ``push`` and emit each delta itself (same result, less work)."""

    def __init__(self, options: object) -> None:
        pass

    def push(self, text: str) -> Sequence[str]:
        """The delta itself."""
        return (text,)

    def flush(self) -> str:
        """Nothing is ever held."""
        return ""

    release = flush


_THROUGH_LAST_SPACE = re.compile(r".*\s", re.DOTALL)
"""Held text through its last whitespace: what a timer release gives up (one backward scan)."""


class HeldText(ABC):
    """Base for strategies that hold text until a cut point: ``cut`` says where a segment may end.

    ``push`` only rescans the tail that could hold a new cut point (``lookback`` characters before
    the new text), so a long held run costs no more per delta than a short one.
    """

    lookback = 0

    def __init__(self) -> None:
        self.text = ""
        self.held = 0

    def push(self, text: str) -> Sequence[str]:
        """Hold ``text``; return the segments that end at cut points found so far."""
        start = max(0, len(self.text) - self.lookback)
        self.text += text
        segments = self.cut(self.text, start)
        if not segments:
            self.held = len(self.text)
            return _NOTHING
        end = sum(len(s) for s in segments)
        self.text = self.text[end:]
        self.held = len(self.text)
        return segments

    def flush(self) -> str:
        """Everything held."""
        text, self.text, self.held = self.text, "", 0
        return text

    def release(self) -> str:
        """For the flush timer and the size cap: the held text through its last whitespace,
        keeping the word in progress back. Held text with no whitespace at all (one long word, or
        a script written without spaces) is released whole, so no text waits forever."""
        whole_words = _THROUGH_LAST_SPACE.match(self.text)
        if whole_words is None:
            return self.flush()
        end = whole_words.end()
        text, self.text = self.text[:end], self.text[end:]
        self.held = len(self.text)
        return text

    @abstractmethod
    def cut(self, text: str, start: int) -> list[str]:
        """Split off the complete segments at the front of ``text`` (searching from ``start``)."""


@dataclass(frozen=True, slots=True)
class DelimiterOptions:
    """``[buffers.delimiter]`` options."""

    flush_on: tuple[str, ...] = (". ", "! ", "? ", "\n")
    """A segment ends after any of these strings."""


class DelimiterBuffer(HeldText):
    """Flushes up to and including the last delimiter seen (one segment per flush)."""

    def __init__(self, options: DelimiterOptions) -> None:
        super().__init__()
        delimiters = [d for d in options.flush_on if d]
        # Longest first, so ". " wins over "." when both are configured.
        self.pattern = re.compile(
            "|".join(re.escape(d) for d in sorted(delimiters, key=len, reverse=True))
        )
        self.lookback = max((len(d) for d in delimiters), default=1) - 1

    def cut(self, text: str, start: int) -> list[str]:
        """One segment through the end of the last delimiter in ``text``."""
        end = -1
        for match in self.pattern.finditer(text, start):
            end = match.end()
        return [text[:end]] if end > 0 else []


@dataclass(frozen=True, slots=True)
class WordOptions:
    """``[buffers.word]`` options."""

    min_words: Annotated[int, AT_LEAST_ONE] = 1
    """Emit only when at least this many whole words are ready."""


_WHITESPACE_RUN = re.compile(r"\s+")


class WordBuffer(HeldText):
    """Whole words: text up to the last whitespace is emitted (with that whitespace) once it holds
    ``min_words`` words; the trailing partial word waits for the next delta or the timer."""

    def __init__(self, options: WordOptions) -> None:
        super().__init__()
        self.min_words = max(1, options.min_words)
        self.lookback = 1 << 30  # word counting needs the whole held text (bounded by max_chars)

    def cut(self, text: str, start: int) -> list[str]:
        """Everything through the last whitespace run, if it holds enough words."""
        last = None
        words = 0
        for match in _WHITESPACE_RUN.finditer(text):
            if match.start() > 0 and not text[match.start() - 1].isspace():
                words += 1
            last = match
        if last is None or words < self.min_words:
            return []
        return [text[: last.end()]]


@dataclass(frozen=True, slots=True)
class SentenceOptions:
    """``[buffers.sentence]`` options."""

    abbreviations: tuple[str, ...] = (
        "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "e.g", "i.e", "cf", "al", "fig",
        "vol", "approx", "inc", "ltd", "co", "jan", "feb", "mar", "apr", "jun", "jul",
        "aug", "sep", "sept", "oct", "nov", "dec",
    )  # fmt: skip
    """Words that end with a full stop without ending the sentence (case-insensitive)."""
    newline_ends: bool = True
    """A line break also ends a segment (lists, headings and code have no full stops)."""


_SENTENCE_END = re.compile(
    r"""(?P<stop>[.!?…]+)["'”’)\]»]*(?P<space>\s+)"""  # Western stop, closers, then whitespace
    r"""|[。！？]+["'”’)\]」』》]*"""  # CJK stops need no whitespace
    r"""|\n"""
)
_WORD_BEFORE = re.compile(r"([\w.]+)$")


class SentenceBuffer(HeldText):
    """Whole sentences, one segment each, ending at ``.``, ``!``, ``?``, ``…`` followed by
    whitespace, or at ``。！？``; ``3.14``, ``e.g.`` and ``Mr.`` inside a sentence do not end it."""

    lookback = 8  # a stop, a few closing quotes and the start of the whitespace after them

    def __init__(self, options: SentenceOptions) -> None:
        super().__init__()
        self.abbreviations = frozenset(a.lower().rstrip(".") for a in options.abbreviations)
        self.newline_ends = options.newline_ends

    def cut(self, text: str, start: int) -> list[str]:
        """Each complete sentence at the front of ``text``, with the whitespace after it."""
        segments: list[str] = []
        begin = 0
        for match in _SENTENCE_END.finditer(text, start):
            if match.group() == "\n":
                if not self.newline_ends:
                    continue
            elif match.group("stop") is not None and self._not_an_end(
                text, match.start(), match.group("stop")
            ):
                continue
            if match.end() > begin:
                segments.append(text[begin : match.end()])
                begin = match.end()
        return segments

    def _not_an_end(self, text: str, stop_at: int, stop: str) -> bool:
        if stop != ".":
            return False
        word = _WORD_BEFORE.search(text, 0, stop_at)
        if word is None:
            return False
        word_text = word.group(1).lower()
        # "3." (a list number), "J." (an initial), "e.g." and "Mr." don't end a sentence.
        return word_text.isdigit() or len(word_text) == 1 or word_text in self.abbreviations


@hookimpl
def register_buffers(register: Register) -> None:
    """The built-in strategies."""
    register("raw", RawBuffer, description="every delta as it comes")
    register(
        "delimiter",
        DelimiterBuffer,
        options=DelimiterOptions,
        description="up to the last delimiter",
    )
    register(
        "word", WordBuffer, options=WordOptions, description="whole words, min_words at a time"
    )
    register("sentence", SentenceBuffer, options=SentenceOptions, description="whole sentences")
