"""What both clients share: the aiohttp session each owns, the reconnect backoff, and
``StreamFailed``, the error a stream that cannot go on raises."""

from __future__ import annotations

import asyncio
import random

import aiohttp


class StreamFailed(Exception):
    """The stream could not be started or resumed (a 4xx/5xx answer, or no reconnect succeeded)."""

    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


class SessionOwner:
    """A client that opens an aiohttp session when its ``async with`` begins and closes it when
    the block ends (or by ``close()``)."""

    _session: aiohttp.ClientSession | None = None

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        """The open HTTP session (use the client as ``async with``)."""
        if self._session is None:
            name = type(self).__name__
            raise RuntimeError(f"use {name} as 'async with {name}(...) as client'")
        return self._session


async def reconnect_backoff(attempt: int, base_s: float, cap_s: float) -> None:
    """Wait before reconnect ``attempt`` (1, 2, ...): exponential, capped, with jitter."""
    delay = min(cap_s, base_s * 2 ** (attempt - 1))
    await asyncio.sleep(delay * (0.5 + random.random() / 2))
