"""``streamserver serve --workers N``: N single-process servers on one port, and their supervisor.

Each worker is the ``serve`` command itself, run again with a hidden ``--supervisor-fd``: its own
interpreter, loop, app and service, listening with ``SO_REUSEPORT`` so the kernel spreads new
connections across the workers. The supervisor serves nothing: it starts the workers, passes
SIGTERM and SIGINT on (each worker drains as ``serve`` does; a second signal makes them exit at
once), starts another in place of one that
died unexpectedly (after a backoff), and exits once all have stopped. On SIGHUP it re-reads the
config with the start-up validation; if it validates, N new workers start on it and, once they all
listen, the old ones stop listening (the kernel then sends every new connection to the new ones)
and drain, so no stream that was running is dropped.

Workers are subprocesses running the same command rather than ``multiprocessing`` children: a
worker is then exactly ``serve`` (one code path; nothing is pickled, and a ``Config`` with its
plugin registry could not be), each starts from a fresh interpreter whichever way streamserver was
launched, and signals, sessions and exit statuses are the plain ones of a process.

Each worker has a socket pair to the supervisor (its link, ``worker_link.py``): it says when it
listens, and is told to stop, retire or exit. Workers run in their own session, so a terminal's
Ctrl-C reaches the supervisor alone.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

from . import server_log
from .config import Config, Part, load_config
from .errors import ConfigError
from .service import make_part
from .version import __version__
from .worker_link import Worker

log = logging.getLogger("streamserver.supervisor")

RESTART_FIRST_S = 0.5
"""The pause before starting another worker in place of one that died; it doubles after each
death in a row, up to ``RESTART_MAX_S``, and starts again from here once a worker ran
``STEADY_S``."""
RESTART_MAX_S = 30.0
STEADY_S = 30.0

Overrides = Mapping[str, Mapping[str, Any]]

_SHARED = {
    "resume.store": (
        "stream_store",
        "streams: a resume or cancel landing on another worker would not find the stream",
    ),
    "limits.store": ("limit_store", "counts: each worker would allow the whole limit"),
    "conversations.store": (
        "conversation_store",
        "conversations: two turns of one conversation on two workers would interleave",
    ),
}
"""The stores N workers must share: the key that names one, its ``Config`` field, and what a
store of each process's own would keep apart."""


def check_workers(config: Config, workers: int) -> None:
    """Refuse (``ConfigError``) what N > 1 workers could not share: a store that keeps its data
    in each process (one that does not declare ``distributed = True``), or port 0 (each worker
    would get a port of its own). The store is made by its factory to ask, never opened."""
    if workers < 2:
        return
    if config.server.port == 0:
        raise ConfigError(
            "server.port",
            f"a fixed port with --workers {workers} (the workers share one port; "
            "0 would give each an ephemeral port of its own)",
            file=config.file,
        )
    for key, (attribute, what) in _SHARED.items():
        part: Part = getattr(config, attribute)
        section = f"{key.partition('.')[0]}.{part.name}"
        if not getattr(make_part(part, section, config.file), "distributed", False):
            raise ConfigError(
                key,
                f'a store the workers share with --workers {workers}: "redis", with a [redis] '
                f'section giving its url (the "{part.name}" store keeps each process\'s own '
                f"{what})",
                file=config.file,
                got=part.name,
            )


def load_checked(path: str, overrides: Overrides, workers: int) -> Config:
    """``serve``'s validation of the file, plus ``check_workers``."""
    config = load_config(path, overrides=overrides)
    check_workers(config, workers)
    return config


def run(
    path: str,
    overrides: Overrides,
    workers: int,
    config: Config,
    describe: Callable[[Config], list[str]],
) -> int:
    """Supervise ``workers`` workers serving ``path`` until SIGTERM or Ctrl-C; the exit status."""
    return asyncio.run(Supervisor(path, overrides, workers, describe).run(config))


