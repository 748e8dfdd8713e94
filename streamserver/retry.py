"""How a provider's stream is retried and closed: the waits between attempts, and the close that
ends the upstream request (``pipeline.py`` uses both)."""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator

log = logging.getLogger("streamserver.pipeline")

MAX_RETRY_WAIT_S = 60.0
"""A longer ``Retry-After`` is not waited for: the failure goes to the client, with the wait."""


def retry_delay(attempt: int, retry_after_s: float | None) -> float | None:
    """How long to wait before retry ``attempt`` (0 = the first); ``None``: do not retry.

    The upstream's ``Retry-After`` when it gave one (up to ``MAX_RETRY_WAIT_S``), else exponential
    backoff from 0.5 s up to 8 s with up to 25 % jitter, so retries from many streams spread out.
    """
    if retry_after_s is not None:
        return retry_after_s if retry_after_s <= MAX_RETRY_WAIT_S else None
    return min(0.5 * 2.0**attempt, 8.0) * (1 - 0.25 * random.random())


async def aclose(iterator: AsyncIterator[object]) -> None:
    """Close a provider's iterator, and with it the upstream request (``Provider.stream``: an
    iterator with ``aclose``, as every async generator has, is closed; any other is dropped)."""
    close = getattr(iterator, "aclose", None)
    if close is not None:
        try:
            await close()
        except Exception:
            log.exception("closing a provider iterator failed")
