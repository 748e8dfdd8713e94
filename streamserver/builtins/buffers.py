"""Built-in buffer strategies. The core adds the flush timer (``max_delay_ms``), the size cap
(``max_chars``) and the final flush to every one of them."""

from __future__ import annotations

from collections.abc import Sequence

from ..hookspecs import Register, hookimpl


class RawBuffer:
    """Every delta as it comes: one segment per delta, nothing held."""

    held = 0

    def __init__(self, options: object) -> None:
        pass

    def push(self, text: str) -> Sequence[str]:
        """The delta itself."""
        return (text,)

    def flush(self) -> str:
        """Nothing is ever held."""
        return ""


@hookimpl
def register_buffers(register: Register) -> None:
    """The built-in strategies."""
    register("raw", RawBuffer, description="every delta as it comes")
