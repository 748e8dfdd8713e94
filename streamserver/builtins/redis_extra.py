"""redis-py is an extra (``pip install 'streamserver[redis]'``): the Redis stores check for it
when they are made, so a config that asks for one without it is a config error naming the extra,
not an import traceback at the first call."""

from __future__ import annotations

import importlib.util

from ..errors import ConfigError


def require_redis() -> None:
    """Raise the ``ConfigError`` (keyed by the store's section) that says to install the extra."""
    if importlib.util.find_spec("redis") is None:
        raise ConfigError("", "an installed Redis client: pip install 'streamserver[redis]'")
