"""``config.toml``: read once, validated into typed objects, or refused with a precise message.

Every section is a frozen dataclass; plugins declare theirs when they register. A mistake names
the file, the dotted key, what was expected and, for names, the choices (``ConfigError``).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import schema
from .errors import ConfigError
from .plugins import Kind, PluginRegistry, Registration
from .route_config import build_routes
from .settings import (
    DEFAULT_ROUTES,
    AuthSettings,
    BufferTiming,
    ConversationsSettings,
    CorsSettings,
    LimitsSettings,
    MetricsSettings,
    PluginsSettings,
    RedisSettings,
    ResumeSettings,
    RouteSettings,
    ServerSettings,
)

log = logging.getLogger("streamserver.config")


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
    stream_store: Part
    """``[resume] store``: where live streams' logs are shared (``memory``: not beyond this process)."""
    limit_store: Part
    """``[limits] store``: where the rate and concurrency counts live."""
    redis: RedisSettings
    auth: AuthSettings
    cors: CorsSettings
    registry: PluginRegistry


_SECTIONS = {
    "server": ServerSettings,
    "plugins": PluginsSettings,
    "limits": LimitsSettings,
    "resume": ResumeSettings,
    "metrics": MetricsSettings,
    "conversations": ConversationsSettings,
    "auth": AuthSettings,
    "cors": CorsSettings,
    "redis": RedisSettings,
}
"""The settings sections, each validated into its dataclass."""


@dataclass(frozen=True, slots=True)
class PartKind:
    """How one kind of part is configured: the one table every kind of part goes through.

    A *named* kind has a section of instances, ``[buffers.<name>]``, each a registered type (its
    name, or a ``type`` key) with that type's options. A *chosen* kind is picked by a key of a
    settings section (``metrics.sinks``, ``conversations.store``), and each chosen part's options
    sit in a sub-table of that section (``[metrics.<sink>]``).
    """

    kind: Kind
    section: str
    choice: str | None = None
    """Chosen kinds: the settings key that names the parts (a name, or a list of names)."""
    implied: bool = False
    """Named kinds: every registered name is also an instance with its default options."""
    default: Mapping[str, Any] | None = None
    """Named kinds: the instances when the file has no such section."""


PART_KINDS = (
    PartKind("providers", "providers", default={"simulated": {}}),
    PartKind("buffers", "buffers", implied=True),
    PartKind("formatters", "formatters", implied=True),
    PartKind("metrics_sinks", "metrics", choice="sinks"),
    PartKind("conversation_stores", "conversations", choice="store"),
    PartKind("stream_stores", "resume", choice="store"),
    PartKind("limit_stores", "limits", choice="store"),
)
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
"""An HTTP field name (RFC 9110's token)."""
_NAMED_SECTIONS = {k.section for k in PART_KINDS if k.choice is None}
_ALL_SECTIONS = {*_SECTIONS, *_NAMED_SECTIONS, "routes"}


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
    # A section that chooses parts holds its own keys plus one sub-table of options per part.
    tables = dict(raw)
    subtables: dict[str, dict[str, Any]] = {}
    for kind in PART_KINDS:
        if kind.choice is None:
            continue
        table = raw.get(kind.section, {})
        if not isinstance(table, Mapping):
            raise ConfigError(kind.section, "a table", got=table)
        subtables[kind.section] = {k: v for k, v in table.items() if isinstance(v, Mapping)}
        tables[kind.section] = {k: v for k, v in table.items() if not isinstance(v, Mapping)}
    sections: dict[str, Any] = {
        name: schema.build(cls, tables.get(name, {}), name) for name, cls in _SECTIONS.items()
    }
    server: ServerSettings = sections["server"]
    cors: CorsSettings = sections["cors"]
    if cors.allow_credentials and "*" in cors.origins:
        raise ConfigError(
            "cors.origins", 'a list of origins without "*" when allow_credentials = true'
        )
    odd = [name for name in cors.allow_headers if name != "*" and not _HEADER_NAME.fullmatch(name)]
    if odd:
        raise ConfigError("cors.allow_headers", f'header names or "*", not {odd[0]!r}')
    refuse_open_host(server.host, sections["auth"].mode)
    plugin_settings: PluginsSettings = sections["plugins"]

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

    parts: dict[Kind, Any] = {}
    for kind in PART_KINDS:
        if kind.choice is None:
            table = raw.get(kind.section, kind.default or {})
            parts[kind.kind] = _named_parts(registry, kind, table)
        else:
            settings = sections[kind.section]
            parts[kind.kind] = _chosen_parts(
                registry, kind, getattr(settings, kind.choice), subtables[kind.section]
            )
    if not parts["providers"]:
        raise ConfigError(
            "providers", "at least one provider section", choices=registry.names("providers")
        )

    redis: RedisSettings = sections["redis"]
    _check_redis(redis, sections)
    routes = build_routes(raw.get("routes", DEFAULT_ROUTES), parts)
    return Config(
        file=file,
        server=server,
        plugins=plugin_settings,
        limits=sections["limits"],
        resume=sections["resume"],
        metrics=sections["metrics"],
        routes=routes,
        providers=parts["providers"],
        buffers=parts["buffers"],
        formatters=parts["formatters"],
        sinks=parts["metrics_sinks"],
        conversations=sections["conversations"],
        conversation_store=parts["conversation_stores"][0],
        stream_store=parts["stream_stores"][0],
        limit_store=parts["limit_stores"][0],
        redis=redis,
        auth=sections["auth"],
        cors=sections["cors"],
        registry=registry,
    )