class Generation:
    """N workers on one config: each slot is kept running until the generation retires or stops.

    A worker that ends before all of the generation have listened fails the generation (at
    start-up ``serve`` exits with its status; on a reload the old workers stay); later, one that
    ends on its own is replaced, after a backoff."""

    def __init__(self, supervisor: Supervisor, number: int, config: Config) -> None:
        self.supervisor = supervisor
        self.number = number
        self.config = config
        self.slots: list[Worker | None] = [None] * supervisor.count
        self.ended = asyncio.Event()
        """Set when it retires or the supervisor stops: no more replacements."""
        self.up = False
        self._listening = 0
        self._started: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        self._keepers: list[asyncio.Task[None]] = []

    @property
    def workers(self) -> list[Worker]:
        """Its workers still running."""
        return [w for w in self.slots if w is not None and w.process.returncode is None]

    def pids(self) -> str:
        """Its workers' pids, for a log line."""
        return ", ".join(str(w.pid) for w in self.workers) or "none"

    async def start(self) -> int | None:
        """Start every slot; ``None`` once all listen, else the exit status of one that ended
        before (the others are then stopped)."""
        self._keepers = [
            asyncio.create_task(self._keep(slot)) for slot in range(self.supervisor.count)
        ]
        status = await self._started
        if status is not None:
            await self.stop()
        return status

    async def retire(self) -> None:
        """Ask every worker to stop listening and drain; return once none listens."""
        self.ended.set()
        workers = self.workers
        for worker in workers:
            worker.retire()
        await asyncio.gather(*(worker.retired() for worker in workers))

    async def stop(self) -> None:
        """Ask every worker to drain; return once all have ended."""
        self.ended.set()
        for worker in self.workers:
            worker.stop()
        await self.finished()

    async def finished(self) -> None:
        """Return once every slot has ended for good."""
        await asyncio.gather(*self._keepers)

    async def _keep(self, slot: int) -> None:
        delay = RESTART_FIRST_S
        while True:
            try:
                worker = await self.supervisor.spawn(self, slot)
            except OSError as exc:
                log.error("cannot start worker %d: %s", slot + 1, exc)
                if not self.up:
                    self._start_failed(1)
                    return
            else:
                self.slots[slot] = worker
                if await worker.listening():
                    self._listened(worker)
                status = await worker.process.wait()
                worker.close()
                self.supervisor.ended(worker, status)
                if not self.up:
                    if not (worker.retiring or worker.stopping):
                        log.error("%s ended before it listened (%s)", worker, _status(status))
                    self._start_failed(status)
                    return
                if self.ended.is_set():
                    return
                if time.monotonic() - worker.started >= STEADY_S:
                    delay = RESTART_FIRST_S
                log.warning(
                    "%s ended unexpectedly (%s); starting another in %.1f s",
                    worker,
                    _status(status),
                    delay,
                )
            try:
                await asyncio.wait_for(self.ended.wait(), delay)
                return
            except TimeoutError:
                delay = min(delay * 2, RESTART_MAX_S)

    def _listened(self, worker: Worker) -> None:
        host, port = self.config.server.host, self.config.server.port
        if self.up:
            log.info("%s listening on %s:%d (in place of the one that ended)", worker, host, port)
            return
        log.info("%s listening on %s:%d", worker, host, port)
        self._listening += 1
        if self._listening == self.supervisor.count and not self._started.done():
            self.up = True
            self._started.set_result(None)

    def _start_failed(self, status: int) -> None:
        self.ended.set()
        if not self._started.done():
            self._started.set_result(status or 1)


