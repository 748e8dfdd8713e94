"""Example plugin: a buffer that never cuts Markdown in the middle of a construct.

A client that renders Markdown as it streams shows broken output when a segment ends inside
`` `a code span` ``, a ``[link](https://example.org)`` or a fenced code block. This buffer emits
whole words, but only at whitespace that lies outside all three, so every segment ends where the
document so far renders correctly.

Use it on a route (``buffer = "markdown"``) or per request (``?buffer=markdown``). When the core's
flush timer fires (``max_delay_ms``), it releases the text before an open construct and keeps the
construct back until it closes, for at most ``max_hold_ms`` after it opened: an ordinary link or code
span arrives whole, and a long fenced block still streams (latency wins over looks once it is that
long).

How it works: a small state machine scans each new character once (``pos`` remembers where it
stopped) and records ``safe``, the last position where a segment may end, and ``opened``, where the
construct still open began. It stops scanning at a character whose meaning depends on the next one
(a backtick run, a ``]``) until that arrives.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated

from streamserver import hookimpl
from streamserver.schema import AT_LEAST_ZERO


@dataclass(frozen=True, slots=True)
class MarkdownOptions:
    """``[buffers.markdown]`` options."""

    max_hold_ms: Annotated[float, AT_LEAST_ZERO] = 1000.0
    """How long the flush timer lets an open code span, link or fenced block wait to close."""


class MarkdownBuffer:
    """Whole words, cut only outside code spans, links and fenced code blocks."""

    def __init__(self, options: MarkdownOptions) -> None:
        self.max_hold_s = options.max_hold_ms / 1000
        self.text = ""
        self.held = 0
        self.pos = 0  # next character of ``text`` to scan
        self.safe = 0  # ``text[:safe]`` may be emitted
        # Where the document stands at ``pos``; it survives cuts and flushes.
        self.fence = 0  # backticks of the open fenced block (0 = none)
        self.span = 0  # backticks of the open code span (0 = none)
        self.link = 0  # 1 inside [link text], 2 inside (link target)
        self.line_start = True
        self.opened = -1  # where in ``text`` the open construct began (-1 = none is open)
        self.opened_at = 0.0  # when it opened (time.monotonic), read by ``release`` only

    def push(self, text: str) -> Sequence[str]:
        """Hold ``text``; return the text up to the last safe cut, if any."""
        self.text += text
        self._scan()
        if not self.safe:
            self.held = len(self.text)
            return ()
        return (self._cut(self.safe),)

    def release(self) -> str:
        """For the core's flush timer: the text before an open construct; the construct itself
        once it has been open ``max_hold_ms``; a word in progress outside any construct (held only
        because no whitespace followed yet) as it is."""
        if self.opened > 0:
            return self._cut(self.opened)
        if self.opened == 0 and time.monotonic() - self.opened_at < self.max_hold_s:
            return ""
        return self.flush()

    def flush(self) -> str:
        """Everything held (end of stream, or a construct held too long)."""
        text, self.text = self.text, ""
        self.pos = self.safe = self.held = 0
        if self.opened > 0:
            self.opened = 0  # the construct goes on at the start of the next text
        return text

    def _cut(self, end: int) -> str:
        segment, self.text = self.text[:end], self.text[end:]
        self.pos -= end
        self.safe = 0
        if self.opened >= 0:
            self.opened -= end
        self.held = len(self.text)
        return segment

    def _scan(self) -> None:
        text, i, end = self.text, self.pos, len(self.text)
        while i < end:
            char = text[i]
            if char == "`":
                run_end = i
                while run_end < end and text[run_end] == "`":
                    run_end += 1
                if run_end == end:
                    break  # the run may go on in the next delta
                self._backticks(run_end - i)
                self._opened_or_closed(i)
                i = run_end
                continue
            if not (self.fence or self.span):
                if char == "[":
                    self.link = 1
                    self._opened_or_closed(i)
                elif char == "]" and self.link == 1:
                    if i + 1 == end:
                        break  # a link only if "(" follows
                    self.link = 2 if text[i + 1] == "(" else 0
                    self._opened_or_closed(i)
                elif char == ")" and self.link == 2:
                    self.link = 0
                    self._opened_or_closed(i)
            if char == "\n":
                self.line_start = True
            elif char != " ":
                self.line_start = False
            if char.isspace() and not (self.fence or self.span or self.link):
                self.safe = i + 1
            i += 1
        self.pos = i

    def _opened_or_closed(self, at: int) -> None:
        # Called at construct characters only, never per ordinary character.
        if not (self.fence or self.span or self.link):
            self.opened = -1
        elif self.opened < 0:
            self.opened, self.opened_at = at, time.monotonic()

    def _backticks(self, run: int) -> None:
        if self.fence:
            if self.line_start and run >= self.fence:
                self.fence = 0
        elif self.span:
            if run == self.span:
                self.span = 0
        elif self.line_start and run >= 3:
            self.fence = run
        else:
            self.span = run
        self.line_start = False


@hookimpl
def register_buffers(register):
    register(
        "markdown",
        MarkdownBuffer,
        options=MarkdownOptions,
        description="whole words, never inside a code span, link or code block",
    )
