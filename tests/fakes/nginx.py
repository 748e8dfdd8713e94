"""A real nginx (Debian's ``/usr/sbin/nginx``) round-robin in front of streamserver instances.

``streaming_conf`` is the part of the config that streaming needs, the very text the README's
"Running several instances" shows (``tests/test_nginx.py`` compares them): plain HTTP/1.1, or with
a certificate HTTPS and HTTP/2 (the README's second ``server`` block) with the same proxying. ``Nginx`` wraps it in
what one test run needs and nothing of the machine's: a free port on 127.0.0.1, its own pid file,
error log, access log and temp paths in a temp folder, in the foreground (``daemon off``), as one
process (``master_process off``: no workers to outlive it, no user switch when run as root).

The access log names, for each request, the protocol the client spoke and the upstream that
served it (``Nginx.log``), which is how a test knows which instance nginx chose.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .certificate import Certificate
from .redis_server import free_port

NGINX = os.environ.get("STREAMSERVER_NGINX", "/usr/sbin/nginx")

UPSTREAMS_CONF = """\
# WebSocket upgrades pass through; any other request gets an empty Connection header, so nginx
# keeps its connections to the instances alive (keepalive below) instead of closing each one.
map $http_upgrade $connection_upgrade {{
    default upgrade;
    ''      '';
}}

upstream streamserver {{
{servers}
    keepalive 32;
}}

"""
"""The start of the streaming part of the config: the instances, ``{servers}`` to fill in."""

PROXIED = """\
    location / {
        proxy_pass http://streamserver;
        proxy_http_version 1.1;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection $connection_upgrade;
        proxy_set_header Host $host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;

        # Each event goes on as it arrives; a slow client's backpressure reaches the instance.
        proxy_buffering off;
        proxy_cache off;

        # nginx closes a connection silent this long (default 60 s). streamserver's pings
        # (server.ping_interval_s, server.ws_heartbeat_s) come sooner; this leaves room.
        proxy_read_timeout 1h;
        proxy_send_timeout 1h;

        # A request that failed on one instance (refused, cut before its answer) goes to the
        # next, except a POST already sent: it may have started a stream, so it is not sent
        # again (nginx's rule for non-idempotent methods: never add "non_idempotent" here).
        proxy_next_upstream error timeout;
    }
