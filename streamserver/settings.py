"""The settings of ``config.toml``'s sections, as typed frozen dataclasses: the defaults, the bounds
(``Annotated`` with ``schema`` bounds) and what each key means. Loading and the checks that span
sections are in ``config.py``; plugins declare their own options classes the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, get_args

from .schema import ABOVE_ZERO, AT_LEAST_ONE, AT_LEAST_ZERO, Range

Override = Literal[
    "model", "provider", "max_tokens", "buffer", "format",
    "tools", "tool_choice", "parallel_tool_calls", "response_format",
    "temperature", "top_p", "stop", "seed", "presence_penalty", "frequency_penalty",
    "logit_bias", "user", "reasoning_effort",
]  # fmt: skip
"""Request fields a route may let a client set (``routes.<path>.allow``): the choices of the
pipeline (model, provider, ``max_tokens``, buffer, format) and every one of
``types.REQUEST_PARAMETERS``."""

STREAM_ALLOW: tuple[Override, ...] = get_args(Override)
"""What the shipped ``/v1/stream`` and ``/ws/stream`` let a client choose: everything."""
OPENAI_ALLOW: tuple[Override, ...] = tuple(
    name for name in STREAM_ALLOW if name not in ("provider", "buffer", "format")
)
"""The default ``allow`` of a ``transport = "openai"`` route: what the chat completions API
takes (its ``model`` is required, so an openai route must allow it)."""
RESPONSES_ALLOW: tuple[Override, ...] = (
    "model", "max_tokens", "tools", "tool_choice", "parallel_tool_calls", "response_format",
    "temperature", "top_p", "user", "reasoning_effort",
)  # fmt: skip
"""The default ``allow`` of a ``transport = "responses"`` route: what a Responses request can
say (``max_output_tokens``, ``text.format`` and ``reasoning.effort`` among them, by their chat
names); its ``model`` is required too."""
ANTHROPIC_ALLOW: tuple[Override, ...] = ("model", "max_tokens", "tools", "tool_choice",
    "parallel_tool_calls", "temperature", "top_p", "stop", "user", "reasoning_effort")  # fmt: skip
"""The default ``allow`` of a ``transport = "anthropic"`` route: what the Messages API can say
(``stop_sequences`` is ``stop``, ``metadata.user_id`` ``user``, ``thinking``
``reasoning_effort``, ``disable_parallel_tool_use`` ``parallel_tool_calls``)."""


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """``[server]``: where to listen and how SSE connections behave."""

    host: str = "127.0.0.1"
    port: Annotated[int, Range(0, 65535)] = 8000
    plugins_dir: str = "plugins"
    ping_interval_s: Annotated[float, ABOVE_ZERO] = 15.0
    """Keep-alive comment every this many seconds, from the moment headers are sent."""
    retry_ms: Annotated[int, AT_LEAST_ZERO] = 2000
    """The SSE ``retry:`` hint sent with the first event."""
    send_timeout_s: Annotated[float, ABOVE_ZERO] = 30.0
    """A reader whose writes make no progress this long is treated as gone."""
    dead_peer_timeout_s: Annotated[float, AT_LEAST_ZERO] = 30.0
    """A client that vanished without closing (no FIN, no RST) is dropped once a ping has gone
    unacknowledged this long (TCP_USER_TIMEOUT and keepalive; 0 = the kernel's defaults)."""
    shutdown_grace_s: Annotated[float, AT_LEAST_ZERO] = 10.0
    ws_heartbeat_s: Annotated[float, AT_LEAST_ZERO] = 20.0
    """WebSocket ping interval; a peer that does not answer is closed (0 = off)."""
    ws_max_message_bytes: Annotated[int, AT_LEAST_ONE] = 65_536
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["text", "json"] = "text"
    """``serve``'s log lines: plain text, or one JSON object a line (for a log collector)."""


@dataclass(frozen=True, slots=True)
class PluginsSettings:
    """``[plugins]``: extra plugin modules, and plugins to switch off by name."""

    modules: tuple[str, ...] = ()
    disabled: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RouteSettings:
    """``[routes."<path>"]``: one streaming endpoint and the pipeline parts it uses."""

    transport: Literal["sse", "ws", "openai", "responses", "anthropic", "ai-sdk"] = "sse"
    """``openai`` serves the OpenAI chat completions API (its formatter is always ``openai``),
    ``responses`` the OpenAI Responses API (its formatter is always ``responses``), ``anthropic``
    the Anthropic Messages API (its formatter is always ``anthropic``), ``ai-sdk`` what the AI
    SDK's ``useChat`` sends, with its resume (its formatter is always ``ai-sdk``)."""
    formatter: str = "events"
    buffer: str = "raw"
    provider: str | None = None
    """Provider instance for requests that name no model; default: the first configured."""
    model: str | None = None
    """Default model; default: the provider's first model."""
    methods: tuple[Literal["GET", "POST"], ...] = ("GET",)
    allow: tuple[Override, ...] = ()
    """Request fields that may override the route's choices (an openai route: ``OPENAI_ALLOW``,
    a responses route: ``RESPONSES_ALLOW``, an anthropic route: ``ANTHROPIC_ALLOW``)."""
    pin: dict[str, Any] = field(default_factory=dict)
    """Request parameters with a fixed value (``temperature = 0.2``): always sent, and a request
    that asks for another value is refused (``parameter_pinned``). ``tool_choice`` and
    ``parallel_tool_calls`` are sent only with a request that has tools."""
    max_tokens: Annotated[int, AT_LEAST_ONE] | None = None
    """Default ``max_tokens`` for requests that give none."""
    conversation: bool = False
    """A WebSocket chat route: the path has ``{conversation_id}`` and history is kept in the store."""
    busy: Literal["reject", "replace"] = "reject"
    """WebSocket: a new prompt while a stream runs is refused, or cancels and replaces it."""


@dataclass(frozen=True, slots=True)
class LimitsSettings:
    """``[limits]``: what one request may ask for, and how far a reader may fall behind."""

    store: str = "memory"
    """Where the counts live: ``memory`` (this process) or ``redis`` (every instance)."""
    max_body_bytes: Annotated[int, AT_LEAST_ONE] = 1_048_576
    max_prompt_chars: Annotated[int, AT_LEAST_ONE] = 100_000
    max_tokens: Annotated[int, AT_LEAST_ONE] = 8192
    """Cap on ``max_tokens``; larger requests are refused with 400."""
    high_water_events: Annotated[int, AT_LEAST_ONE] = 512
    """Unread events at which the producer waits for its slowest reader (backpressure)."""
    max_concurrent_streams: Annotated[int, AT_LEAST_ONE] = 10_000
    """Streams generating at once, all clients together (429 beyond)."""
    max_concurrent_streams_per_key: Annotated[int, AT_LEAST_ONE] = 100
    """Streams generating at once for one API key (or one client address without auth)."""
    requests_per_minute: Annotated[float, AT_LEAST_ZERO] = 600.0
    """Per key (or client address): a token bucket; 429 with Retry-After beyond. 0 = no limit."""
    max_stream_s: Annotated[float, AT_LEAST_ZERO] = 0.0
    """Longest a stream may run; it then ends with an error event ``limit_exceeded``. 0 = no limit."""
    upstream_idle_s: Annotated[float, AT_LEAST_ZERO] = 0.0
    """A provider silent this long ends its stream with ``upstream_idle``. 0 = no limit."""


@dataclass(frozen=True, slots=True)
class AuthSettings:
    """``[auth]``: who may use the server."""

    mode: Literal["none", "api_key"] | None = None
    """Unset: no auth, and the server refuses to listen beyond loopback. Write "none" to allow it."""
    api_keys_env: str = "STREAMSERVER_API_KEYS"
    """Environment variable with the keys: ``id1:key1,id2:key2`` (an id names a key in logs and limits)."""
    ticket_ttl_s: Annotated[float, ABOVE_ZERO] = 300.0
    """Lifetime of a ticket from ``POST /v1/tickets`` (EventSource reconnects reuse it)."""
    ticket_secret_env: str = ""
    """Environment variable with the ticket signing secret; unset: a random one per process."""
    public_paths: tuple[str, ...] = ("/health",)
    """Paths that need no key (the demo page and its files are always public)."""


@dataclass(frozen=True, slots=True)
class CorsSettings:
    """``[cors]``: which browser origins may call the API (an allowlist; empty = same origin only)."""

    origins: tuple[str, ...] = ()
    allow_credentials: bool = False
    max_age_s: Annotated[int, AT_LEAST_ZERO] = 600
    allow_headers: tuple[str, ...] = ()
    """Request headers a page may send beyond the ones always allowed (the API's own and what the
    OpenAI, Anthropic and AI SDK clients send: ``guard.CORS_REQUEST_HEADERS``); ``["*"]``: any."""


@dataclass(frozen=True, slots=True)
class ResumeSettings:
    """``[resume]``: how long a stream outlives its readers, and how long its log is kept."""

    store: str = "memory"
    """Where live streams' logs are shared for resume: ``memory`` (this process) or ``redis``
    (any instance serves a resume, a cancel, an idempotent retry)."""
    grace_s: Annotated[float, AT_LEAST_ZERO] = 0.0
    retain_s: Annotated[float, AT_LEAST_ZERO] = 60.0
    max_streams: Annotated[int, AT_LEAST_ONE] = 10_000
    """Live and retained streams kept at most; the oldest finished ones are evicted first."""
    max_bytes_per_stream: Annotated[int, AT_LEAST_ONE] = 4_194_304
    """A stream's retained events beyond this are dropped, oldest first (resume before them: 410)."""


@dataclass(frozen=True, slots=True)
class RedisSettings:
    """``[redis]``: the Redis (or Valkey) server the ``redis`` stores share."""

    url: str = ""
    """``redis://[user:password@]host:port/db`` (``rediss://`` for TLS); or name it in ``url_env``."""
    url_env: str = ""
    """Environment variable holding the URL (keeps a password out of the file); wins over ``url``."""
    key_prefix: str = "streamserver"
    """Every key starts with this (several deployments may share one server)."""
    timeout_s: Annotated[float, ABOVE_ZERO] = 2.0
    """The most any one Redis call may take; beyond it the call fails as if Redis were down."""
    max_connections: Annotated[int, AT_LEAST_ONE] = 64
    lease_s: Annotated[float, Range(1.0, 60.0)] = 10.0
    """An instance's lease on its streams, renewed every third of it: readers elsewhere learn that
    the owner died (``stream_lost``) at most this long plus a poll (2 s) after it did."""


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    """``[metrics]``: which metrics sinks are on."""

    sinks: tuple[str, ...] = ("memory",)


@dataclass(frozen=True, slots=True)
class ConversationsSettings:
    """``[conversations]``: the store, and how much history a provider is sent."""

    store: str = "sqlite"
    max_messages: Annotated[int, AT_LEAST_ONE] = 50
    """Most recent messages sent to the provider (older ones stay stored)."""
    max_chars: Annotated[int, AT_LEAST_ONE] = 48_000
    """Most characters of history sent to the provider."""


@dataclass(frozen=True, slots=True)
class BufferTiming:
    """Options the core applies to every buffer: the flush timer and the size cap."""

    max_delay_ms: Annotated[float, AT_LEAST_ZERO] = 250.0
    """Flush held text once its oldest character has waited this long (0 = never)."""
    max_chars: Annotated[int, AT_LEAST_ZERO] = 4096
    """Flush held text once it grows past this many characters (0 = never)."""


DEFAULT_ROUTES: dict[str, dict[str, Any]] = {
    "/stream": {"formatter": "simple", "allow": ["model"]},
    "/stream/v2": {"formatter": "events", "allow": ["model"]},
    "/stream/safe": {"formatter": "events", "allow": ["model"]},
    "/stream/progress": {"formatter": "progress", "allow": ["model"]},
    "/v1/stream": {
        "formatter": "production",
        "methods": ["GET", "POST"],
        "allow": list(STREAM_ALLOW),
    },
    "/v1/chat/completions": {"transport": "openai"},
    "/v1/responses": {"transport": "responses"},
    "/v1/messages": {"transport": "anthropic"},
    "/ws/stream": {"transport": "ws", "formatter": "simple", "allow": list(STREAM_ALLOW)},
    "/ws/chat/{conversation_id}": {
        "transport": "ws",
        "conversation": True,
        "allow": ["model", "tools", "tool_choice", "parallel_tool_calls"],
    },
}
"""The contract's stream routes, used when the file has no ``[routes]`` table."""