REDIS_STORES = (
    ("resume", "store"),
    ("conversations", "store"),
    ("limits", "store"),
)
"""The keys that may name the ``redis`` store (each needs ``[redis]``)."""


def _check_redis(redis: RedisSettings, sections: Mapping[str, Any]) -> None:
    """A ``redis`` store needs a server to talk to: ``[redis] url`` or ``url_env``."""
    users = [f"{s}.{k}" for s, k in REDIS_STORES if getattr(sections[s], k) == "redis"]
    if users and not (redis.url or redis.url_env):
        raise ConfigError(
            "redis.url",
            f"a redis:// URL (or redis.url_env naming a variable that holds one): "
            f'{", ".join(users)} = "redis"',
        )
    if redis.url and not redis.url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(
            "redis.url", "a redis://, rediss:// or unix:// URL", got=_safe_url(redis.url)
        )


def _safe_url(url: str) -> str:
    """``url`` with any password replaced, for a message."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not at:
        return url
    user = userinfo.partition(":")[0]
    return f"{scheme}{sep}{user}:***@{host}" if ":" in userinfo else f"{scheme}{sep}***@{host}"


def _chosen_parts(
    registry: PluginRegistry,
    kind: PartKind,
    chosen: str | tuple[str, ...],
    options: Mapping[str, Any],
) -> tuple[Part, ...]:
    """The parts a settings key names, each with the options of its sub-table."""
    key = f"{kind.section}.{kind.choice}"
    names = (chosen,) if isinstance(chosen, str) else chosen
    for name in options:
        if name not in names:
            raise ConfigError(
                f"{kind.section}.{name}", f"options for a part named in {key}", choices=names
            )
    parts = []
    for i, name in enumerate(names):
        if name not in registry.parts[kind.kind]:
            raise ConfigError(
                key if isinstance(chosen, str) else f"{key}[{i}]",
                f"a {kind.kind[:-1].replace('_', ' ')} name",
                got=name,
                choices=registry.names(kind.kind),
            )
        registration = registry.get(kind.kind, name)
        section = f"{kind.section}.{name}"
        parts.append(
            Part(
                name,
                registration,
                schema.build(registration.options, options.get(name, {}), section),
            )
        )
    return tuple(parts)


def _named_parts(registry: PluginRegistry, part_kind: PartKind, table: object) -> dict[str, Part]:
    """Instances of one named kind: every configured section, plus (for implied kinds) every
    registered name with its default options."""
    kind, section = part_kind.kind, part_kind.section
    if not isinstance(table, Mapping):
        raise ConfigError(section, "a table of named sections", got=table)
    parts: dict[str, Part] = {}
    if part_kind.implied:
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