class Supervisor:
    """Starts the workers, passes signals on, replaces the dead, reloads on SIGHUP."""

    def __init__(
        self,
        path: str,
        overrides: Overrides,
        count: int,
        describe: Callable[[Config], list[str]],
    ) -> None:
        self.path = path
        self.overrides = overrides
        self.count = count
        self.describe = describe
        self.generations: list[Generation] = []
        self.current: Generation | None = None
        self.stopping = False
        self.forced = False
        self.clean = True
        self._stop = asyncio.Event()
        self._reload = asyncio.Event()
        self._reloading = False
        self._background: set[asyncio.Task[None]] = set()

    async def run(self, config: Config) -> int:
        """Serve until the first SIGTERM or SIGINT, then until every worker has stopped."""
        loop = asyncio.get_running_loop()
        for number in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(number, self._on_stop, number.name)
        loop.add_signal_handler(signal.SIGHUP, self._on_reload)
        first = self._generation(config)
        status = await first.start()
        if status is not None and not self.stopping:
            log.error("a worker ended (%s) before it listened; stopping", _status(status))
            return status
        if not self.stopping:
            server = config.server
            host = f"[{server.host}]" if ":" in server.host else server.host
            print(
                f"streamserver {__version__} listening on http://{host}:{server.port} "
                f"({self.count} workers, pids {first.pids()})",
                flush=True,
            )
        reloads = asyncio.create_task(self._reloads())
        await self._stop.wait()
        await reloads
        await asyncio.gather(*(g.finished() for g in self.generations), *self._background)
        log.info("stopped")
        return 1 if self.forced or not self.clean else 0

    async def spawn(self, generation: Generation, slot: int) -> Worker:
        """Start one worker of ``generation`` in ``slot``: ``serve`` with the same file and
        ``--host``/``--port``, its end of a new link, and a session of its own."""
        ours, theirs = socket.socketpair()
        command = [sys.executable, "-m", "streamserver", "serve", "--config", self.path]
        server = self.overrides.get("server", {})
        for option in ("host", "port"):
            if option in server:
                command += [f"--{option}", str(server[option])]
        command += ["--supervisor-fd", str(theirs.fileno())]
        try:
            process = await asyncio.create_subprocess_exec(
                *command, pass_fds=(theirs.fileno(),), start_new_session=True
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()  # the worker has its copy: its end of the link ends with it
        worker = Worker(slot, process, await asyncio.open_connection(sock=ours))
        log.info("%s started (generation %d)", worker, generation.number)
        if self.stopping:  # a stop came while it was being started
            worker.stop()
        elif generation.ended.is_set():
            worker.retire()
        return worker

    def ended(self, worker: Worker, status: int) -> None:
        """Log the end of a worker that was asked to end (the others are logged where they are
        handled); after a stop, a status other than 0 makes the exit status 1."""
        if self.stopping and status != 0 and (worker.listened or status != -signal.SIGTERM):
            self.clean = False  # (one stopped before it listened held no stream)
        if worker.retiring or worker.stopping:
            log.log(
                logging.INFO if status == 0 else logging.WARNING,
                "%s stopped (%s)",
                worker,
                _status(status),
            )

    def _generation(self, config: Config) -> Generation:
        generation = Generation(self, len(self.generations) + 1, config)
        self.generations.append(generation)
        self.current = generation
        return generation

    def _on_stop(self, name: str) -> None:
        running = [w for g in self.generations for w in g.workers]
        if not self.stopping:
            log.info(
                "%s received: stopping %d workers (each drains its streams; a second %s "
                "makes them exit at once)",
                name,
                len(running),
                name,
            )
            self.stopping = True
            for generation in self.generations:
                generation.ended.set()
            for worker in running:
                if not worker.retiring:  # a retiring worker is draining already
                    worker.stop()
        else:
            log.warning("%s received again: the workers exit now, status 1", name)
            self.forced = True
            for worker in running:
                worker.exit()
        self._stop.set()
        self._reload.set()  # wakes the reload loop so that it ends

    def _on_reload(self) -> None:
        if self.stopping:
            log.info("SIGHUP received while stopping: ignored")
            return
        if self._reloading:
            log.info("SIGHUP received during a reload: another follows it")
        self._reload.set()

    async def _reloads(self) -> None:
        while True:
            await self._reload.wait()
            if self.stopping:
                return
            self._reload.clear()
            self._reloading = True
            try:
                await self._reload_once()
            finally:
                self._reloading = False

    async def _reload_once(self) -> None:
        old = self.current
        assert old is not None
        log.info("SIGHUP received: re-reading %s", self.path)
        try:
            config = load_checked(self.path, self.overrides, self.count)
        except ConfigError as exc:
            log.error(
                "reload refused, the running workers stay (pids %s): config error: %s",
                old.pids(),
                exc,
            )
            return
        server_log.configure(config.server, with_pid=True)
        for line in self.describe(config):
            log.info("%s", line)
        new = self._generation(config)
        log.info("reload: starting %d workers on the new config (generation %d)",
                 self.count, new.number)  # fmt: skip
        status = await new.start()
        if self.stopping:
            return
        if status is not None:
            self.current = old
            log.error(
                "reload failed: a new worker ended (%s) before it listened; the running "
                "workers stay (pids %s)",
                _status(status),
                old.pids(),
            )
            return
        log.info(
            "reload: the new workers listen (pids %s); the old ones (pids %s) stop listening "
            "and drain (up to %s s)",
            new.pids(),
            old.pids(),
            old.config.server.shutdown_grace_s,
        )
        await old.retire()
        log.info("reload: the old workers no longer listen; new connections go to the new ones")
        task = asyncio.create_task(self._retired(old))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _retired(self, generation: Generation) -> None:
        await generation.finished()
        log.info("reload complete: the workers of generation %d have stopped", generation.number)


def _status(status: int) -> str:
    if status < 0:
        try:
            return f"killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"killed by signal {-status}"
    return f"exit status {status}"
