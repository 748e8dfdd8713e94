"""What the providers built on a vendor SDK (``openai``, ``anthropic``) share: the SDK client and
its connection pool, the models offered, the count of upstream error responses for ``/metrics``,
and the translation of the SDK's exceptions into ``ProviderError``s."""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import AsyncIterator, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

from ..errors import ProviderError
from ..schema import ABOVE_ZERO, AT_LEAST_ZERO
from ..types import Delta, GenerationRequest
from .upstream_errors import translate


@dataclass(frozen=True, slots=True)
class SDKProviderOptions:
    """The ``[providers.<name>]`` options every SDK-backed provider takes (each adds its own)."""

    model: str = ""
    """The default model (also offered)."""
    models: tuple[str, ...] = ()
    """Other model names this instance serves; requests naming them are routed here."""
    base_url: str | None = None
    """The API's URL; unset = the SDK's default."""
    api_key_env: str = ""
    """Environment variable holding the API key."""
    timeout_s: Annotated[float, ABOVE_ZERO] = 60.0
    """Longest wait for any read from the upstream (a stall longer than this ends the stream)."""
    connect_timeout_s: Annotated[float, ABOVE_ZERO] = 10.0
    max_retries: Annotated[int, AT_LEAST_ZERO] = 2
    """Retries before the first token (429, 5xx, connection errors, a drop before any text), with
    backoff and jitter; the pipeline does them."""
    headers: dict[str, str] = field(default_factory=dict)
    """Extra request headers (e.g. an organisation or a proxy's routing header)."""
    temperature: float | None = None


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
    parameters: Collection[str] = ()
    """The request parameters the provider honours (``types.Provider.parameters``)."""

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

    _post_as: tuple[Any, Any]
    """``cast_to`` and ``stream_cls`` for ``client.post`` (set by the subclass): the SDK's stream
    class is only a holder for the unread response, never iterated."""

    @contextlib.asynccontextmanager
    async def posted(
        self, path: str, body: Mapping[str, Any], request: GenerationRequest
    ) -> AsyncIterator[Any]:
        """The upstream's unread response to a streaming POST of ``body`` to ``path``, closed on
        exit (and with it the upstream request). ``client.post``, not the SDK's typed ``create``:
        the body goes out as it is, where ``create`` first walks it against the SDK's typed
        parameters (~0.6 ms of CPU per request with a 1 KB prompt, more with a long history).
        Auth, ``base_url``, timeouts and retries are the client's either way. The request's
        ``traceparent`` (a tracing sink is on) goes with it, so the upstream joins the trace."""
        cast_to, stream_cls = self._post_as
        options = {"headers": {"traceparent": request.traceparent}} if request.traceparent else {}
        stream = await self.client.post(
            path, body=body, cast_to=cast_to, options=options, stream=True, stream_cls=stream_cls
        )
        async with stream:
            yield stream.response

    @staticmethod
    def whole_answer(response: Any) -> bool:
        """A whole JSON answer where a stream was asked for (a proxy or server that does not
        stream, older Ollama with tools): relayed as the same parts."""
        return bool(response.headers.get("content-type", "").startswith("application/json"))

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


def plain(value: Any) -> Any:
    """``value`` as JSON-ready data: every mapping a ``dict``, every tuple a ``list`` (a request's
    parts may be read-only mappings and tuples; the SDKs serialise with ``json``)."""
    if isinstance(value, Mapping):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    return value
