"""Example plugin: a buffer that never cuts Markdown in the middle of a construct.

A client that renders Markdown as it streams shows broken output when a segment ends inside
`` `a code span` ``, a ``[link](https://example.org)`` or a fenced code block. This buffer emits
whole words, but only at whitespace that lies outside all three, so every segment ends where the
document so far renders correctly.

Use it on a route (``buffer = "markdown"``) or per request (``?buffer=markdown``). The core's flush
timer still applies: give it room with ``[buffers.markdown] max_delay_ms = 2000`` if fenced blocks are
long, since a timer flush releases text even mid-construct (latency wins over looks).

How it works: a small state machine scans each new character once (``pos`` remembers where it
stopped) and records ``safe``, the last position where a segment may end. It stops scanning at a
character whose meaning depends on the next one (a backtick run, a ``]``) until that arrives.
"""

from __future__ import annotations

from collections.abc import Sequence

from streamserver import hookimpl


class MarkdownBuffer:
    """Whole words, cut only outside code spans, links and fenced code blocks."""

    def __init__(self, options: object) -> None:
        self.text = ""
        self.held = 0
        self.pos = 0  # next character of ``text`` to scan
        self.safe = 0  # ``text[:safe]`` may be emitted
        # Where the document stands at ``pos``; it survives cuts and flushes.
        self.fence = 0  # backticks of the open fenced block (0 = none)
        self.span = 0  # backticks of the open code span (0 = none)
        self.link = 0  # 1 inside [link text], 2 inside (link target)
        self.line_start = True

    def push(self, text: str) -> Sequence[str]:
        """Hold ``text``; return the text up to the last safe cut, if any."""
        self.text += text
        self._scan()
        if not self.safe:
            self.held = len(self.text)
            return ()
        segment, self.text = self.text[: self.safe], self.text[self.safe :]
        self.pos -= self.safe
        self.safe = 0
        self.held = len(self.text)
        return (segment,)

    def flush(self) -> str:
        """Everything held (end of stream, or the core's timer)."""
        text, self.text = self.text, ""
        self.pos = self.safe = self.held = 0
        return text

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
                i = run_end
                continue
            if not (self.fence or self.span):
                if char == "[":
                    self.link = 1
                elif char == "]" and self.link == 1:
                    if i + 1 == end:
                        break  # a link only if "(" follows
                    self.link = 2 if text[i + 1] == "(" else 0
                elif char == ")" and self.link == 2:
                    self.link = 0
            if char == "\n":
                self.line_start = True
            elif char != " ":
                self.line_start = False
            if char.isspace() and not (self.fence or self.span or self.link):
                self.safe = i + 1
            i += 1
        self.pos = i

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
        description="whole words, never inside a code span, link or code block",
    )
