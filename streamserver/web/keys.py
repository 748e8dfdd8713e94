"""The app's typed state keys and the handler type: one home that every handler, and any plugin
that adds routes, imports instead of the app factory."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from ..config import Config
from ..hookspecs import RouteSpec
from ..service import StreamService
from ..transports.connections import OpenConnections

CONFIG = web.AppKey("config", Config)
"""The validated configuration the app serves."""
SERVICE = web.AppKey("service", StreamService)
"""The app's runtime: providers, sinks, the stream registry."""
CONNECTIONS = web.AppKey("connections", OpenConnections)
"""The app's open streaming connections: the write batcher, the WebSockets."""
PLUGIN_ROUTES = web.AppKey("plugin_routes", tuple[RouteSpec, ...])
"""The routes plugins added (``register_routes``), for ``/openapi.json``."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
"""An aiohttp request handler."""