"""
"""What every ``server`` block passes to the instances, the same over HTTP/1.1 and HTTP/2."""

SERVER_CONF = """\
server {{
    listen {listen};{locations}

{proxied}}}
"""
"""The plain HTTP ``server`` block, with ``{listen}`` and ``{locations}`` (extra locations before
``/``, for a test's static page) to fill in."""

TLS_SERVER_CONF = """\
# HTTPS with HTTP/2: a browser opens at most six HTTP/1.1 connections to one origin, and each
# EventSource holds one for its whole stream; over HTTP/2 they share one connection.
# (nginx 1.25.1 and later: "listen {listen} ssl;" and "http2 on;" say the same.)
server {{
    listen {listen} ssl http2;
    ssl_certificate {certificate};
    ssl_certificate_key {key};{locations}

{proxied}}}
"""
"""The HTTPS and HTTP/2 ``server`` block: ``{listen}``, ``{certificate}`` and ``{key}`` (PEM
files) and ``{locations}`` to fill in."""

README_UPSTREAMS = ("127.0.0.1:8001", "127.0.0.1:8002")
README_LISTEN = "80"
README_TLS_LISTEN = "443"
README_CERTIFICATE = Certificate(
    Path("/etc/ssl/certs/streamserver.pem"), Path("/etc/ssl/private/streamserver.key")
)


def streaming_conf(
    upstreams: Sequence[str],
    listen: str,
    locations: Sequence[str] = (),
    certificate: Certificate | None = None,
) -> str:
    """The streaming part of the config for ``upstreams`` (``host:port`` each), listening on
    ``listen`` (HTTPS and HTTP/2 with ``certificate``, plain HTTP/1.1 without); ``locations`` are
    whole ``location`` blocks put before the proxied ``/``."""
    if not upstreams:
        raise ValueError("nginx needs at least one upstream")
    servers = "\n".join(f"    server {upstream};" for upstream in upstreams)
    return UPSTREAMS_CONF.format(servers=servers) + server_conf(listen, locations, certificate)


def server_conf(
    listen: str, locations: Sequence[str] = (), certificate: Certificate | None = None
) -> str:
    """The ``server`` block alone (see ``streaming_conf``)."""
    extra = "".join(f"\n    {block}" for block in locations)
    if certificate is None:
        return SERVER_CONF.format(listen=listen, locations=extra, proxied=PROXIED)
    return TLS_SERVER_CONF.format(
        listen=listen,
        certificate=certificate.path,
        key=certificate.key,
        locations=extra,
        proxied=PROXIED,
    )


def readme_conf() -> str:
    """The sample the README shows: two instances on one machine, nginx on port 80."""
    return streaming_conf(README_UPSTREAMS, README_LISTEN)


def readme_tls_conf() -> str:
    """The README's HTTPS and HTTP/2 ``server`` block, on port 443."""
    return server_conf(README_TLS_LISTEN, certificate=README_CERTIFICATE)


PROCESS_CONF = """\
daemon off;
master_process off;
pid {dir}/nginx.pid;
error_log {dir}/error.log info;

events {{
    worker_connections 1024;
}}

http {{
    log_format upstreams
        '$request_method $uri $status "$http_last_event_id" "$sent_http_x_stream_id" '
        '$server_protocol $upstream_addr';
    access_log {dir}/access.log upstreams;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    types {{
        text/html html;
    }}

{streaming}}}
"""
"""What one test's nginx needs around the streaming part: nothing outside its temp folder."""


@dataclass(frozen=True, slots=True)
class Logged:
    """One request in nginx's access log."""

    method: str
    path: str
    status: int
    last_event_id: str
    """The request's ``Last-Event-ID`` header (``-`` if none)."""
    stream_id: str
    """The response's ``X-Stream-ID`` header (``-`` if none)."""
    protocol: str
    """What the client spoke to nginx: ``HTTP/1.1``, ``HTTP/2.0``."""
    upstream: str
    """The ``host:port`` nginx passed it to (several, ``", "``-separated, if it tried more than
    one; ``-`` if it served the request itself)."""


class Nginx:
    """One nginx process round-robin over ``upstreams``; ``pages`` (path -> HTML) are served by
    nginx itself, same-origin with the proxied routes; with a ``certificate``, over HTTPS and
    HTTP/2 only."""

    def __init__(
        self,
        upstreams: Sequence[str],
        pages: Mapping[str, str] | None = None,
        certificate: Certificate | None = None,
    ) -> None:
        if not Path(NGINX).exists():
            raise RuntimeError(
                f"nginx is not installed at {NGINX}: `apt-get install nginx` (.ci/run does)"
            )
        self.upstreams = tuple(upstreams)
        self.scheme = "http" if certificate is None else "https"
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="streamserver-nginx-"))
        self.process: subprocess.Popen[bytes] | None = None
        locations = ["location = /favicon.ico { return 204; }"]  # not proxied: no turn taken
        for path, html in (pages or {}).items():
            file = self.dir / "pages" / path.lstrip("/")
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_text(html, encoding="utf-8")
            locations.append(f"location = {path} {{ alias {file}; }}")
        self.conf = PROCESS_CONF.format(
            dir=self.dir,
            streaming=streaming_conf(
                self.upstreams, f"127.0.0.1:{self.port}", locations, certificate
            ),
        )
        (self.dir / "nginx.conf").write_text(self.conf, encoding="utf-8")

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 10) -> Nginx:
        """Start nginx and return once it accepts connections (or raise with its error log)."""
        with (self.dir / "stderr.log").open("wb") as stderr:  # the child keeps its own copy
            self.process = subprocess.Popen(
                [NGINX, "-p", str(self.dir), "-c", str(self.dir / "nginx.conf"),
                 "-e", str(self.dir / "error.log")],
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nginx exited at start:\n{self._failure()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"nginx did not listen on port {self.port} within {timeout_s} s")

    def log(self) -> list[Logged]:
        """The requests nginx has finished, in the order it finished them."""
        path = self.dir / "access.log"
        if not path.exists():
            return []
        logged = []
        for line in path.read_text(encoding="utf-8").splitlines():
            method, uri, status, last_event_id, stream_id, protocol, upstream = line.split(" ", 6)
            logged.append(
                Logged(method, uri, int(status), last_event_id.strip('"'), stream_id.strip('"'),
                       protocol, upstream)
            )  # fmt: skip
        return logged

    async def logged(
        self, count: int, path: str | None = None, timeout_s: float = 5
    ) -> list[Logged]:
        """The access log (only the requests for ``path``, if given) once it holds at least
        ``count`` requests: nginx writes a request's line when the request ends."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while len(logged := [e for e in self.log() if path in (None, e.path)]) < count:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"nginx logged {logged}, expected {count} requests")
            await asyncio.sleep(0.01)
        return logged

    def stop(self) -> None:
        """Stop it at once (SIGTERM: nginx's fast shutdown closes the open connections)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _failure(self) -> str:
        logs = (self.dir / "stderr.log", self.dir / "error.log")
        return "".join(log.read_text(errors="replace") for log in logs if log.exists())[-2000:]
