"""Where a growing JSON text stands: whether the last piece changed the value it holds, and that
value (``PartialJSON``), for the ``object`` formatter.

The value is parsed by jiter's partial mode (``trailing-strings``: an unfinished string shows
what it has so far). Two things are done around it:

- **Only complete scalars.** jiter takes ``{"a": 12`` as ``12``, which may yet become ``123``;
  a number, ``true``, ``false`` or ``null`` still being written is cut off the text before it is
  parsed, so a scalar appears once something after it (a space, ``,``, ``]``, ``}``) ends it.
- **Parse only when the value changed.** A small lexer follows the text piece by piece (its
  container stack, whether it is in a key, a string value or a scalar) and says whether a piece
  can have changed the value: a string value grew, a value opened (``{``, ``[``, ``"``) or a
  scalar ended. Keys, ``:``, ``,``, closing brackets and whitespace never change it, so most
  pieces cost the lexer only, not a parse of the whole text and a comparison of two trees. A
  string piece is skipped over with one regex search; only structure is read char by char.

The lexer also notices text that cannot be JSON (``Hello``, ``{"a" 1}``, text after the value):
from then on nothing is parsed; ``json.loads`` of the whole text says where it broke, at the end.
"""

from __future__ import annotations

import re
from typing import Any

import jiter

_STRING_STOP = re.compile(r'["\\]')
"""What ends a run of plain string content: a quote or an escape."""
_SCALAR_RUN = re.compile(r"[0-9A-Za-z.+-]*")
"""The characters of a number or a literal (the lexer does not check which: jiter does)."""
_SPACE_RUN = re.compile(r"[ \t\n\r]*")
_HEX = frozenset("0123456789abcdefABCDEF")
_SCALAR_START = frozenset("-0123456789tfn")
"""How a number or ``true``, ``false``, ``null`` begins."""

# Lexer states.
_VALUE = 0
"""A value may start (the beginning, after ``:``, after ``[`` or ``,`` in an array)."""
_KEY = 1
"""A key or ``}`` (after ``{``, or ``,`` in an object)."""
_COLON = 2
"""After a key."""
_AFTER = 3
"""After a value: ``,``, a closing bracket, or the end."""
_STRING = 4
"""In a string value."""
_KEY_STRING = 5
"""In a key."""
_SCALAR = 6
"""In a number or a literal."""
_BROKEN = 7
"""Not JSON: nothing more is read."""


class PartialJSON:
    """A JSON text fed piece by piece: ``feed`` says whether the value may have changed,
    ``value`` parses it (only complete scalars)."""

    __slots__ = ("_escape", "_pieces", "_scalar_at", "_stack", "length", "state")

    def __init__(self) -> None:
        self._pieces: list[str] = []
        self.length = 0
        self.state = _VALUE
        self._stack: list[str] = []
        self._escape = 0
        """In a string: 0, or -1 after a backslash, or the hex digits a ``\\u`` still needs."""
        self._scalar_at = 0
        """Where the scalar being written begins (the text is cut there before a parse)."""

    @property
    def broken(self) -> bool:
        """The text cannot be (the start of) JSON."""
        return self.state == _BROKEN

    @property
    def text(self) -> str:
        """Everything fed so far."""
        if len(self._pieces) > 1:
            self._pieces[:] = ["".join(self._pieces)]
        return self._pieces[0] if self._pieces else ""

    def feed(self, piece: str) -> bool:
        """Take the next piece of text; True when the value it holds may have changed."""
        self._pieces.append(piece)
        start = self.length
        self.length = start + len(piece)
        state = self.state
        if state == _BROKEN:
            return False
        changed = False
        stack = self._stack
        i, end = 0, len(piece)
        # Shaped for speed: one regex per run of string content, scalar or whitespace; a
        # Python step per structural character only.
        while i < end:
            if state in (_STRING, _KEY_STRING):
                if self._escape:
                    c = piece[i]
                    i += 1
                    if self._escape == -1:
                        self._escape = 4 if c == "u" else 0
                    elif c in _HEX:
                        self._escape -= 1
                    else:
                        state = _BROKEN
                        break
                    if not self._escape and state == _STRING:
                        changed = True
                    continue
                stop = _STRING_STOP.search(piece, i)
                at = end if stop is None else stop.start()
                if at > i and state == _STRING:
                    changed = True
                if stop is None:
                    break
                i = at + 1
                if piece[at] == "\\":
                    self._escape = -1
                else:
                    state = _AFTER if state == _STRING else _COLON
                continue
            c = piece[i]
            if state == _SCALAR:
                i = _SCALAR_RUN.match(piece, i).end()  # type: ignore[union-attr]
                if i == end:
                    break
                state = _AFTER
                changed = True  # the scalar is complete: something ends it
                continue
            if c in " \t\n\r":
                i = _SPACE_RUN.match(piece, i).end()  # type: ignore[union-attr]
                continue
            i += 1
            if c == '"':
                if state == _VALUE:
                    state = _STRING
                    changed = True
                elif state == _KEY:
                    state = _KEY_STRING
                else:
                    state = _BROKEN
                    break
            elif c == ",":
                if state != _AFTER or not stack:
                    state = _BROKEN
                    break
                state = _KEY if stack[-1] == "{" else _VALUE
            elif c == ":":
                if state != _COLON:
                    state = _BROKEN
                    break
                state = _VALUE
            elif c == "{" or c == "[":
                if state != _VALUE:
                    state = _BROKEN
                    break
                stack.append(c)
                state = _KEY if c == "{" else _VALUE
                changed = True
            elif c == "}":
                if state not in (_AFTER, _KEY) or not stack or stack[-1] != "{":
                    state = _BROKEN
                    break
                stack.pop()
                state = _AFTER
            elif c == "]":
                if state not in (_AFTER, _VALUE) or not stack or stack[-1] != "[":
                    state = _BROKEN
                    break
                stack.pop()
                state = _AFTER
            elif state == _VALUE and c in _SCALAR_START:
                state = _SCALAR
                self._scalar_at = start + i - 1
            else:  # after a value with no container open, only whitespace may follow
                state = _BROKEN
                break
        self.state = state
        return changed and state != _BROKEN  # a broken text is not parsed, even its valid start

    def value(self) -> tuple[bool, Any]:
        """``(True, value)``: the value the text holds so far, its last scalar left out unless
        something ended it; ``(False, None)`` while it holds none, or when jiter refuses it (the
        lexer then takes the text as broken)."""
        text = self.text
        if self.state == _SCALAR:
            text = text[: self._scalar_at]
        if not text.strip():
            return False, None
        try:
            return True, jiter.from_json(
                text.encode(), partial_mode="trailing-strings", cache_mode="keys"
            )
        except ValueError:
            self.state = _BROKEN
            return False, None
