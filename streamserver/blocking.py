"""Async streams for code without an event loop (scripts, notebooks that are not async)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from typing import TypeVar

T = TypeVar("T")


def iterate_blocking(
    loop: asyncio.AbstractEventLoop,
    items: AsyncGenerator[T, None],
    finish: Callable[[], Awaitable[None]] | None = None,
) -> Iterator[T]:
    """Each item of ``items``, driven on ``loop``, which is closed at the end, after ``items``
    (and then ``finish``, e.g. a client's ``close``) however the iteration ends."""
    try:
        while True:
            try:
                yield loop.run_until_complete(anext(items))
            except StopAsyncIteration:
                return
    finally:
        loop.run_until_complete(items.aclose())
        if finish is not None:
            loop.run_until_complete(finish())
        loop.close()
