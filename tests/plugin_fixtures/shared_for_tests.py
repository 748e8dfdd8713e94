"""A route that names the process: ``GET /test/worker`` answers ``{"pid": ...}``, which worker of
``serve --workers N`` served the request. Load it with ``plugins.modules = ["shared_for_tests"]``
(tests/plugin_fixtures on the path)."""

from __future__ import annotations

import os
from typing import Any

from aiohttp import web

from streamserver import hookimpl
from streamserver.hookspecs import RouteSpec


async def worker_pid(request: web.Request, service: Any) -> web.Response:
    return web.json_response({"pid": os.getpid()})


@hookimpl
def register_routes(config: Any) -> list[RouteSpec]:
    return [RouteSpec("GET", "/test/worker", worker_pid, summary="the serving process's id")]
