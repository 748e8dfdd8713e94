"""``config.toml``: read once, validated into typed objects, or refused with a precise message.

Every section is a frozen dataclass; plugins declare theirs when they register. A mistake names
the file, the dotted key, what was expected and, for names, the choices (``ConfigError``).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from . import schema
from .errors import ConfigError
from .plugins import Kind, PluginRegistry, Registration
from .schema import ABOVE_ZERO, AT_LEAST_ONE, AT_LEAST_ZERO, Range

log = logging.getLogger("streamserver.config")

Override = Literal["model", "provider", "max_tokens", "buffer", "format"]


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

    transport: Literal["sse", "ws", "openai"] = "sse"
    """``openai`` serves the OpenAI chat completions API (its formatter is always ``openai``)."""
    formatter: str = "events"
    buffer: str = "raw"
    provider: str | None = None
    """Provider instance for requests that name no model; default: the first configured."""
    model: str | None = None
    """Default model; default: the provider's first model."""
    methods: tuple[Literal["GET", "POST"], ...] = ("GET",)
    allow: tuple[Override, ...] = ()
    """Request fields that may override the route's choices."""
    max_tokens: Annotated[int, AT_LEAST_ONE] | None = None
    """Default ``max_tokens`` for requests that give none."""
    conversation: bool = False
    """A WebSocket chat route: the path has ``{conversation_id}`` and history is kept in the store."""
    busy: Literal["reject", "replace"] = "reject"
    """WebSocket: a new prompt while a stream runs is refused, or cancels and replaces it."""


@dataclass(frozen=True, slots=True)
class LimitsSettings:
    """``[limits]``: what one request may ask for, and how far a reader may fall behind."""

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


@dataclass(frozen=True, slots=True)
class ResumeSettings:
    """``[resume]``: how long a stream outlives its readers, and how long its log is kept."""

    grace_s: Annotated[float, AT_LEAST_ZERO] = 0.0
    retain_s: Annotated[float, AT_LEAST_ZERO] = 60.0
    max_streams: Annotated[int, AT_LEAST_ONE] = 10_000
    """Live and retained streams kept at most; the oldest finished ones are evicted first."""
    max_bytes_per_stream: Annotated[int, AT_LEAST_ONE] = 4_194_304
    """A stream's retained events beyond this are dropped, oldest first (resume before them: 410)."""


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


@dataclass(frozen=True, slots=True)
class Part:
    """A named, configured instance of a registered part (``[buffers.word]``)."""

    name: str
    registration: Registration
    options: Any
    timing: BufferTiming = field(default_factory=BufferTiming)


@dataclass(frozen=True, slots=True)
class Config:
    """The whole validated configuration, with the plugins it was validated against."""

    file: str | None
    server: ServerSettings
    plugins: PluginsSettings
    limits: LimitsSettings
    resume: ResumeSettings
    metrics: MetricsSettings
    routes: Mapping[str, RouteSettings]
    providers: Mapping[str, Part]
    buffers: Mapping[str, Part]
    formatters: Mapping[str, Part]
    sinks: tuple[Part, ...]
    conversations: ConversationsSettings
    conversation_store: Part
    auth: AuthSettings
    cors: CorsSettings
    registry: PluginRegistry


DEFAULT_ROUTES: dict[str, dict[str, Any]] = {
    "/stream": {"formatter": "simple", "allow": ["model"]},
    "/stream/v2": {"formatter": "events", "allow": ["model"]},
    "/stream/safe": {"formatter": "events", "allow": ["model"]},
    "/stream/progress": {"formatter": "progress", "allow": ["model"]},
    "/v1/stream": {
        "formatter": "production",
        "methods": ["GET", "POST"],
        "allow": ["model", "provider", "max_tokens", "buffer", "format"],
    },
    "/v1/chat/completions": {"transport": "openai"},
    "/ws/stream": {
        "transport": "ws",
        "formatter": "simple",
        "allow": ["model", "provider", "max_tokens", "buffer", "format"],
    },
    "/ws/chat/{conversation_id}": {"transport": "ws", "conversation": True, "allow": ["model"]},
}
"""The contract's stream routes, used when the file has no ``[routes]`` table."""

_SECTIONS = {
    "server": ServerSettings,
    "plugins": PluginsSettings,
    "limits": LimitsSettings,
    "resume": ResumeSettings,
    "metrics": MetricsSettings,
    "conversations": ConversationsSettings,
    "auth": AuthSettings,
    "cors": CorsSettings,
}
_PART_SECTIONS: dict[str, Kind] = {
    "providers": "providers",
    "buffers": "buffers",
    "formatters": "formatters",
}
_ALL_SECTIONS = {*_SECTIONS, *_PART_SECTIONS, "routes"}


