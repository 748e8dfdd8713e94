"""The ``anthropic`` provider: Claude models through the official ``anthropic`` SDK's Messages API.

An optional extra: ``pip install 'streamserver[anthropic]'``. Without it the type still exists, so a
config that uses it gets a clear error that says what to install. As with ``openai``, the SDK
handles auth and timeouts, the pipeline retries a failure before the first token (``max_retries``);
the stream's raw bytes are decoded by our SSE decoder, and closing the iterator closes the upstream
response.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any

from ..errors import ConfigError, ProviderError
from ..hookspecs import Register, hookimpl
from ..schema import AT_LEAST_ONE
from ..sse_decoder import SSEDecoder
from ..types import Delta, Finish, GenerationRequest, Usage
from .sdk_provider import SDKProvider, SDKProviderOptions
from .upstream_errors import incomplete, upstream_json

_STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "refusal": "content_filter",
}


@dataclass(frozen=True, slots=True)
class AnthropicProviderOptions(SDKProviderOptions):
    """``[providers.<name>]`` options for ``type = "anthropic"``."""

    model: str = "claude-sonnet-4-5"
    api_key_env: str = "ANTHROPIC_API_KEY"
    max_tokens: Annotated[int, AT_LEAST_ONE] = 1024
    """Sent when a request gives none (the Messages API requires it)."""


class AnthropicProvider(SDKProvider):
    """Streams messages from Anthropic (or a server speaking its Messages API)."""

    def __init__(self, options: AnthropicProviderOptions) -> None:
        try:
            import anthropic
        except ImportError:
            raise ConfigError(
                "type",
                "an installed anthropic SDK: install it with pip install 'streamserver[anthropic]'",
            ) from None
        super().__init__()
        self.sdk = anthropic
        api_key = os.environ.get(options.api_key_env, "")
        if not api_key:
            raise ConfigError(
                "api_key_env", f"the environment variable {options.api_key_env} to hold the API key"
            )
        self.options = options
        self.max_retries = options.max_retries
        self.client = anthropic.AsyncAnthropic(
            api_key=api_key,
            base_url=options.base_url,
            timeout=anthropic.Timeout(options.timeout_s, connect=options.connect_timeout_s),
            max_retries=0,  # the pipeline retries, before the first token only
            default_headers=options.headers or None,
            http_client=anthropic.DefaultAsyncHttpxClient(
                event_hooks={"response": [self._count_errors]}
            ),
        )
        self._models = (options.model, *(m for m in options.models if m != options.model))

    async def _stream(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        system = "\n\n".join(m.text for m in request.messages if m.role == "system")
        body: dict[str, Any] = {
            "model": request.model,
            "max_tokens": request.max_tokens or self.options.max_tokens,
            "messages": [
                {"role": m.role, "content": m.content}
                for m in request.messages
                if m.role != "system"
            ],
            "stream": True,
        }
        if system:
            body["system"] = system
        if self.options.temperature is not None:
            body["temperature"] = self.options.temperature
        with self.translated_errors():
            async with self.client.messages.with_streaming_response.create(**body) as response:
                reason, model, input_tokens, output_tokens = "stop", request.model, 0, 0
                decoder = SSEDecoder()
                async for raw in response.http_response.aiter_bytes():
                    for event in decoder.feed(raw):
                        payload = upstream_json(event.data, "an event")
                        kind = payload.get("type")
                        if kind == "content_block_delta":
                            text = payload.get("delta", {}).get("text")
                            if text:
                                yield text
                        elif kind == "message_start":
                            message = payload.get("message", {})
                            model = message.get("model") or model
                            input_tokens = message.get("usage", {}).get("input_tokens", 0)
                        elif kind == "message_delta":
                            stop = payload.get("delta", {}).get("stop_reason")
                            reason = _STOP_REASONS.get(stop, stop or reason)
                            output_tokens = payload.get("usage", {}).get(
                                "output_tokens", output_tokens
                            )
                        elif kind == "message_stop":
                            yield Finish(reason, model, Usage(input_tokens, output_tokens))
                            return
                        elif kind == "error":
                            message = payload.get("error", {}).get("message", "unknown error")
                            raise ProviderError(
                                "upstream_error", f"the upstream failed: {message}", retryable=True
                            )
                raise incomplete()


@hookimpl
def register_providers(register: Register) -> None:
    """Anthropic's Messages API (needs the anthropic extra)."""
    register("anthropic", AnthropicProvider, options=AnthropicProviderOptions,
             description="Claude models through the anthropic SDK (pip install 'streamserver[anthropic]')")  # fmt: skip
