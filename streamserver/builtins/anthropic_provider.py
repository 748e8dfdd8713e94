"""The ``anthropic`` provider: Claude models through the official ``anthropic`` SDK's Messages API.

An optional extra: ``pip install 'streamserver[anthropic]'``. Without it the type still exists, so a
config that uses it gets a clear error that says what to install. As with ``openai``, the SDK
handles auth and timeouts, the pipeline retries a failure before the first token (``max_retries``);
the body goes out through ``client.post`` as it is, the stream's raw bytes are decoded by our SSE
decoder, and closing the iterator closes the upstream response.

Parts: ``text_delta`` is text, ``thinking_delta`` is ``Reasoning`` (its ``signature_delta`` a
``ReasoningSignature``), a ``tool_use`` block is a
``ToolCallDelta`` (its index: its place among the answer's tool calls) and its
``input_json_delta``s are the argument fragments. The request's translation is in
``anthropic_messages.py``; the parameters Anthropic has no word for (``seed``, the penalties,
``logit_bias``, ``response_format``) are not in ``parameters``, so the service refuses them.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Annotated, Any

from ..errors import ConfigError, ProviderError
from ..hookspecs import Register, hookimpl
from ..schema import AT_LEAST_ONE, AT_LEAST_ZERO
from ..sse_decoder import SSEDecoder
from ..types import (
    Delta,
    Finish,
    GenerationRequest,
    Reasoning,
    ReasoningSignature,
    ToolCallDelta,
    Usage,
)
from .anthropic_messages import (  # fmt: skip
    HONOURED,
    MIN_THINKING_BUDGET,
    STOP_REASONS,
    message_parts,
    request_body,
    tool_use_start,
)
from .sdk_provider import SDKProvider, SDKProviderOptions
from .upstream_errors import incomplete, malformed, upstream_json

_NO_DELTA: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class AnthropicProviderOptions(SDKProviderOptions):
    """``[providers.<name>]`` options for ``type = "anthropic"``."""

    model: str = "claude-sonnet-4-5"
    api_key_env: str = "ANTHROPIC_API_KEY"
    max_tokens: Annotated[int, AT_LEAST_ONE] = 1024
    """Sent when a request gives none (the Messages API requires it); with thinking on, the
    thinking budget is added to it."""
    thinking_budget_tokens: Annotated[int, AT_LEAST_ZERO] = 0
    """Extended thinking for requests without ``reasoning_effort``: its budget in tokens (at
    least 1024); 0 = no thinking unless a request asks."""


class AnthropicProvider(SDKProvider):
    """Streams messages from Anthropic (or a server speaking its Messages API)."""

    parameters = HONOURED

    def __init__(self, options: AnthropicProviderOptions) -> None:
        if 0 < options.thinking_budget_tokens < MIN_THINKING_BUDGET:
            raise ConfigError(
                "thinking_budget_tokens",
                f"0 (no thinking) or at least {MIN_THINKING_BUDGET} (Anthropic's smallest budget)",
                got=options.thinking_budget_tokens,
            )
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
        self._post_as = (
            anthropic.types.Message,
            anthropic.AsyncStream[anthropic.types.RawMessageStreamEvent],
        )

    def check(self, request: GenerationRequest) -> None:
        """What Messages cannot take (malformed call arguments, an image URL it cannot fetch,
        an unknown effort) is refused before the stream starts: the body is built and dropped."""
        self._body(request)

    def _body(self, request: GenerationRequest) -> dict[str, Any]:
        options = self.options
        return request_body(request, max_tokens=options.max_tokens,
                            temperature=options.temperature,
                            thinking_budget=options.thinking_budget_tokens)  # fmt: skip

    async def _stream(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        body = self._body(request)
        body["stream"] = True
        with self.translated_errors():
            async with self.posted("/v1/messages", body, request) as response:
                if self.whole_answer(response):
                    message = upstream_json(
                        (await response.aread()).decode("utf-8", "replace"), "a message"
                    )
                    _raise_error(message)
                    for part in message_parts(message, request.model):
                        yield part
                    return
                reason: Any = "stop"
                stop_sequence: Any = None
                model, input_tokens, output_tokens = request.model, 0, 0
                # content block index -> [its place among the tool calls, any arguments sent?]
                calls: dict[Any, list[Any]] = {}
                decoder = SSEDecoder()
                async for raw in response.aiter_bytes():
                    try:  # free unless raised (zero-cost exceptions)
                        for event in decoder.feed(raw):
                            payload = upstream_json(event.data, "an event")
                            kind = payload.get("type")
                            if kind == "content_block_delta":
                                delta = payload.get("delta") or _NO_DELTA
                                delta_kind = delta.get("type")
                                if delta_kind == "text_delta":  # the hot path: one per token
                                    text = delta.get("text")
                                    if text:
                                        yield text
                                elif delta_kind == "thinking_delta":
                                    thinking = delta.get("thinking")
                                    if thinking and type(thinking) is str:
                                        yield Reasoning(thinking)
                                elif delta_kind == "signature_delta":
                                    signature = delta.get("signature")
                                    if signature and type(signature) is str:
                                        yield ReasoningSignature(signature)
                                elif delta_kind == "input_json_delta":
                                    call = calls.get(payload.get("index"))
                                    fragment = delta.get("partial_json")
                                    if call is not None and fragment:  # else: a server tool's
                                        if type(fragment) is not str:
                                            raise malformed("tool input that is not JSON text")
                                        call[1] = True
                                        yield ToolCallDelta(call[0], arguments=fragment)
                                # citations_delta: nothing a client reads
                            elif kind == "content_block_start":
                                block = payload.get("content_block") or _NO_DELTA
                                block_kind = block.get("type")
                                if block_kind == "tool_use":
                                    start = tool_use_start(block, len(calls))
                                    calls[payload.get("index")] = [
                                        start.index,
                                        bool(start.arguments),
                                    ]
                                    yield start
                                elif block_kind == "text" and block.get("text"):
                                    yield block["text"]
                                elif block_kind == "thinking" and block.get("thinking"):
                                    yield Reasoning(block["thinking"])
                            elif kind == "content_block_stop":
                                call = calls.get(payload.get("index"))
                                if call is not None and not call[1]:
                                    call[1] = True
                                    yield ToolCallDelta(call[0], arguments="{}")  # no input
                            elif kind == "message_start":
                                started = payload.get("message") or _NO_DELTA
                                model = started.get("model") or model
                                input_tokens = (started.get("usage") or _NO_DELTA).get(
                                    "input_tokens", 0
                                )
                            elif kind == "message_delta":
                                delta = payload.get("delta") or _NO_DELTA
                                stop = delta.get("stop_reason")
                                reason = STOP_REASONS.get(stop, stop or reason)
                                if stop == "stop_sequence":
                                    stop_sequence = delta.get("stop_sequence")
                                output_tokens = (payload.get("usage") or _NO_DELTA).get(
                                    "output_tokens", output_tokens
                                )
                            elif kind == "message_stop":
                                usage = Usage(input_tokens, output_tokens)
                                yield Finish(reason, model, usage, stop_sequence)
                                return
                            elif kind == "error":
                                _raise_error(payload)
                    except (AttributeError, TypeError):
                        # JSON that is not the shape of an event (a delta that is a string, ...).
                        raise malformed("an event that is not a Messages API event") from None
                raise incomplete()


def _raise_error(payload: Mapping[str, Any]) -> None:
    """An ``error`` event (or body) as the ``ProviderError`` it is (an overload: retryable)."""
    if payload.get("type") != "error":
        return
    error = payload.get("error")
    message = error.get("message", "unknown error") if isinstance(error, dict) else str(error)
    raise ProviderError("upstream_error", f"the upstream failed: {message}", retryable=True)


@hookimpl
def register_providers(register: Register) -> None:
    """Anthropic's Messages API (needs the anthropic extra)."""
    register("anthropic", AnthropicProvider, options=AnthropicProviderOptions,
             description="Claude models through the anthropic SDK (pip install 'streamserver[anthropic]')")  # fmt: skip
