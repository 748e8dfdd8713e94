"""The ``streamserver`` command: ``serve``, ``check-config``, ``--version``.

A configuration mistake prints one line (file, dotted key, what was expected) and exits with 2;
Ctrl-C and SIGTERM stop the server cleanly: streams are drained, then it exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import gc
import logging
import os
import resource
import sys
from collections.abc import Sequence

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from .client.ask import ask
from .config import Config, load_config, refuse_open_host
from .devtools import fake_upstream
from .errors import ConfigError
from .service import StreamService
from .version import __version__
from .web.app import create_app

DEFAULT_CONFIG = "config.toml"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="streamserver", description="Stream LLM tokens over SSE and WebSocket."
    )
    parser.add_argument("--version", action="version", version=f"streamserver {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = commands.add_parser("serve", help="serve the configured routes")
    serve.add_argument(
        "--config", default=DEFAULT_CONFIG, help=f"config file (default: {DEFAULT_CONFIG})"
    )
    serve.add_argument("--host", help="override server.host")
    serve.add_argument("--port", type=int, help="override server.port")
    check = commands.add_parser("check-config", help="validate a config file without serving")
    check.add_argument("file", nargs="?", default=DEFAULT_CONFIG)
    ask_parser = commands.add_parser(
        "ask", help="print an answer as it streams from a running server"
    )
    ask_parser.add_argument("prompt")
    ask_parser.add_argument("--url", default="http://127.0.0.1:8000", help="server base URL")
    ask_parser.add_argument(
        "--ws", action="store_true", help="use the WebSocket route instead of SSE"
    )
    ask_parser.add_argument("--raw", action="store_true", help="print every event as a JSON line")
    ask_parser.add_argument("--model")
    ask_parser.add_argument("--buffer")
    ask_parser.add_argument("--max-tokens", type=int)
    ask_parser.add_argument(
        "--api-key",
        default=os.environ.get("STREAMSERVER_API_KEY"),
        help="the key a server with auth wants (default: $STREAMSERVER_API_KEY, which keeps it "
        "out of the process list and the shell history)",
    )
    fake = commands.add_parser(
        "fake-upstream",
        help="serve a fake OpenAI-compatible upstream (try the openai provider without a key)",
    )
    fake.add_argument("--host", default="127.0.0.1")
    fake.add_argument("--port", type=int, default=8099)
    fake.add_argument(
        "--tokens-per-second", type=float, default=30.0, help="pace of its answers (0 = no pause)"
    )
    args = parser.parse_args(argv)

    try:
        if args.command == "serve":
            return _serve(args.config, args.host, args.port)
        if args.command == "check-config":
            return _check(args.file)
        if args.command == "ask":
            return _ask(args)
        if args.command == "fake-upstream":
            refuse_open_host(args.host, None)
            fake_upstream.run(args.host, args.port, args.tokens_per_second)
            return 0
    except ConfigError as exc:
        print(f"streamserver: config error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (e.g. piped into head): stop quietly, as Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    parser.print_help()
    return 2


def _serve(path: str, host: str | None, port: int | None) -> int:
    given = {"host": host, "port": port}
    config = load_config(
        path, overrides={"server": {k: v for k, v in given.items() if v is not None}}
    )
    host, port = config.server.host, config.server.port
    logging.basicConfig(
        level=config.server.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("httpx", "httpx2"):  # one line per request is too much by default
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("aiohttp.server").addFilter(_malformed_requests_in_one_line)
    app = create_app(config)
    _raise_file_limit()
    app.on_startup.append(_tune_gc)
    try:
        web.run_app(
            app,
            host=host,
            port=port,
            backlog=_BACKLOG,
            handler_cancellation=True,  # a client that goes away cancels its handler at once
            # No access log (a line per request is too much): without a logger aiohttp does not
            # build an access logger for every connection only to find it disabled.
            access_log=None,
            shutdown_timeout=config.server.shutdown_grace_s + 5,
            print=lambda _: print(
                f"streamserver {__version__} listening on http://{_url_host(host)}:{port}",
                flush=True,
            ),
        )
    except OSError as exc:
        if exc.errno not in _LISTEN_ERRORS:
            raise
        print(f"streamserver: cannot listen on {host}:{port}: {exc.strerror}", file=sys.stderr)
        return 1
    return 0


_BACKLOG = 4096
"""Pending connections the kernel queues (capped by ``net.core.somaxconn``). aiohttp's 128 drops
the SYNs of a burst of clients, which then retry a second later: a 1 s first token."""


def _raise_file_limit() -> None:
    """Let the process open as many sockets as the hard limit allows (every stream holds one;
    the usual soft limit of 1024 would refuse the 1021st client with "too many open files")."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY:
            hard = max(soft, 1 << 20)
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (OSError, ValueError):  # not permitted here: keep what we have
        pass


async def _tune_gc(app: web.Application) -> None:
    """Collect less often, and never scan what start-up loaded.

    With thousands of live streams, every collection of the oldest generation walks all of
    their objects (about 100 ms with 1,000 streams): a pause in every stream at once. Freezing
    what is loaded and raising the first threshold cuts those pauses to a fraction; almost all
    garbage here is freed by reference counting anyway.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 20, 100)


_LISTEN_ERRORS = {errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES}
"""Why a socket cannot be bound: said in one line, not a traceback."""


def _malformed_requests_in_one_line(record: logging.LogRecord) -> bool:
    """A malformed HTTP request is the client's mistake: one warning line, not a traceback."""
    if record.exc_info and isinstance(record.exc_info[1], HttpProcessingError):
        record.msg = f"{record.getMessage()}: {record.exc_info[1]!s}".replace("\n", " ")
        record.args = ()
        record.exc_info = None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
    return True


def _ask(args: argparse.Namespace) -> int:
    options = {"model": args.model, "buffer": args.buffer, "max_tokens": args.max_tokens}
    try:
        return asyncio.run(
            ask(
                args.prompt,
                args.url,
                api_key=args.api_key,
                ws=args.ws,
                raw=args.raw,
                options=options,
            )
        )
    except KeyboardInterrupt:
        return 130


def _check(path: str) -> int:
    config = load_config(path)
    asyncio.run(_check_models(config))
    print(f"{path}: OK")
    print("plugins:")
    for source in config.registry.sources.values():
        print(f"  {source.name}  ({source.origin})")
    for kind, parts in (
        ("providers", config.providers),
        ("buffers", config.buffers),
        ("formatters", config.formatters),
    ):
        print(
            f"{kind}: "
            + ", ".join(
                f"{name} ({part.registration.name})" if name != part.registration.name else name
                for name, part in parts.items()
            )
        )
    print("metrics sinks: " + ", ".join(part.name for part in config.sinks))
    print("routes:")
    for route_path, route in config.routes.items():
        print(
            f"  {' '.join(route.methods):8} {route_path:20} {route.transport}  formatter={route.formatter} "
            f"buffer={route.buffer} provider={route.provider or '(default)'} model={route.model or '(default)'}"
            f" allow={','.join(route.allow) or '-'}"
        )
    return 0


async def _check_models(config: Config) -> None:
    service = await StreamService.open(config)
    await service.close()


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
