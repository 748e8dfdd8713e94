"""Find and load plugins, and collect the parts they register.

Plugins come from four places, in this order: the built-ins (``DEFAULT_PLUGINS``, registered through
the same hooks as everyone else), installed packages (entry-point group ``streamserver``), ``.py``
files in the plugins directory, and modules named in ``plugins.modules``. Each registry owns its own
``pluggy.PluginManager``: two apps in one process never share plugins.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import importlib.util
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from types import ModuleType
from typing import Any, Literal, TypeAlias, get_args

import pluggy

from . import hookspecs
from .errors import ConfigError

DEFAULT_PLUGINS = (
    "streamserver.builtins.simulated",
    "streamserver.builtins.openai_provider",
    "streamserver.builtins.anthropic_provider",
    "streamserver.builtins.buffers",
    "streamserver.builtins.formatters",
    "streamserver.builtins.object_formatter",
    "streamserver.builtins.ecosystem_formatters",
    "streamserver.builtins.anthropic_formatter",
    "streamserver.builtins.responses_formatter",
    "streamserver.builtins.sinks",
    "streamserver.builtins.prometheus_sink",
    "streamserver.builtins.otel_sink",
    "streamserver.builtins.sqlite_conversations",
    "streamserver.builtins.redis_conversations",
    "streamserver.builtins.memory_stores",
    "streamserver.builtins.redis_streams",
    "streamserver.builtins.redis_limits",
)
ENTRY_POINT_GROUP = "streamserver"

Kind: TypeAlias = Literal[
    "providers",
    "buffers",
    "formatters",
    "metrics_sinks",
    "conversation_stores",
    "stream_stores",
    "limit_stores",
]
KINDS: tuple[Kind, ...] = get_args(Kind)


@dataclasses.dataclass(frozen=True, slots=True)
class NoOptions:
    """The options class of a part that takes none: its config section must be empty."""


@dataclasses.dataclass(frozen=True, slots=True)
class Registration:
    """One named factory a plugin registered (see ``hookspecs.Register``)."""

    kind: str
    name: str
    factory: Callable[..., Any]
    options: type
    plugin: str
    description: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class PluginSource:
    """Where a loaded plugin came from, for messages and ``check-config``."""

    name: str
    origin: str


class PluginRegistry:
    """The plugins of one app and the named parts they registered, by kind."""

    def __init__(self) -> None:
        self.manager = pluggy.PluginManager("streamserver")
        self.manager.add_hookspecs(hookspecs)
        self.sources: dict[str, PluginSource] = {}
        self.parts: dict[Kind, dict[str, Registration]] = {kind: {} for kind in KINDS}

    def load(
        self,
        *,
        plugins_dir: Path | None,
        modules: Iterable[str] = (),
        disabled: Iterable[str] = (),
        entry_points: bool = True,
    ) -> None:
        """Load every plugin source, skip the disabled ones, then collect registrations."""
        disabled = tuple(disabled)
        candidates: list[tuple[str, str, Callable[[], object]]] = []
        for name in DEFAULT_PLUGINS:
            candidates.append((name, "built-in", _importer(name, "built-in plugin")))
        if entry_points:
            for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
                candidates.append((ep.name, f"entry point {ep.value}", _entry_point_loader(ep)))
        if plugins_dir is not None and plugins_dir.is_dir():
            for path in sorted(plugins_dir.glob("*.py")):
                if not path.name.startswith("_"):
                    candidates.append((path.stem, str(path), _file_loader(path, f"r{id(self):x}")))
        for i, name in enumerate(modules):
            candidates.append((name, "plugins.modules", _importer(name, f"plugins.modules[{i}]")))

        known = {name for name, _, _ in candidates}
        for i, name in enumerate(disabled):
            if name not in known:
                raise ConfigError(
                    f"plugins.disabled[{i}]", "the name of a plugin", got=name, choices=known
                )
        for name, origin, loader in candidates:
            if name in disabled:
                continue
            if name in self.sources:
                raise ConfigError(
                    "plugins",
                    f"one plugin per name, but {name!r} comes from both "
                    f"{self.sources[name].origin} and {origin}",
                )
            self.manager.register(loader(), name=name)
            self.sources[name] = PluginSource(name, origin)
        for kind in KINDS:
            self._collect(kind)

    def register(self, plugin: object, name: str, origin: str = "in-process") -> None:
        """Add one plugin object after ``load`` (tests, embedding) and collect what it registers."""
        self.manager.register(plugin, name=name)
        self.sources[name] = PluginSource(name, origin)
        for kind in KINDS:
            self._collect(kind, only=name)

    def get(self, kind: Kind, name: str) -> Registration:
        """The registration of ``name``; ``KeyError`` if there is none."""
        return self.parts[kind][name]

    def names(self, kind: Kind) -> list[str]:
        """Every registered name of one kind, sorted."""
        return sorted(self.parts[kind])

    def call_app_hook(self, hook: str, **kwargs: object) -> list[object]:
        """Call a lifecycle hook on every plugin; returns their results (maybe awaitables)."""
        caller = getattr(self.manager.hook, hook)
        return list(caller(**kwargs))

    def _collect(self, kind: Kind, only: str | None = None) -> None:
        # Each implementation gets a ``register`` bound to its plugin's name, so a name that two
        # plugins register is reported with both culprits.
        hook = getattr(self.manager.hook, f"register_{kind}")
        for impl in hook.get_hookimpls():
            if only is not None and impl.plugin_name != only:
                continue
            impl.function(register=self._registrar(kind, impl.plugin_name))

    def _registrar(self, kind: Kind, plugin: str) -> hookspecs.Register:
        table = self.parts[kind]

        def register(
            name: str,
            factory: Callable[..., Any],
            *,
            options: type = NoOptions,
            description: str = "",
        ) -> None:
            if not isinstance(name, str) or not name:
                raise ConfigError(f"plugin {plugin}", f"a non-empty {kind} name", got=name)
            if not dataclasses.is_dataclass(options):
                raise ConfigError(
                    f"plugin {plugin}",
                    f"a dataclass as the options of {kind} {name!r}",
                    got=options,
                )
            if name in table:
                raise ConfigError(
                    kind,
                    f"one plugin per name, but {name!r} is registered by both "
                    f"{table[name].plugin} and {plugin}",
                )
            table[name] = Registration(kind, name, factory, options, plugin, description)

        return register


def _importer(module: str, where: str) -> Callable[[], ModuleType]:
    def load() -> ModuleType:
        try:
            return importlib.import_module(module)
        except Exception as exc:
            raise ConfigError(
                where, f"an importable module; importing {module!r} failed: {exc!r}"
            ) from exc

    return load


def _entry_point_loader(ep: importlib.metadata.EntryPoint) -> Callable[[], object]:
    def load() -> object:
        try:
            return ep.load()
        except Exception as exc:
            raise ConfigError(
                f"entry point {ep.name}", f"a loadable plugin; loading {ep.value!r} failed: {exc!r}"
            ) from exc

    return load


def _file_loader(path: Path, registry: str) -> Callable[[], ModuleType]:
    def load() -> ModuleType:
        # A module name unique to this registry and file: dataclasses resolve their annotations
        # through sys.modules, two apps loading same-named files stay apart, and nothing collides
        # with an installed package.
        name = f"streamserver_plugins_dir.{registry}.{path.stem}"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ConfigError("server.plugins_dir", f"a Python file that can be loaded: {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            sys.modules.pop(name, None)
            raise ConfigError(
                "server.plugins_dir", f"plugin files that load; {path} failed: {exc!r}"
            ) from exc
        return module

    return load
