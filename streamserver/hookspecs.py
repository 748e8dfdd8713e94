"""The hooks a streamserver plugin implements.

A plugin is a module (or object) with functions decorated by ``streamserver.hookimpl`` whose names
match the specifications below. The ``register_*`` hooks receive a ``register`` callable and call it
once for every part they offer::

    @hookimpl
    def register_buffers(register):
        register("markdown", MarkdownBuffer, options=MarkdownOptions)

``Register`` below says what ``register`` takes. Names are global per kind: two plugins
registering one name is a start-up error that names both.

None of these hooks runs per token or per stream: the ``register_*`` hooks run once when the
plugins load, the app hooks once per application.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import pluggy

if TYPE_CHECKING:
    from aiohttp import web

    from .types import MetricsSink, Provider

hookspec = pluggy.HookspecMarker("streamserver")
hookimpl = pluggy.HookimplMarker("streamserver")


class Register(Protocol):
    """What a ``register_*`` hook receives: call it once per part the plugin offers."""

    def __call__(
        self,
        name: str,
        factory: Callable[..., Any],
        *,
        options: type = ...,
        description: str = "",
    ) -> None:
        """Offer ``factory`` under ``name``.

        ``options`` is a frozen dataclass whose fields are the keys allowed in the part's config
        section (default: none allowed); the core validates the section into an instance of it and
        passes that to the factory. ``description`` shows in ``check-config``.
        """
        ...


@hookspec
def register_providers(register: Register) -> None:
    """Called once when plugins load. Register provider types.

    The factory is called once per ``[providers.<name>]`` instance at app start-up with the
    validated options and returns an object that satisfies ``streamserver.types.Provider``.
    """


@hookspec
def register_buffers(register: Register) -> None:
    """Called once when plugins load. Register buffer strategies.

    The factory is called once per stream with the validated options and returns a fresh
    ``streamserver.types.Buffer``. ``max_delay_ms`` and ``max_chars`` are handled by the core for
    every buffer: do not declare them.
    """


@hookspec
def register_formatters(register: Register) -> None:
    """Called once when plugins load. Register formatters (wire shapes).

    The factory is called once per stream as ``factory(options, form)``, where form is the
    stream's ``streamserver.types.MessageForm`` (``"sse"``: SSE events; ``"json"``: one JSON
    message per event, as WebSocket and in-process readers get them), and returns a fresh
    ``streamserver.types.Formatter``.
    """


@hookspec
def register_metrics_sinks(register: Register) -> None:
    """Called once when plugins load. Register metrics sinks.

    The factory is called once per app for every sink named in ``[metrics] sinks`` and returns a
    ``streamserver.types.MetricsSink``.
    """


@hookspec
def register_conversation_stores(register: Register) -> None:
    """Called once when plugins load. Register conversation stores.

    The factory is called once per app for the store named in ``[conversations] store`` and returns
    a ``streamserver.conversations.ConversationStore``.
    """


@hookspec
def register_stream_stores(register: Register) -> None:
    """Called once when plugins load. Register stores of live streams (``[resume] store``).

    The factory is called once per app and returns a ``streamserver.stores.StreamStore``: where
    the streams an instance runs are shared, so that another instance can resume, cancel or attach
    to them (``memory``: nowhere, one process).
    """


@hookspec
def register_limit_stores(register: Register) -> None:
    """Called once when plugins load. Register stores of the limits' counts (``[limits] store``).

    The factory is called once per app and returns a ``streamserver.stores.LimitStore``.
    """


@hookspec
def startup(app: web.Application) -> Any:
    """Called once when the app starts, after providers and sinks exist. May return an awaitable.

    Use it to open what the plugin needs for the app's lifetime; keep it on the app under a
    ``web.AppKey`` of your own.
    """


@hookspec
def shutdown(app: web.Application) -> Any:
    """Called once when the app stops, before providers close. May return an awaitable."""


class Runtime(Protocol):
    """What a plugin's route handler may read of the running app."""

    @property
    def providers(self) -> Mapping[str, Provider]:
        """The provider instances, by their ``[providers.<name>]`` name."""
        ...

    @property
    def metrics_sinks(self) -> Sequence[MetricsSink]:
        """The metrics sink instances, in ``metrics.sinks`` order."""
        ...


RouteHandler = Callable[["web.Request", Runtime], Awaitable["web.StreamResponse"]]
"""A plugin route's handler: the request, and the app's runtime."""


@dataclass(frozen=True, slots=True)
class RouteSpec:
    """One route a plugin adds (``register_routes``)."""

    method: str
    path: str
    handler: RouteHandler
    summary: str = ""
    """One line for ``/openapi.json``."""
    content_type: str = "application/json"
    """What a successful answer holds, for ``/openapi.json``."""


@hookspec
def register_routes(config: Any) -> Sequence[RouteSpec] | None:
    """Called once while the app is built, with its validated ``streamserver.config.Config``
    (typed ``Any`` here: the config module loads the plugins, so this module cannot import it).
    Return the routes the plugin adds (or none).

    The core puts each behind the same auth, rate limits and CORS as the built-in routes
    (``auth.public_paths`` opens one to everyone), answers a ``StreamRejected`` its handler raises
    in the contract's error shape, and lists it in ``/openapi.json``."""