def load_config(
    source: str | os.PathLike[str] | Mapping[str, Any] | Config,
    *,
    registry: PluginRegistry | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> Config:
    """Read and validate a configuration: a TOML file's path, an already-parsed dict, or a Config.

    Relative paths inside a file (``server.plugins_dir``) are relative to that file. Pass a
    ``registry`` to validate against plugins loaded by hand (tests, embedding), and ``overrides``
    for keys set elsewhere (``serve --host``: ``{"server": {"host": ...}}``), validated with the
    file as if it held them. ``serve`` and ``check-config`` both run this one validation.
    """
    if isinstance(source, Config):
        return source
    if isinstance(source, Mapping):
        file, base, raw = None, Path.cwd(), source
    else:
        path = Path(source)
        file, base = str(path), path.resolve().parent
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError("", "an existing config file", file=file) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(
                "", f"a readable UTF-8 config file ({exc.__class__.__name__}: {exc})", file=file
            ) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("", f"valid TOML ({exc})", file=file) from None
    if overrides:
        raw = _overridden(raw, overrides)
    try:
        return _validate(raw, file, base, registry)
    except ConfigError as exc:
        raise exc.in_file(file) from None


def _overridden(
    raw: Mapping[str, Any], overrides: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    merged = dict(raw)
    for section, values in overrides.items():
        table = raw.get(section, {})
        # A section that is not a table is left for validation to refuse.
        merged[section] = {**table, **values} if isinstance(table, Mapping) else table
    return merged


def refuse_open_host(host: str, mode: str | None) -> None:
    """Beyond loopback, the operator must have chosen: keys, or explicitly none."""
    if _is_loopback(host) or mode is not None:
        return
    raise ConfigError(
        "auth.mode",
        f"a choice before listening on server.host = {host}, which other machines can reach: "
        'mode = "api_key" (keys from the environment variable in auth.api_keys_env) or, behind a proxy '
        'that authenticates, mode = "none"',
    )


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, None)
        except OSError:
            return False
        return all(ipaddress.ip_address(info[4][0]).is_loopback for info in infos)


def _validate(
    raw: Mapping[str, Any], file: str | None, base: Path, registry: PluginRegistry | None
) -> Config:
    for name in raw:
        if name not in _ALL_SECTIONS:
            raise ConfigError(name, "a known section", choices=_ALL_SECTIONS)
    # [metrics] and [conversations] hold their own keys plus one sub-table of options per part
    # ([metrics.<sink>], [conversations.<store>]).
    tables = dict(raw)
    subtables: dict[str, dict[str, Any]] = {}
    for name in ("metrics", "conversations"):
        table = raw.get(name, {})
        if not isinstance(table, Mapping):
            raise ConfigError(name, "a table", got=table)
        subtables[name] = {k: v for k, v in table.items() if isinstance(v, Mapping)}
        tables[name] = {k: v for k, v in table.items() if k not in subtables[name]}
    sink_sections = subtables["metrics"]
    sections: dict[str, Any] = {
        name: schema.build(cls, tables.get(name, {}), name) for name, cls in _SECTIONS.items()
    }
    server: ServerSettings = sections["server"]
    cors: CorsSettings = sections["cors"]
    if cors.allow_credentials and "*" in cors.origins:
        raise ConfigError(
            "cors.origins", 'a list of origins without "*" when allow_credentials = true'
        )
    refuse_open_host(server.host, sections["auth"].mode)
    plugin_settings: PluginsSettings = sections["plugins"]
    metrics: MetricsSettings = sections["metrics"]

    plugins_dir = base / server.plugins_dir
    if "plugins_dir" in raw.get("server", {}) and not plugins_dir.is_dir():
        # Not an error (the default folder is often absent), but a folder named on purpose and
        # missing is most likely a typo: its plugins would silently not load.
        log.warning(
            "%sserver.plugins_dir: %s is not a folder; no plugins are loaded from it",
            f"{file}: " if file else "",
            plugins_dir,
        )
    if registry is None:
        registry = PluginRegistry()
        registry.load(
            plugins_dir=plugins_dir,
            modules=plugin_settings.modules,
            disabled=plugin_settings.disabled,
        )

    raw_providers = raw.get("providers", {"simulated": {}})
    parts = {
        section: _parts(
            registry,
            kind,
            raw.get(section, {}) if section != "providers" else raw_providers,
            section,
        )
        for section, kind in _PART_SECTIONS.items()
    }
    if not parts["providers"]:
        raise ConfigError(
            "providers", "at least one provider section", choices=registry.names("providers")
        )

    for name in sink_sections:
        if name not in metrics.sinks:
            raise ConfigError(
                f"metrics.{name}",
                "options for a sink listed in metrics.sinks",
                choices=metrics.sinks,
            )
    sinks = []
    for i, name in enumerate(metrics.sinks):
        if name not in registry.parts["metrics_sinks"]:
            raise ConfigError(
                f"metrics.sinks[{i}]",
                "a metrics sink name",
                got=name,
                choices=registry.names("metrics_sinks"),
            )
        section = sink_sections.get(name, {})
        registration = registry.get("metrics_sinks", name)
        sinks.append(
            Part(name, registration, schema.build(registration.options, section, f"metrics.{name}"))
        )

    conversations: ConversationsSettings = sections["conversations"]
    if conversations.store not in registry.parts["conversation_stores"]:
        raise ConfigError("conversations.store", "a conversation store name", got=conversations.store,
                          choices=registry.names("conversation_stores"))  # fmt: skip
    for name in subtables["conversations"]:
        if name != conversations.store:
            raise ConfigError(f"conversations.{name}", "options for the store named in conversations.store",
                              choices=[conversations.store])  # fmt: skip
    store_registration = registry.get("conversation_stores", conversations.store)
    store = Part(
        conversations.store,
        store_registration,
        schema.build(store_registration.options, subtables["conversations"].get(conversations.store, {}),
                      f"conversations.{conversations.store}"),
    )  # fmt: skip

    routes = _routes(raw.get("routes", DEFAULT_ROUTES), parts)
    return Config(
        file=file,
        server=server,
        plugins=plugin_settings,
        limits=sections["limits"],
        resume=sections["resume"],
        metrics=metrics,
        routes=routes,
        providers=parts["providers"],
        buffers=parts["buffers"],
        formatters=parts["formatters"],
        sinks=tuple(sinks),
        conversations=conversations,
        conversation_store=store,
        auth=sections["auth"],
        cors=sections["cors"],
        registry=registry,
    )


def _parts(registry: PluginRegistry, kind: Kind, table: object, section: str) -> dict[str, Part]:
    """Instances of one kind: every configured section, plus (except providers) every registered
    name with its default options."""
    if not isinstance(table, Mapping):
        raise ConfigError(section, "a table of named sections", got=table)
    parts: dict[str, Part] = {}
    if kind != "providers":
        for name, registration in registry.parts[kind].items():
            try:
                defaults = registration.options()
            except TypeError:  # it has required options: usable once its section sets them
                continue
            parts[name] = Part(name, registration, defaults)
    for name, body in table.items():
        key = schema.join_key(section, name)
        if not isinstance(body, Mapping):
            raise ConfigError(key, "a table", got=body)
        body = dict(body)
        type_name = body.pop("type", name)
        if not isinstance(type_name, str):
            raise ConfigError(f"{key}.type", f"a registered {kind[:-1]} type (a string)", got=type_name,
                              choices=registry.names(kind))  # fmt: skip
        if type_name not in registry.parts[kind]:
            expected = (
                f"a registered {kind[:-1]} type"
                if "type" in table[name]
                else f"the name of a registered {kind[:-1]} (or a `type` key)"
            )
            raise ConfigError(
                f"{key}.type" if "type" in table[name] else key,
                expected,
                got=type_name,
                choices=registry.names(kind),
            )
        registration = registry.get(kind, type_name)
        timing = BufferTiming()
        if kind == "buffers":
            timing_keys = {k: body.pop(k) for k in ("max_delay_ms", "max_chars") if k in body}
            timing = schema.build(BufferTiming, timing_keys, key)
        parts[name] = Part(
            name, registration, schema.build(registration.options, body, key), timing
        )
    return parts


def _routes(table: object, parts: Mapping[str, Mapping[str, Part]]) -> dict[str, RouteSettings]:
    if not isinstance(table, Mapping):
        raise ConfigError(
            "routes", 'a table of routes keyed by path, like [routes."/stream"]', got=table
        )
    routes: dict[str, RouteSettings] = {}
    for path, body in table.items():
        key = schema.join_key("routes", path)
        if not path.startswith("/"):
            raise ConfigError(key, "a path starting with /", got=path)
        if isinstance(body, Mapping) and body.get("transport") == "openai":
            body = {"formatter": "openai", "methods": ["POST"], **body}
        if isinstance(body, Mapping) and body.get("conversation"):
            body = {"formatter": "chat", **body}
        route = schema.build(RouteSettings, body, key)
        if route.transport == "openai" and (
            route.formatter != "openai" or route.methods != ("POST",)
        ):
            raise ConfigError(
                key,
                'formatter = "openai" and methods = ["POST"] for an openai route (the defaults)',
            )
        for field_name, section in (
            ("formatter", "formatters"),
            ("buffer", "buffers"),
            ("provider", "providers"),
        ):
            value = getattr(route, field_name)
            if value is not None and value not in parts[section]:
                raise ConfigError(
                    f"{key}.{field_name}",
                    f"a configured {section[:-1]}",
                    got=value,
                    choices=parts[section],
                )
        if route.conversation and (route.transport != "ws" or "{conversation_id}" not in path):
            raise ConfigError(
                key, 'transport = "ws" and a path with {conversation_id} for a conversation route'
            )
        if route.conversation and route.formatter != "chat":
            raise ConfigError(
                f"{key}.formatter",
                '"chat" on a conversation route (the default)',
                got=route.formatter,
            )
        if route.transport == "ws" and route.methods != ("GET",):
            raise ConfigError(
                f"{key}.methods", 'only ["GET"] for a WebSocket route', got=list(route.methods)
            )
        routes[path] = route
    return routes
