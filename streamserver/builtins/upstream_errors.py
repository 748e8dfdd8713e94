"""What an upstream failure means to a client: one code and a safe message (no key, no URL).

Shared by the SDK-based providers (``openai``, ``anthropic``): both SDKs raise the same families of
exceptions (``APIStatusError``, ``APITimeoutError``, ``APIConnectionError``), and mid-stream reads
raise the HTTP library's own transport errors.
"""

from __future__ import annotations

import functools
from typing import Any

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
        return status_error(exc.status_code)
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


def status_error(status: int) -> ProviderError:
    """An upstream HTTP error status as a client-safe error."""
    if status == 429:
        return ProviderError(
            "upstream_rate_limited", "the upstream is rate limiting requests", retryable=True
        )
    if status in (401, 403):
        return ProviderError("upstream_auth", "the upstream refused the configured API key")
    if status == 404:
        return ProviderError(
            "upstream_not_found", "the upstream does not know this model or endpoint"
        )
    if status >= 500 or status == 529:
        return ProviderError(
            "upstream_error", f"the upstream failed with HTTP {status}", retryable=True
        )
    return ProviderError("upstream_rejected", f"the upstream rejected the request (HTTP {status})")


def incomplete() -> ProviderError:
    """The upstream's stream ended without its final event."""
    return ProviderError(
        "upstream_incomplete", "the upstream closed the stream before it finished", retryable=True
    )
