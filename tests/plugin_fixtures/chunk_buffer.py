"""A plugin with declared options: a buffer that cuts the text into pieces of ``size`` characters.

Loaded from a plugins directory in the tests (copied into ``tmp_path``), so the option values that
reach the stream prove the plugin's section was validated into its options dataclass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from streamserver import hookimpl


@dataclass(frozen=True, slots=True)
class ChunkOptions:
    """``[buffers.chunks]`` options."""

    size: int = 1
    """Characters per segment."""


class ChunkBuffer:
    """Segments of exactly ``size`` characters; the remainder waits for more text or the flush."""

    def __init__(self, options: ChunkOptions) -> None:
        self.size = options.size
        self.text = ""
        self.held = 0

    def push(self, text: str) -> Sequence[str]:
        self.text += text
        cut = len(self.text) - len(self.text) % self.size
        segments = [self.text[i : i + self.size] for i in range(0, cut, self.size)]
        self.text = self.text[cut:]
        self.held = len(self.text)
        return segments

    def flush(self) -> str:
        text, self.text, self.held = self.text, "", 0
        return text


@hookimpl
def register_buffers(register):
    register("chunks", ChunkBuffer, options=ChunkOptions, description="fixed-size pieces")
