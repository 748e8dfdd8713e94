"""Stores named ``shared_for_tests`` that *say* they are shared, and a route that names the process.

``serve --workers N`` refuses a store that does not declare ``distributed = True`` (it keeps its
data in each process). These wrap the embedded ones (``memory`` streams and limits, the SQLite
conversations) and declare it, so a test can run the supervisor without a Redis store. They share
nothing for real: a test that uses them must not rely on resume, limits or conversations across
workers. ``GET /test/worker`` answers ``{"pid": ...}``: which worker served the request.
Load it with ``plugins.modules = ["shared_for_tests"]`` (tests/plugin_fixtures on the path).
"""

from __future__ import annotations

import os
from typing import Any

from aiohttp import web

from streamserver import hookimpl
from streamserver.builtins.memory_stores import MemoryLimits, MemoryStreams
from streamserver.builtins.sqlite_conversations import SQLiteConversationStore, SQLiteOptions
from streamserver.hookspecs import Register, RouteSpec


class SharedStreamsForTests(MemoryStreams):
    distributed = True


class SharedLimitsForTests(MemoryLimits):
    distributed = True


class SharedConversationsForTests(SQLiteConversationStore):
    distributed = True


@hookimpl
def register_stream_stores(register: Register) -> None:
    register("shared_for_tests", lambda options: SharedStreamsForTests())


@hookimpl
def register_limit_stores(register: Register) -> None:
    register("shared_for_tests", lambda options: SharedLimitsForTests())


@hookimpl
def register_conversation_stores(register: Register) -> None:
    register("shared_for_tests", SharedConversationsForTests, options=SQLiteOptions)


async def worker_pid(request: web.Request, service: Any) -> web.Response:
    return web.json_response({"pid": os.getpid()})


@hookimpl
def register_routes(config: Any) -> list[RouteSpec]:
    return [RouteSpec("GET", "/test/worker", worker_pid, summary="the serving process's id")]
