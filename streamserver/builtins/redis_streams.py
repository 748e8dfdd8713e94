"""Registers the ``redis`` stream store (``[resume] store = "redis"``, ``redis_stream_store.py``).

redis-py is an extra (``pip install 'streamserver[redis]'``), and about 10 MB once imported: a
server that does not configure the store neither needs it installed nor pays for it.
"""

from __future__ import annotations

from ..hookspecs import Register, hookimpl
from ..stores import StreamStore
from .redis_extra import require_redis


def _store(options: object) -> StreamStore:
    require_redis()  # an extra: say so at start-up
    from .redis_stream_store import RedisStreams

    return RedisStreams()


@hookimpl
def register_stream_stores(register: Register) -> None:
    register(
        "redis",
        _store,
        description="live streams shared through Redis: resume, cancel, retry on any instance",
    )
