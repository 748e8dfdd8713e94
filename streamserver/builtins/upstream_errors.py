"""What an upstream failure means to a client: one code and a safe message (no key, no URL).

Shared by the SDK-based providers (``openai``, ``anthropic``): both SDKs raise the same families of
exceptions (``APIStatusError``, ``APITimeoutError``, ``APIConnectionError``), and mid-stream reads
raise the HTTP library's own transport errors.
"""

from __future__ import annotations

import datetime
import email.utils
import functools
import json
from collections.abc import Mapping
from typing import Any

import orjson

from ..errors import ProviderError


@functools.cache
def _http_library() -> Any:
    """The SDKs' HTTP library, imported when an error needs it (not at start-up: ~1.5 MB)."""
    try:  # the SDKs run on httpx2 (openai 3.x, anthropic 2.x) or on httpx (earlier versions)
        import httpx2
    except ImportError:  # pragma: no cover - depends on the installed SDKs
        import httpx

        return httpx
    return httpx2


def translate(exc: BaseException, sdk: Any) -> ProviderError | None:
    """The ``ProviderError`` for an exception raised by ``sdk`` or its HTTP client, else ``None``."""
    http = _http_library()
    if isinstance(exc, sdk.APIStatusError):
        return status_error(exc.status_code, retry_after(exc.response.headers))
    if isinstance(exc, sdk.APIConnectionError) and _refused(exc):
        return ProviderError(
            "upstream_unavailable", "could not connect to the upstream", retryable=True
        )
    if isinstance(exc, sdk.APITimeoutError | TimeoutError | http.TimeoutException):
        return ProviderError(
            "upstream_timeout", "the upstream did not answer in time", retryable=True
        )
    if isinstance(exc, sdk.APIConnectionError):
        return ProviderError(
            "upstream_unavailable", "could not connect to the upstream", retryable=True
        )
    if isinstance(exc, http.TransportError):
        return ProviderError(
            "upstream_disconnected", "the upstream connection broke mid-stream", retryable=True
        )
    return None


def _refused(exc: BaseException) -> bool:
    """Whether a connection error was caused by an OS-level refusal (nothing listening, no route,
    an unknown host) rather than a timeout.

    The SDKs' aiohttp transport reports every failed connect, a refused one included, as a
    ``ConnectTimeout``; the ``OSError`` at the bottom of the chain says what really happened.
    """
    cause: BaseException | None = exc
    for _ in range(16):  # a chain is a few links long; the bound guards against a cycle
        if cause is None:
            return False
        if isinstance(cause, OSError) and not isinstance(cause, TimeoutError):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def retry_after(headers: Mapping[str, str]) -> float | None:
    """The wait an upstream asked for, in seconds: ``retry-after-ms`` (OpenAI's), or
    ``Retry-After`` as seconds or an HTTP date; ``None`` when it gave none that parses."""
    milliseconds = headers.get("retry-after-ms")
    try:
        if milliseconds is not None:
            return max(float(milliseconds) / 1000, 0.0)
        value = headers.get("retry-after")
        if value is None:
            return None
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value or "")
    except (TypeError, ValueError):
        return None
    return max((when - datetime.datetime.now(datetime.UTC)).total_seconds(), 0.0)


def status_error(status: int, retry_after_s: float | None = None) -> ProviderError:
    """An upstream HTTP error status as a client-safe error (with the wait it asked for)."""
    if status == 429:
        return ProviderError(
            "upstream_rate_limited",
            "the upstream is rate limiting requests",
            retryable=True,
            retry_after_s=retry_after_s,
        )
    if status in (401, 403):
        return ProviderError("upstream_auth", "the upstream refused the configured API key")
    if status == 404:
        return ProviderError(
            "upstream_not_found", "the upstream does not know this model or endpoint"
        )
    if status >= 500 or status == 529:
        return ProviderError(
            "upstream_error",
            f"the upstream failed with HTTP {status}",
            retryable=True,
            retry_after_s=retry_after_s,
        )
    return ProviderError("upstream_rejected", f"the upstream rejected the request (HTTP {status})")


def incomplete() -> ProviderError:
    """The upstream's stream ended without its final event."""
    return ProviderError(
        "upstream_incomplete", "the upstream closed the stream before it finished", retryable=True
    )


def malformed(what: str) -> ProviderError:
    """The upstream sent ``what`` ("a chunk that is not ...") where the API says otherwise."""
    return ProviderError("upstream_malformed", f"the upstream sent {what}")


def upstream_json(data: str, what: str) -> dict[str, Any]:
    """One upstream SSE event's data as a JSON object (``what``: "chunk", "event"), or the
    ``upstream_malformed`` error it is. Once per relayed token: orjson first (~3x faster than
    json), json for what orjson refuses and json takes (a lone surrogate escape, NaN)."""
    try:
        payload = orjson.loads(data)
    except ValueError:
        try:
            payload = json.loads(data)
        except ValueError:
            raise malformed(f"{what} that is not JSON") from None
    if not isinstance(payload, dict):
        raise malformed(f"{what} that is not a JSON object")
    return payload
