"""The ``streamserver`` command: ``serve``, ``check-config``, ``ask``, ``fake-upstream``,
``new-plugin``, ``--version``.

A configuration mistake prints one line (file, dotted key, what was expected) and exits with 2;
Ctrl-C and SIGTERM stop the server cleanly: streams are drained while it still listens, then it
exits 0; a second signal during the drain exits at once with 1. ``serve --workers N`` hands over
to ``supervisor.py``, which runs this same ``serve`` N times (with a hidden ``--supervisor-fd``).
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import gc
import json
import logging
import os
import resource
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from . import server_log, supervisor
from .client.ask import ask
from .config import Config, load_config, refuse_open_host
from .devtools import fake_upstream, new_plugin
from .errors import ConfigError
from .service import StreamService
from .version import __version__
from .web.app import create_app, drain
from .web.keys import SERVICE
from .worker_link import SupervisorLink

DEFAULT_CONFIG = "config.toml"

log = logging.getLogger("streamserver")


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
    serve.add_argument(
        "--workers",
        type=_worker_count,
        default=1,
        help="server processes sharing the port (SO_REUSEPORT) under a supervisor that restarts "
        "them and reloads the config on SIGHUP (default: 1, one process and no supervisor)",
    )
    serve.add_argument(
        "--loop",
        choices=("auto", "asyncio", "uvloop"),
        default="asyncio",
        help="event loop: the standard one (default), uvloop (the 'uvloop' extra), or auto "
        "(uvloop when installed)",
    )
    serve.add_argument("--supervisor-fd", type=int, help=argparse.SUPPRESS)
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
    new = commands.add_parser(
        "new-plugin", help="write a plugin package that passes its own tests (see the README)"
    )
    new.add_argument("name", help="the plugin's name: its package and the part it registers")
    new.add_argument("--kind", required=True, choices=sorted(new_plugin.KINDS))
    new.add_argument("--dir", default=".", help="where to write NAME/ (default: here)")
    args = parser.parse_args(argv)

    try:
        if args.command == "serve":
            return _serve(
                args.config, args.host, args.port, args.workers, args.supervisor_fd, args.loop
            )
        if args.command == "check-config":
            return _check(args.file)
        if args.command == "ask":
            return _ask(args)
        if args.command == "new-plugin":
            return _new_plugin(args.name, args.kind, Path(args.dir))
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


def _new_plugin(name: str, kind: str, directory: Path) -> int:
    try:
        target = new_plugin.write_plugin(name, kind, directory)
    except new_plugin.PluginNameError as exc:
        print(f"streamserver: new-plugin: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {target}/ (a {kind} plugin); try it: cd {target} && pytest")
    return 0


def _worker_count(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise argparse.ArgumentTypeError(
            f"expected a whole number of processes, 1 or more, got {text!r}"
        )
    return count


def _loop_runner(loop: str) -> Callable[[Coroutine[Any, Any, int]], int]:
    """``asyncio.run``, or ``uvloop.run`` for ``--loop uvloop`` (and ``auto`` when installed)."""
    if loop != "asyncio":
        try:
            import uvloop
        except ImportError:
            if loop == "uvloop":
                raise ConfigError(
                    "--loop", "uvloop installed (the 'uvloop' extra)", got="uvloop"
                ) from None
        else:
            return uvloop.run
    return asyncio.run


def _serve(
    path: str,
    host: str | None,
    port: int | None,
    workers: int = 1,
    supervisor_fd: int | None = None,
    loop: str = "asyncio",
) -> int:
    if supervisor_fd is not None:
        # A worker: SIGHUP is the supervisor's (a stray one must not end it), and its whole
        # config was logged by the supervisor.
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    given = {"host": host, "port": port}
    overrides = {"server": {k: v for k, v in given.items() if v is not None}}
    config = supervisor.load_checked(path, overrides, workers)
    host, port = config.server.host, config.server.port
    server_log.configure(config.server, with_pid=workers > 1 or supervisor_fd is not None)
    for noisy in ("httpx", "httpx2"):  # one line per request is too much by default
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("aiohttp.server").addFilter(_malformed_requests_in_one_line)
    if supervisor_fd is None:
        for line in _describe(config):
            log.info("%s", line)
    if workers > 1:
        return supervisor.run(path, overrides, workers, config, _describe)
    app = create_app(config)
    _raise_file_limit()
    app.on_startup.append(_tune_gc)
    link = None if supervisor_fd is None else SupervisorLink(supervisor_fd)
    try:
        return _loop_runner(loop)(_run(app, host, port, config, link))
    except OSError as exc:
        if exc.errno not in _LISTEN_ERRORS:
            raise
        print(f"streamserver: cannot listen on {host}:{port}: {exc.strerror}", file=sys.stderr)
        return 1


async def _run(
    app: web.Application, host: str, port: int, config: Config, link: SupervisorLink | None
) -> int:
    """Serve until SIGTERM or Ctrl-C, then drain with the listener still open, then stop.

    ``web.run_app`` closes the listening socket before the drain (``on_shutdown``): clients
    would be refused, and idle keep-alive connections dropped, for the whole grace. A second
    signal during the drain exits at once with status 1.

    A worker (``link``) listens with ``SO_REUSEPORT`` beside the others, tells the supervisor
    once it listens, and when the supervisor retires it (a reload) stops listening before the
    drain, so that new connections go to the new workers."""
    runner = web.AppRunner(
        app,
        handle_signals=False,
        handler_cancellation=True,  # a client that goes away cancels its handler at once
        access_log_class=server_log.AccessLogger,
        access_log=logging.getLogger(server_log.ACCESS),
        shutdown_timeout=config.server.shutdown_grace_s + 5,
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, backlog=_BACKLOG, reuse_port=link is not None)
        await site.start()
        url = f"http://{_url_host(host)}:{port}"
        if link is None:
            print(f"streamserver {__version__} listening on {url}", flush=True)
        else:
            log.info("worker listening on %s", url)
            await link.listening()
        if await _signalled(link):
            await site.stop()
            if runner.server is not None:
                # Idle keep-alive connections close now, busy ones after their response: a
                # client's next request opens a connection, which reaches a new worker.
                for connection in runner.server.connections:
                    connection.close()
            assert link is not None
            await link.retiring()
            log.info(
                "retiring: no longer listening; draining %d live streams",
                app[SERVICE].streams.active,
            )
        else:
            log.info(
                "shutting down: new streams get 503 (a second SIGTERM or Ctrl-C exits at once)"
            )
        await drain(app)  # before cleanup, which stops listening
    finally:
        await runner.cleanup()
        if link is not None:
            link.close()
    log.info("stopped")
    return 0


async def _signalled(link: SupervisorLink | None = None) -> bool:
    """Return at the first SIGTERM or SIGINT, or when the supervisor asks this worker to stop
    (False) or to retire (True); from then on, the next signal ends the process.

    What the supervisor asks is not a signal: a signal sent to the whole group as well (systemd)
    is then the first one, not the second."""
    loop = asyncio.get_running_loop()
    first = asyncio.Event()

    def on_signal(name: str) -> None:
        if not first.is_set():
            log.info("%s received", name)
            first.set()
            return
        log.warning("%s received again while draining: exiting now, status 1", name)
        logging.shutdown()  # flush what is logged before the process ends without unwinding
        os._exit(1)

    for number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(number, on_signal, number.name)
    if link is None:
        await first.wait()
        return False
    waits = [asyncio.create_task(e.wait()) for e in (first, link.stop, link.retire)]
    _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for wait in pending:
        wait.cancel()
    return link.retire.is_set() and not (first.is_set() or link.stop.is_set())


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
    """Never scan what start-up loaded, and collect the older generations seldom.

    With thousands of live streams, every collection of the oldest generation walks all of
    their objects (about 100 ms with 1,000 streams): a pause in every stream at once. Freezing
    what is loaded, and 200 young collections to one of the middle generation (Python's default
    is 10), keep those rare. The young generation stays small: a young collection walks every
    young object still alive (a stream's tasks, coroutines and frames), about 0.5 µs each here,
    so 10,000 of them held the loop for 5-14 ms, a pause in the streams then starting; at
    1,000 it is about 0.5 ms, 3.6 at most. Almost all garbage here is freed by reference
    counting anyway.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


GC_THRESHOLDS = (1_000, 200, 100)
"""``gc.set_threshold`` for a served process (Python's default is 700, 10, 10): a young collection
per 1,000 tracked objects allocated and not freed (about 0.5 ms each, 3.6 at most, with 1,422 live
streams); a middle one per 200 young ones, as often as with the 10,000 × 20 used before, whose
young pauses reached 14 ms (a middle pause is about 37 ms there: rarer ones would be longer); a
full one per 100 middle ones at most. Measured on CPython 3.11, whose collector has three
generations."""


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
    for line in _describe(config)[1:]:
        print(line)
    return 0


def _describe(config: Config) -> list[str]:
    """What a config serves: its file, the plugins loaded, the parts, the routes (one line each;
    ``check-config`` prints them, ``serve`` logs them)."""
    lines = [f"config: {config.file or '(not from a file)'}", "plugins:"]
    lines += [f"  {source.name}  ({source.origin})" for source in config.registry.sources.values()]
    for kind, parts in (
        ("providers", config.providers),
        ("buffers", config.buffers),
        ("formatters", config.formatters),
    ):
        lines.append(
            f"{kind}: "
            + ", ".join(
                f"{name} ({part.registration.name})" if name != part.registration.name else name
                for name, part in parts.items()
            )
        )
    lines.append("metrics sinks: " + ", ".join(part.name for part in config.sinks))
    lines.append("routes:")
    for route_path, route in config.routes.items():
        lines.append(
            f"  {' '.join(route.methods):8} {route_path:20} {route.transport}  formatter={route.formatter} "
            f"buffer={route.buffer} provider={route.provider or '(default)'} model={route.model or '(default)'}"
            f" allow={','.join(route.allow) or '-'}"
            + "".join(f" pin.{name}={json.dumps(value)}" for name, value in route.pin.items())
        )
    return lines


async def _check_models(config: Config) -> None:
    service = await StreamService.open(config)
    await service.close()


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
