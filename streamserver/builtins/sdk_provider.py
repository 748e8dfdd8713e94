"""What the providers built on a vendor SDK (``openai``, ``anthropic``) share: the SDK client and
its connection pool, the models offered, the count of upstream error responses for ``/metrics``,
and the translation of the SDK's exceptions into ``ProviderError``s."""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from ..errors import ProviderError
from ..types import Delta, GenerationRequest
from .upstream_errors import translate


class SDKProvider(ABC):
    """Base of a provider that streams through a vendor SDK's ``client``; a subclass sets
    ``sdk``, ``client``, ``max_retries`` and ``_models`` and writes ``_stream``."""

    sdk: Any
    """The SDK module (its exception types are translated)."""
    client: Any
    """The SDK's async client."""
    max_retries: int
    """Read by the pipeline, which retries a failure before the first token."""
    _models: tuple[str, ...]

    def __init__(self) -> None:
        self.error_responses: Counter[int] = Counter()
        """The upstream's error responses by status, retried ones included (``/metrics``)."""

    async def _count_errors(self, response: Any) -> None:
        # The HTTP client's response hook: every error response, for /metrics.
        if response.status_code >= 400:
            self.error_responses[response.status_code] += 1

    @property
    def models(self) -> Sequence[str]:
        """The default model first, then ``models``."""
        return self._models

    async def aclose(self) -> None:
        """Close the SDK's connection pool."""
        await self.client.close()

    def stream(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        """The upstream's deltas, then one ``Finish`` (``_stream`` of the subclass)."""
        return self._stream(request)

    @abstractmethod
    def _stream(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        """The upstream's deltas for ``request`` (an async generator)."""

    @contextlib.contextmanager
    def translated_errors(self) -> Iterator[None]:
        """Raise what the SDK raises inside as the ``ProviderError`` it means (a timeout, a
        refused connection, a rate limit, ...); anything it does not know goes through as is."""
        try:
            yield
        except ProviderError:
            raise
        except Exception as exc:
            error = translate(exc, self.sdk)
            if error is None:
                raise
            raise error from None
