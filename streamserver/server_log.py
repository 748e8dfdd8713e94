"""The server's log: text or JSON lines (``server.log_format``), and the access log.

The access log has one line per request when it ends, and on a WebSocket one per stream it carried
(when the socket ends): method, path, status, duration, key id, and for a stream its id, time to
first token, tokens and outcome. Nothing is logged per token. Paths are logged without their query
string (it may hold a ticket) and callers by key id, never by key.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from .access import KEY_ID
from .settings import ServerSettings
from .streams import Stream

SERVED = web.RequestKey("streamserver.served", list[Stream])
"""The streams a request carried (an SSE response one, a WebSocket any number), for its access
line."""

ACCESS = "streamserver.access"
"""The access log's logger name."""

_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_TEXT_FORMAT_WITH_PID = "%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s"


def note_served(request: web.Request, stream: Stream) -> None:
    """Record that ``request`` carries ``stream`` (once per stream, not per event)."""
    served = request.get(SERVED)
    if served is None:
        request[SERVED] = [stream]
    elif stream not in served:
        served.append(stream)


@dataclass(frozen=True, slots=True)
class AccessLine:
    """One request, or one stream of a WebSocket, as the access log tells it."""

    method: str
    path: str
    status: int
    duration_ms: int
    remote: str | None
    key_id: str | None = None
    stream_id: str | None = None
    outcome: str | None = None
    ttft_ms: int | None = None
    tokens: int | None = None

    def text(self) -> str:
        """``GET /v1/stream 200 1234ms stream=st_… key=alice ttft=55ms tokens=40 completed``."""
        parts = [self.method, self.path, str(self.status), f"{self.duration_ms}ms"]
        if self.remote:
            parts.append(f"from={self.remote}")
        if self.key_id:
            parts.append(f"key={self.key_id}")
        if self.stream_id:
            parts.append(f"stream={self.stream_id}")
        if self.ttft_ms is not None:
            parts.append(f"ttft={self.ttft_ms}ms")
        if self.tokens is not None:
            parts.append(f"tokens={self.tokens}")
        if self.outcome:
            parts.append(self.outcome)
        return " ".join(parts)


def access_lines(request: web.BaseRequest, status: int, duration_s: float) -> list[AccessLine]:
    """The access lines of a request that has ended: one, or one per stream of a WebSocket."""
    identity = request.get(KEY_ID)
    # Without auth the caller is known by address only ("addr:…"), which ``remote`` already says.
    key_id = identity if identity and not identity.startswith("addr:") else None
    head = (request.method, request.path, status)
    served = request.get(SERVED)
    if not served:
        return [AccessLine(*head, round(duration_s * 1000), request.remote, key_id)]
    websocket = status == 101
    lines = []
    for stream in served:
        summary = stream.summary
        lines.append(
            AccessLine(
                *head,
                # A WebSocket carries streams in turn: each line gives its own stream's time.
                round((summary.duration_s if websocket and summary else duration_s) * 1000),
                request.remote,
                key_id,
                stream.id,
                summary.outcome if summary else "running",
                None if summary is None or summary.ttft_s is None else round(summary.ttft_s * 1000),
                summary.tokens if summary else None,
            )
        )
    return lines


class AccessLogger(AbstractAccessLogger):
    """aiohttp's access-log hook (``access_log_class``), called once a request has ended."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        """Write the request's access lines (``time``: how long it took, in seconds)."""
        for line in access_lines(request, response.status, time):
            self.logger.info(line.text(), extra={"access": line})

    @property
    def enabled(self) -> bool:
        """Build no line when the level would drop it."""
        return self.logger.isEnabledFor(logging.INFO)


class JSONLines(logging.Formatter):
    """One JSON object a line: ``time``, ``level``, ``logger``, ``message``, an access line's
    fields, and ``exception`` (the traceback as one string) when there is one; with ``with_pid``,
    the process id as ``pid``."""

    def __init__(self, *, with_pid: bool = False) -> None:
        super().__init__()
        self.with_pid = with_pid

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        fields: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        access = getattr(record, "access", None)
        if isinstance(access, AccessLine):
            fields.update((k, v) for k, v in asdict(access).items() if v is not None)
        if self.with_pid:
            fields["pid"] = record.process
        if record.exc_info:
            fields["exception"] = self.formatException(record.exc_info)
        return json.dumps(fields, ensure_ascii=False)


def configure(settings: ServerSettings, *, with_pid: bool = False) -> None:
    """Send the process's log to stderr at ``log_level``, as text or JSON (``log_format``).

    ``with_pid`` (``serve --workers``, whose processes share one stderr): each line names its
    process, ``streamserver[1234]:`` in text, ``"pid"`` in JSON."""
    handler = logging.StreamHandler()
    handler.setFormatter(
        JSONLines(with_pid=with_pid)
        if settings.log_format == "json"
        else logging.Formatter(_TEXT_FORMAT_WITH_PID if with_pid else _TEXT_FORMAT)
    )
    logging.basicConfig(level=settings.log_level.upper(), handlers=[handler], force=True)
