"""The routes around the streams: health, metrics, the options a client may choose, tickets, the
OpenAPI document, and the demo page with its files."""

from __future__ import annotations

import logging
from pathlib import Path

from aiohttp import web

from ..access import KEY_ID
from ..errors import StreamRejected
from ..hookspecs import RouteSpec
from . import openapi
from .keys import PLUGIN_ROUTES, SERVICE
from .request import read_json_body

log = logging.getLogger("streamserver")

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
"""The demo page and its scripts and stylesheet, shipped in the package."""
STATIC_FILES = frozenset(path.name for path in STATIC_DIR.iterdir() if path.is_file())
"""The names ``/static/`` serves: the page's files, nothing else (no listing, no subpaths)."""


async def health(request: web.Request) -> web.Response:
    """``GET /health``: liveness, how many streams are generating, and (with a shared store)
    whether the store answers: 503 with the reason when it does not."""
    service = request.app[SERVICE]
    status = "draining" if service.draining else "healthy"
    body: dict[str, object] = {"status": status, "active_streams": service.streams.active}
    problem = await service.health()
    if problem is not None:
        body.update(status="unhealthy", reason=problem)
    failing = service.draining or problem is not None
    return web.json_response(body, status=503 if failing else 200)


async def stream_metrics(request: web.Request) -> web.Response:
    """``GET /v1/stream/metrics``: the registry's counts plus every sink's snapshot."""
    service = request.app[SERVICE]
    figures: dict[str, object] = {
        "active_streams": service.streams.active,
        "total_streams": service.streams.total,
        "retained_streams": len(service.streams.streams),
        "evicted_streams": service.streams.evicted,
        "trimmed_events": service.streams.trimmed,
    }
    for sink in service.metrics_sinks:
        snapshot = getattr(sink, "snapshot", None)  # optional: MetricsSink.snapshot
        try:
            figures.update(snapshot() if snapshot is not None else {})
        except Exception:  # one broken sink must not hide the others' figures
            log.exception("metrics sink %s failed in snapshot", type(sink).__name__)
    return web.json_response(figures)


async def stream_options(request: web.Request) -> web.Response:
    """``GET /v1/stream/options``: the names a client may choose from (for selectors in a UI)."""
    config = request.app[SERVICE].config
    return web.json_response(
        {
            "buffers": sorted(config.buffers),
            "formats": sorted(config.formatters),
            "models": request.app[SERVICE].models(),
            "routes": {
                path: {
                    "transport": r.transport,
                    "formatter": r.formatter,
                    "buffer": r.buffer,
                    "allow": list(r.allow),
                }
                for path, r in config.routes.items()
            },
        }
    )


async def issue_ticket(request: web.Request) -> web.Response:
    """``POST /v1/tickets`` ``{"path": "/v1/stream"}``: a short-lived ticket for one path, for
    clients that cannot send headers (EventSource, a browser's WebSocket). Needs a key."""
    service = request.app[SERVICE]
    if "ticket" in request.query:
        raise StreamRejected(
            403, "ticket_for_ticket", "a ticket cannot be exchanged for another ticket"
        )
    body = await read_json_body(request, service.config.limits.max_body_bytes)
    path = body.get("path")
    if not isinstance(path, str) or not path.startswith("/"):
        raise StreamRejected(
            400, "invalid_path", "'path' must be the path the ticket is for, like /v1/stream"
        )
    ticket = service.access.issue_ticket(request[KEY_ID], path)
    return web.json_response(
        {"ticket": ticket.token, "path": ticket.path, "expires_at": ticket.expires_at}
    )


async def openapi_document(request: web.Request) -> web.Response:
    """``GET /openapi.json``: the OpenAPI document of this server (its routes, its models)."""
    service = request.app[SERVICE]
    plugin_routes: tuple[RouteSpec, ...] = request.app[PLUGIN_ROUTES]
    return web.json_response(
        openapi.build_spec(
            service.config,
            service.models(),
            plugin_routes,
            service.parameters(),
            service.tool_less(),
        )
    )


async def demo_page(request: web.Request) -> web.FileResponse:
    """``GET /``: the demo chat page (``static/index.html``)."""
    return web.FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


async def static_file(request: web.Request) -> web.FileResponse:
    """``GET /static/{name}``: one of the demo page's files.

    Not ``add_static``: its missing file is an empty 404 that no middleware sees (the file is
    looked for when the response is sent). Any other name is refused here, as a JSON 404."""
    name = request.match_info["name"]
    if name not in STATIC_FILES:
        raise web.HTTPNotFound()
    return web.FileResponse(STATIC_DIR / name)
