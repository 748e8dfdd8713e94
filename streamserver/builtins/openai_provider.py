"""The ``openai`` provider: OpenAI, or any OpenAI-compatible server (vLLM, llama.cpp, Ollama, LiteLLM).

The official SDK's ``AsyncOpenAI`` does what it is good at: auth, ``base_url`` and timeouts. Retries
are the pipeline's, not the SDK's: the SDK can retry only until the response's headers arrive, and
an upstream that answers, then drops before its first token, must be retried too (with the same
budget, ``max_retries``). The stream's bytes are read raw and decoded by our SSE decoder: no SDK
model object per chunk on the hot path. Closing the iterator closes the upstream HTTP response at once.

Parts: text is a plain ``str``; ``delta.reasoning_content`` or ``delta.reasoning`` (whichever the
server uses) is ``Reasoning``; ``delta.refusal`` is relayed as text (it is what the model said);
each ``delta.tool_calls`` entry is a ``ToolCallDelta`` (``openai_parts.py``); a whole JSON
completion answering the streaming request is relayed as the same parts. The request goes out as it
came, in OpenAI's shapes: messages (content parts untouched, tool calls, tool results), tools,
``tool_choice``, ``parallel_tool_calls``, ``response_format``, the sampling parameters and
``max_tokens``; the configured ``temperature``, ``top_p`` and ``extra_body`` are defaults the
request's values override.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ..errors import ConfigError, ProviderError
from ..hookspecs import Register, hookimpl
from ..sse_decoder import SSEDecoder
from ..types import REQUEST_PARAMETERS, Delta, Finish, GenerationRequest, Message, Reasoning
from .openai_parts import ToolCalls, completion_parts, later_parts, usage_of
from .sdk_provider import SDKProvider, SDKProviderOptions, plain
from .upstream_errors import incomplete, malformed, upstream_json


@dataclass(frozen=True, slots=True)
class OpenAIProviderOptions(SDKProviderOptions):
    """``[providers.<name>]`` options for ``type = "openai"``."""

    model: str = "gpt-4o-mini"
    base_url: str | None = None
    """The server's ``/v1`` URL; unset = the SDK's default (OpenAI, or ``OPENAI_BASE_URL``)."""
    api_key_env: str = "OPENAI_API_KEY"
    """Environment variable holding the API key; "" for servers that need none."""
    top_p: float | None = None
    extra_body: dict[str, Any] = field(default_factory=dict)
    """Other body parameters sent with every request (server-specific sampling options)."""


class OpenAIProvider(SDKProvider):
    """Streams chat completions from one OpenAI-compatible upstream."""

    parameters = frozenset(REQUEST_PARAMETERS)
    """Every request parameter: the request goes out in OpenAI's shapes, as it came."""

    def __init__(self, options: OpenAIProviderOptions) -> None:
        # Imported here, not at module level: the SDK (with pydantic and httpx) costs ~25 MB and
        # ~0.2 s at start-up, paid only by servers that configure an openai provider.
        import openai

        super().__init__()
        self.sdk = openai
        chunk = openai.types.chat.ChatCompletionChunk
        self._post_as = (
            chunk,
            openai.AsyncStream[openai.types.chat.ChatCompletionChunk],
        )
        self.options = options
        self.max_retries = options.max_retries
        api_key = "not-needed"
        if options.api_key_env:
            api_key = os.environ.get(options.api_key_env, "")
            if not api_key:
                raise ConfigError(
                    "api_key_env",
                    f"the environment variable {options.api_key_env} to hold the API key "
                    '(or api_key_env = "" for a server that needs none)',
                )
        self.client = openai.AsyncOpenAI(
            api_key=api_key,
            base_url=options.base_url,
            timeout=openai.Timeout(options.timeout_s, connect=options.connect_timeout_s),
            max_retries=0,  # the pipeline retries (see the module's docstring)
            default_headers=options.headers or None,
            http_client=_http_client(openai, event_hooks={"response": [self._count_errors]}),
        )
        self._models = (options.model, *(m for m in options.models if m != options.model))
        self._defaults: dict[str, Any] = {
            k: v
            for k, v in (("temperature", options.temperature), ("top_p", options.top_p))
            if v is not None
        }

    async def _stream(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        body = self._body(request)
        with self.translated_errors():
            async with self.posted("/chat/completions", body, request) as response:
                if self.whole_answer(response):
                    completion = _parse((await response.aread()).decode("utf-8", "replace"))
                    for part in completion_parts(completion, request.model):
                        yield part
                    return
                reason, model, usage = "stop", request.model, None
                calls = ToolCalls()
                decoder = SSEDecoder()
                async for raw in response.aiter_bytes():
                    try:  # free unless raised (zero-cost exceptions)
                        for event in decoder.feed(raw):
                            if event.data == "[DONE]":
                                yield Finish(calls.finish_reason(reason), model, usage)
                                return
                            chunk = _parse(event.data)
                            for choice in chunk.get("choices") or ():
                                delta = choice.get("delta") or _NO_DELTA
                                # The hot path: a chunk of text alone, {"content": "..."}, costs
                                # one len() more than before structured parts existed.
                                content = delta.get("content")
                                if content and len(delta) == 1:
                                    yield content
                                elif delta:  # reasoning, calls, a refusal, or text with company
                                    # (DeepSeek's reasoning_content: null): delta_parts, inlined
                                    # for the two kinds that come once per token.
                                    reasoning = delta.get("reasoning_content") or delta.get(
                                        "reasoning"
                                    )
                                    if reasoning and type(reasoning) is str:
                                        yield Reasoning(reasoning)
                                    if content and type(content) is str:
                                        yield content
                                    if "tool_calls" in delta or "refusal" in delta:
                                        for part in later_parts(delta, calls):
                                            yield part
                                if choice.get("finish_reason"):
                                    reason = choice["finish_reason"]
                            if chunk.get("usage"):
                                usage = usage_of(chunk["usage"])
                            model = chunk.get("model") or model
                    except (AttributeError, TypeError):
                        # JSON that is not the shape of a chunk (a choice that is a string, ...).
                        raise malformed("a chunk that is not a chat completion chunk") from None
                raise incomplete()

    def _body(self, request: GenerationRequest) -> dict[str, Any]:
        """The upstream request: the configured defaults, then ``extra_body``, then what the
        request says (its values win), all in OpenAI's shapes as the request carries them."""
        body: dict[str, Any] = {
            "model": request.model,
            "messages": [_message(m) for m in request.messages],
            "stream": True,
            "stream_options": {"include_usage": True},
            **self._defaults,
            **self.options.extra_body,
        }
        if request.max_tokens is not None:
            body["max_tokens"] = request.max_tokens
        if request.tools:
            body["tools"] = plain(request.tools)
        if request.tool_choice is not None:
            body["tool_choice"] = plain(request.tool_choice)
        if request.parallel_tool_calls is not None:
            body["parallel_tool_calls"] = request.parallel_tool_calls
        if request.response_format is not None:
            body["response_format"] = plain(request.response_format)
        for name, value in request.sampling.items():
            body[name] = plain(value)
        return body


_NO_DELTA: Mapping[str, Any] = MappingProxyType({})


_ANTHROPIC_ONLY = frozenset({"thinking", "redacted_thinking"})
"""Content parts only Anthropic takes back (its signed thinking, kept by the Messages route)."""


def _message(message: Message) -> dict[str, Any]:
    """One message in OpenAI's shape: content parts untouched (but Anthropic's thinking blocks,
    left out), tool calls and results named."""
    content = message.content
    if not isinstance(content, str) and any(p.get("type") in _ANTHROPIC_ONLY for p in content):
        content = tuple(p for p in content if p.get("type") not in _ANTHROPIC_ONLY)
        if all(p.get("type") == "text" for p in content):  # text alone: a string, as it came
            content = "".join(str(p.get("text", "")) for p in content)
    out: dict[str, Any] = {
        "role": message.role,
        "content": content if isinstance(content, str) else [plain(p) for p in content],
    }
    if message.tool_calls:
        out["tool_calls"] = [call.openai() for call in message.tool_calls]
        if not content:
            out["content"] = None  # an assistant message of tool calls alone
    if message.tool_call_id is not None:
        out["tool_call_id"] = message.tool_call_id
    return out


def _http_client(openai: Any, **options: Any) -> Any:
    """The SDK's own aiohttp-based HTTP client where it ships one (openai 3.x), else its httpx one.

    httpx hands a response body over one HTTP chunk at a time, through several layers of
    iterators per chunk; an upstream that sends a chunk per token then costs ~25 us per token in
    those layers alone. aiohttp's C parser hands over everything that has arrived in one piece,
    and the SDK keeps doing auth, retries, timeouts and ``base_url`` on top of it.
    """
    try:
        return openai.DefaultAioHttpClient(**options)
    except (AttributeError, RuntimeError):  # an SDK without the aiohttp transport
        return openai.DefaultAsyncHttpxClient(**options)


def _parse(data: str) -> dict[str, Any]:
    chunk = upstream_json(data, "a chunk")
    if "error" in chunk:
        error = (
            chunk["error"] if isinstance(chunk["error"], dict) else {"message": str(chunk["error"])}
        )
        raise ProviderError(
            "upstream_error", f"the upstream failed: {error.get('message', 'unknown error')}"
        )
    return chunk


@hookimpl
def register_providers(register: Register) -> None:
    """OpenAI and OpenAI-compatible upstreams."""
    register("openai", OpenAIProvider, options=OpenAIProviderOptions,
             description="OpenAI or any OpenAI-compatible server, through the openai SDK")  # fmt: skip
