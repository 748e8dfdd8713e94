"""Token-sized pieces of text, the way a BPE model streams them: the simulated provider and the
fake upstream both cut their text with it, so their streams look like a real model's."""

from __future__ import annotations

import re

_PIECES = re.compile(
    r"'(?:s|t|re|ve|m|ll|d)\b| ?[^\W\d_]+| ?\d{1,3}| ?[^\s\w]+|\s+(?!\S)|\s+|.", re.DOTALL
)
"""A GPT-2 style pre-tokenizer; the final ``.`` makes every character belong to some piece."""


def tokenize(text: str) -> list[str]:
    """Split ``text`` into token-sized pieces; ``"".join(tokenize(t)) == t`` for every ``t``."""
    pieces: list[str] = []
    for piece in _PIECES.findall(text):
        # Long words become several sub-word tokens, as a BPE vocabulary would split them.
        while len(piece) > 7:
            cut = 5 if piece[0] == " " else 4
            pieces.append(piece[:cut])
            piece = piece[cut:]
        pieces.append(piece)
    return pieces
