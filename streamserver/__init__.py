"""streamserver: stream LLM tokens to clients over Server-Sent Events and WebSocket.

Embedding::

    from aiohttp import web
    import streamserver

    app = web.Application()
    app.add_subapp("/llm", streamserver.create_app("config.toml"))   # or: streamserver.setup(app, cfg)
"""

from .config import Config, load_config
from .errors import ConfigError, ProviderError, StreamRejected
from .hookspecs import hookimpl
from .inprocess import Segment, generate, generate_sync
from .version import __version__
from .web.app import create_app, drain, setup

__all__ = [
    "Config",
    "ConfigError",
    "ProviderError",
    "Segment",
    "StreamRejected",
    "__version__",
    "create_app",
    "drain",
    "generate",
    "generate_sync",
    "hookimpl",
    "load_config",
    "setup",
]
