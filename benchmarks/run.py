"""Run the benchmark suite: ``make bench`` (``python -m benchmarks.run``).

Every measurement is a fresh server process pinned to CPU 0 (``taskset -c 0``) and a fresh load
generator (``benchmarks/loadgen.py``) pinned to CPU 1, so each run's peak memory (``VmHWM``) is its
own. Repetitions are interleaved: rep 1 of every server, then rep 2 (in a rotated order), and so on,
so a slow minute on the machine does not land on one server. Medians over the repetitions are
reported, and every figure also as a ratio to the raw-asyncio floor measured in the same run.

Servers (all on the standard asyncio event loop, one process each):

- ``raw``: a bare asyncio protocol writing pre-encoded events, the floor (``servers/raw_asyncio.py``);
- ``aiohttp-sse``: aiohttp + aiohttp-sse, a minimal handler (``servers/aiohttp_sse.py``);
- ``fastapi``: FastAPI + sse-starlette on uvicorn (``servers/fastapi_sse.py``; needs the ``bench``
  extra, skipped when it is not installed);
- ``streamserver``: ``streamserver serve --config`` with the generated config of
  ``servers/streamserver_config.py`` (simulated provider, ``production`` formatter, ``raw``
  buffer, ``memory`` and ``prometheus`` sinks);
- ``streamserver-redis``: the same with ``[resume] store = "redis"``, on a ``redis-server`` of its
  own started before it (a fresh one per run, on a free port, no persistence, pinned with the load
  generator to CPU 1: Redis is another service, not the server's core), in the throughput and
  paced workloads only; its figures are also given as ratios to ``streamserver``'s (the memory
  store) of the same run, and Redis's own CPU time per token beside the server's (needs
  ``redis-server`` on the PATH and redis-py, else it is skipped and says so);
- ``streamserver-object``: the same server whose route streams a JSON object as it forms
  (``formatter = "object"``, a pinned ``response_format`` and seed: ``servers/streamserver_config.py``),
  in the ``object`` workload only, beside ``streamserver`` sending the same JSON as plain
  ``production`` tokens: its server CPU per token as a ratio to theirs is the cost of the partial
  objects and the schema check.

The ``resume`` workload times a resume's first replayed event: two streamserver instances on one
Redis, a paced stream started on A and cut, resumed with ``Last-Event-ID`` on B (and, beside it, on
A itself); see ``benchmarks/resume.py``.

Results go to ``benchmarks/results/``: ``results.json`` (every run, every figure), ``report.md``
and ``plot.png``. ``--smoke`` runs a tiny version of everything in seconds (correctness only).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import ctypes.util
import dataclasses
import importlib.util
import json
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

from . import relay
from .report import targets, write_report
from .servers.streamserver_config import OBJECT_PROMPT, object_tokens, write_config

REPO = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
SERVERS = ("raw", "aiohttp-sse", "fastapi", "streamserver")
PROBE_STREAMS = 400
"""The calibration probe's streams (20k tok/s at 50 tokens/s: about a third of what the raw floor
carries on one core here)."""
PROBE_REPS = 3
"""Probes of the floor's capacity; the median is taken (one probe read 49k, 86k and 99k tok/s in
three runs on the same kind of machine, and the calibrated load follows it)."""
CALIBRATED_ROUNDS = 3
"""Streams each client of the calibrated workload runs in turn: a ramp, then a steady state."""
REDIS = "streamserver-redis"
"""streamserver with the Redis stream store (on a redis-server of its own)."""
OBJECT = "streamserver-object"
"""streamserver's route as an object stream (``format=object``) of a pinned schema."""
WITH_REDIS = (*SERVERS, REDIS)
RAW_YIELD = "raw-yield"
"""The raw floor yielding to the loop after every token: what a fair server answers a new stream."""
UVLOOP = "streamserver-uvloop"
"""streamserver on uvloop, beside the same configuration on the standard loop."""
FAIR = ("raw", RAW_YIELD, "streamserver", UVLOOP)
ALL_SERVERS = (*WITH_REDIS, OBJECT, RAW_YIELD, UVLOOP, *relay.RELAY_ONLY)
SERVER_CPU, LOADGEN_CPU = "0", "1"
REDIS_CPU = LOADGEN_CPU
"""Redis runs beside the load generator: on a 2-core machine the other choice is the server's
core, which would charge Redis's work to the server being measured."""
DISTURBED = 0.1
"""Other processes' CPU (per wall second) above which a run is done again."""
RETRY_BUDGET_S = 90
"""Time the suite may spend doing disturbed runs again (it must stay under 10 minutes)."""


@dataclass(frozen=True)
class Workload:
    """One kind of load, run against each of ``servers`` ``reps`` times."""

    name: str
    title: str
    tokens: int
    pace: float
    """Tokens per second per stream; 0 = as fast as possible."""
    connections: int
    streams_per_connection: int = 1
    ramp: float = 0.0
    """Connections opened per second; 0 = all at once."""
    reps: int = 3
    servers: tuple[str, ...] = SERVERS
    relay: bool = False
    """streamserver's ``openai`` provider relaying from the fake upstream (its own process)."""
    series: str = ""
    """Runs that share a series are plotted together, against concurrency."""
    pause_ms: float = 0.0
    """Each client pauses this long between its streams."""
    max_pending: int = 0
    """Open no new connection while this many have no response yet (0 = open-loop ramp)."""
    tick_ms: float = 1.0
    """The load generator looks at its sockets once per tick (0 = wakes for every arrival)."""
    resume_trials: int = 0
    """Not a load: this many cut-and-resume trials per place (``benchmarks/resume.py``)."""
    calibrate: float = 0.0
    """Paced at this fraction of the raw floor's capacity, measured first in the run (a probe
    at a load it carries): the concurrency is set then (``Bench.calibrated``)."""
    json_answer: bool = False
    openai: bool = False
    """The relay workloads (``benchmarks/relay.py``): ``POST /v1/chat/completions``, every relay."""
    tools: bool = False
    """With ``openai``: the request offers a tool, the upstream answers with a fragmented call."""
    upstream_pace: float = 0.0
    """With ``relay``: the fake upstream's tokens per second per stream (0 = unpaced)."""
    """streamserver's answers are the object workload's JSON (``servers/streamserver_config.py``)."""

    @property
    def stream_timeout(self) -> float:
        stream_s = self.tokens / self.pace if self.pace else 0.0
        return 3 * stream_s + 60.0


def object_workload(name: str, title: str, connections: int, streams: int, reps: int) -> Workload:
    """Object streams against the same JSON as plain text, unpaced: ``object_tokens()`` tokens
    each (the same object every time)."""
    tokens = object_tokens()
    return Workload(name, title.format(tokens=tokens), tokens, 0, connections,
                    streams_per_connection=streams, tick_ms=5, reps=reps,
                    servers=("streamserver", OBJECT), json_answer=True)  # fmt: skip


def relay_workloads(smoke: bool) -> list[Workload]:
    """Issue 20's relays (``benchmarks/relay.py``): text and tool-call streams unpaced, 32
    concurrent × 256 tokens (LiteLLM: one stream per client, one repetition), and text at a paced
    100 tokens/s per stream (3,200 tokens/s asked)."""
    if smoke:
        return [
            Workload(
                "relay-text",
                "Smoke: relay text, 2 × 8 tokens",
                8,
                0,
                2,
                reps=1,
                servers=relay.RELAYS,
                relay=True,
                openai=True,
            ),
            Workload(
                "relay-tool",
                "Smoke: relay a tool call, 2 × 8 fragments",
                8,
                0,
                2,
                reps=1,
                servers=relay.RELAYS,
                relay=True,
                openai=True,
                tools=True,
            ),
        ]
    return [
        Workload("relay-text", "Relay text: POST /v1/chat/completions, 32 concurrent × 256 "
                 "tokens, unpaced", 256, 0, 32, streams_per_connection=4, reps=1, tick_ms=5,
                 servers=relay.RELAYS, relay=True, openai=True),
        Workload("relay-tool", "Relay a tool call: 32 concurrent × 256 argument fragments, "
                 "unpaced", 256, 0, 32, streams_per_connection=4, reps=1, tick_ms=5,
                 servers=relay.RELAYS, relay=True, openai=True, tools=True),
        Workload("relay-paced", "Relay text paced: 32 concurrent × 256 tokens at 100 tokens/s",
                 256, 100, 32, reps=1, tick_ms=5, servers=relay.RELAYS, relay=True, openai=True,
                 upstream_pace=100),
    ]  # fmt: skip


def full_suite() -> list[Workload]:
    """What ``make bench`` runs (about 9 minutes on 2 cores: 514 s in the last run)."""
    return [
        Workload("throughput", "Throughput: 64 concurrent × 256 tokens, unpaced", 256, 0, 64,
                 streams_per_connection=12, tick_ms=5, servers=WITH_REDIS),
        Workload("fair", "Fair under saturation: 64 concurrent × 256 tokens, unpaced, against "
                 "the floor that yields after every token", 256, 0, 64, streams_per_connection=6,
                 tick_ms=5, reps=1, servers=FAIR),
        Workload("paced", "Paced: 1000 concurrent × 150 tokens at 50 tokens/s", 150, 50, 1000,
                 ramp=1000, series="paced", servers=WITH_REDIS),
        Workload("calibrated", "Calibrated paced: 150 tokens at 50 tokens/s", 150, 50, 0,
                 ramp=1000, reps=1, servers=("raw", "aiohttp-sse", "streamserver", REDIS),
                 calibrate=0.6),
        Workload("starts", "Starts: 2000 one-token streams, a connection each, at most 20 "
                 "waiting for their headers", 1, 0, 2000, max_pending=20,
                 servers=("raw", "aiohttp-sse", "streamserver")),
        Workload("paced-100", "Paced sweep: 100 concurrent × 150 tokens at 50 tokens/s", 150, 50,
                 100, ramp=1000, reps=1, series="paced"),
        Workload("paced-300", "Paced sweep: 300 concurrent × 150 tokens at 50 tokens/s", 150, 50,
                 300, ramp=1000, reps=1, series="paced"),
        Workload("paced-2000", "Paced sweep: 2000 concurrent × 150 tokens at 50 tokens/s", 150, 50,
                 2000, ramp=2000, reps=1, series="paced"),
        Workload("slow", "Slow: 10,000 concurrent streams × 45 tokens at 1 token/s", 45, 1,
                 10_000, ramp=2000, max_pending=100, reps=1),
        Workload("idle-ttft", "Idle server: one stream at a time (200 streams × 16 tokens)", 16, 0,
                 1, streams_per_connection=200, pause_ms=5, tick_ms=0),
        Workload("relay", "Relay: openai provider ← fake OpenAI upstream, 32 concurrent × 256 "
                 "tokens", 256, 0, 32, streams_per_connection=4, servers=("streamserver",),
                 relay=True, tick_ms=5),
        Workload("resume", "Resume across instances: a paced stream (24 tokens at 50 tokens/s) "
                 "started on A, cut, resumed with Last-Event-ID on B or on A", 24, 50, 1,
                 reps=1, servers=(REDIS,), resume_trials=40),
        *relay_workloads(smoke=False),
        object_workload("object", "Object stream: 64 concurrent × a {tokens}-token JSON object "
                        "(format=object) against the same JSON as plain tokens, unpaced", 64, 6, 3),
    ]  # fmt: skip


LONG_WORKLOADS = ("slow", "paced-100", "paced-300", "paced-2000")
"""What ``make bench`` (``--quick``) leaves out and ``make bench-full`` runs: the 10,000 slow
streams (about 4 minutes: target 20.4) and the paced sweep (about 80 s, plotted only)."""


def smoke_suite() -> list[Workload]:
    """``--smoke``: every server and every code path, tiny (correctness only, no timing)."""
    return [
        Workload("throughput", "Smoke: 4 streams × 8 tokens, unpaced", 8, 0, 4, reps=1,
                 tick_ms=5, servers=WITH_REDIS),
        Workload("paced", "Smoke: 4 streams × 8 tokens at 200 tokens/s", 8, 200, 4, ramp=1000,
                 reps=1, series="paced", servers=WITH_REDIS),
        Workload("relay", "Smoke: relay 4 streams × 8 tokens", 8, 0, 2, streams_per_connection=2,
                 reps=1, servers=("streamserver",), relay=True),
        Workload("resume", "Smoke: 3 resumes per place of a stream of 12 tokens at 100 tokens/s",
                 12, 100, 1, reps=1, servers=(REDIS,), resume_trials=3),
        *relay_workloads(smoke=True),
        object_workload("object", "Smoke: 2 object streams of {tokens} tokens", 2, 1, 1),
        Workload("fair", "Smoke: fair, 4 streams × 8 tokens, unpaced", 8, 0, 4, reps=1,
                 tick_ms=5, servers=FAIR),
        Workload("calibrated", "Smoke: calibrated, 8 tokens at 200 tokens/s (probe: 4 streams)",
                 8, 200, 4, ramp=1000, reps=1,
                 servers=("raw", "aiohttp-sse", "streamserver", REDIS), calibrate=0.6),
        Workload("starts", "Smoke: starts, 8 one-token streams, a connection each", 1, 0, 8,
                 max_pending=2, reps=1, servers=("raw", "aiohttp-sse", "streamserver")),
    ]  # fmt: skip


@dataclass
class Run:
    """One server process measured by one load generator."""

    workload: str
    server: str
    rep: int
    ok: bool = False
    error: str | None = None
    loadgen: dict[str, Any] = field(default_factory=dict)
    upstream_cpu_s: float | None = None
    redis_cpu_s: float | None = None
    """Redis's CPU time (user + system) over the load (``streamserver-redis`` only)."""


class Bench:
    """Starts the processes, runs the workloads, keeps the results."""

    def __init__(self, out: Path, pin: bool, workdir: Path, retry: bool = True) -> None:
        self.out = out
        self.pin = pin
        self.workdir = workdir
        self.python = sys.executable
        self.runs: list[Run] = []
        self.upstream_port = 0
        self.retries = 0
        self.capacity: dict[str, float] = {}
        """The raw floor's capacity measured for a calibrated workload (``calibrated``)."""
        self.retry = retry
        self.retry_spent = 0.0
        self.available = {name: _missing(name) is None for name in ALL_SERVERS}

    def prefix(self, cpu: str) -> list[str]:
        return ["taskset", "-c", cpu] if self.pin else []

    def server_command(
        self,
        server: str,
        workload: Workload,
        port: int,
        redis_url: str | None = None,
        grace_s: float = 0.0,
    ) -> tuple[list[str], Path]:
        """The command line and working directory of ``server`` for ``workload`` (streamserver
        on ``redis_url`` with the Redis store, when given)."""
        if server in ("streamserver", REDIS, OBJECT, UVLOOP):
            directory = Path(tempfile.mkdtemp(prefix="streamserver-", dir=self.workdir))
            upstream = f"http://127.0.0.1:{self.upstream_port}/v1" if workload.relay else None
            config = write_config(
                directory,
                tokens=workload.tokens,
                pace=workload.pace,
                upstream_url=upstream,
                redis_url=redis_url,
                grace_s=grace_s,
                json_answer=workload.json_answer,
                object_stream=server == OBJECT,
            )
            command = ["-m", "streamserver", "serve", "--config", str(config), "--port", str(port)]
            command += ["--loop", "uvloop" if server == UVLOOP else "asyncio"]
            return [*self.prefix(SERVER_CPU), self.python, *command], directory
        module = {
            "raw": "raw_asyncio", RAW_YIELD: "raw_asyncio", "aiohttp-sse": "aiohttp_sse",
            "fastapi": "fastapi_sse",
        }  # fmt: skip
        command = [
            "-m", f"benchmarks.servers.{module[server]}", "--port", str(port),
            "--tokens", str(workload.tokens), "--pace", f"{workload.pace:g}",
        ]  # fmt: skip
        if server == RAW_YIELD:
            command += ["--yield-every", "1"]
        return [*self.prefix(SERVER_CPU), self.python, *command], REPO

    def start_upstream(self, pace: float = 0.0) -> subprocess.Popen[bytes]:
        """``streamserver fake-upstream`` (unpaced unless ``pace``) on the load generator's CPU."""
        self.upstream_port = free_port()
        command = ["-m", "streamserver", "fake-upstream", "--port", str(self.upstream_port)]
        return self.start(
            "fake-upstream",
            [*self.prefix(LOADGEN_CPU), self.python, *command, "--tokens-per-second", f"{pace:g}"],
            REPO,
            self.upstream_port,
        )

    def start_redis(self) -> tuple[subprocess.Popen[bytes], str]:
        """A fresh ``redis-server`` (no persistence) on a free port, pinned to ``REDIS_CPU``;
        returns it and its URL."""
        port = free_port()
        directory = Path(tempfile.mkdtemp(prefix="redis-", dir=self.workdir))
        command = [
            *self.prefix(REDIS_CPU), "redis-server", "--port", str(port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", str(directory),
        ]  # fmt: skip
        process = self.start("redis-server", command, directory, port)
        return process, f"redis://127.0.0.1:{port}/0"

    def run_one(self, workload: Workload, server: str, rep: int) -> Run:
        if workload.resume_trials:
            return self.run_resume(workload, rep)
        run = Run(workload.name, server, rep)
        upstream = redis_process = None
        try:
            if workload.relay:
                upstream = self.start_upstream(workload.upstream_pace)
            redis_url = None
            if server == REDIS:
                redis_process, redis_url = self.start_redis()
            others = [p.pid for p in (upstream, redis_process) if p is not None]
            port = free_port()
            if server == relay.UPSTREAM and upstream is not None:
                process, port, others = upstream, self.upstream_port, []  # no relay: its own TTFT
            elif server in relay.RELAY_ONLY:
                process = self.start_relay(server, port)
            else:
                command, cwd = self.server_command(server, workload, port, redis_url)
                process = self.start(server, command, cwd, port)
            try:
                upstream_cpu = cpu_seconds(upstream.pid) if upstream else None
                redis_cpu = cpu_seconds(redis_process.pid) if redis_process else None
                run.loadgen = self.load(workload, port, process.pid, others, server)
                if upstream is not None and upstream_cpu is not None:
                    after = cpu_seconds(upstream.pid)
                    if after is not None:
                        run.upstream_cpu_s = round(after - upstream_cpu, 3)
                if redis_process is not None and redis_cpu is not None:
                    after = cpu_seconds(redis_process.pid)
                    if after is not None:
                        run.redis_cpu_s = round(after - redis_cpu, 3)
            finally:
                stop(process)
            if "error" in run.loadgen:
                run.error = run.loadgen["error"]
            elif run.loadgen["incomplete"]:
                run.error = (
                    f"{run.loadgen['incomplete']} incomplete streams: {run.loadgen['problems']}"
                )
            run.ok = run.error is None
        except BenchError as exc:
            run.error = str(exc)
        finally:
            for helper in (upstream, redis_process):
                if helper is not None:
                    stop(helper)
        return run

    def run_resume(self, workload: Workload, rep: int) -> Run:
        """The resume trials (``benchmarks/resume.py``): Redis, then instances A and B on it
        (both on the server's CPU, with a grace period so a cut stream goes on), then the trials
        (on the load generator's CPU)."""
        run = Run(workload.name, REDIS, rep)
        processes: list[subprocess.Popen[bytes]] = []
        try:
            redis_process, redis_url = self.start_redis()
            processes.append(redis_process)
            ports = []
            for name in ("A", "B"):
                port = free_port()
                command, cwd = self.server_command(REDIS, workload, port, redis_url, grace_s=5)
                processes.append(self.start(f"{REDIS}-{name}", command, cwd, port))
                ports.append(port)
            command = [
                *self.prefix(LOADGEN_CPU), self.python, "-m", "benchmarks.resume",
                "--a-port", str(ports[0]), "--b-port", str(ports[1]),
                "--tokens", str(workload.tokens), "--trials", str(workload.resume_trials),
                "--stream-timeout", f"{workload.stream_timeout:g}",
            ]  # fmt: skip
            limit = (workload.resume_trials + 1) * 2 * workload.stream_timeout + 30
            run.loadgen = self.subprocess_json(command, limit)
            if "error" in run.loadgen:
                run.error = run.loadgen["error"]
            elif run.loadgen["incomplete"]:
                run.error = f"{run.loadgen['incomplete']} failed trials: {run.loadgen['problems']}"
            run.ok = run.error is None
        except BenchError as exc:
            run.error = str(exc)
        finally:
            for process in reversed(processes):
                stop(process)
        return run

    def start_relay(self, server: str, port: int) -> subprocess.Popen[bytes]:
        """The raw relay floor or the LiteLLM proxy, relaying the fake upstream."""
        upstream = f"http://127.0.0.1:{self.upstream_port}/v1"
        command, cwd, env = relay.command(
            server, self.python, self.prefix(SERVER_CPU), port, upstream, self.workdir
        )
        wait = relay.LITELLM_START_S if server == relay.LITELLM else 30.0
        return self.start(server, command, cwd, port, env=env, wait_s=wait)

    def start(
        self,
        name: str,
        command: list[str],
        cwd: Path,
        port: int,
        env: dict[str, str] | None = None,
        wait_s: float = 30.0,
    ) -> subprocess.Popen[bytes]:
        log = open(self.workdir / f"{name}-{port}.log", "wb")  # noqa: SIM115 (lives with the process)
        # This checkout first on the path, wherever the process runs: else a streamserver
        # started in its temporary directory imports whichever one the venv has installed.
        env = {**_env(), **env} if env else _env()
        process = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_child_setup,
        )
        log.close()
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise BenchError(
                    f"{name} exited with {process.returncode}: {self.tail(name, port)}"
                )
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                return process
            time.sleep(0.05)
        stop(process)
        raise BenchError(
            f"{name} did not listen on port {port} within {wait_s:g} s: {self.tail(name, port)}"
        )

    def tail(self, name: str, port: int) -> str:
        path = self.workdir / f"{name}-{port}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return text[-1500:].strip() or "(no output)"

    def load(
        self, workload: Workload, port: int, server_pid: int, others: list[int], server: str = ""
    ) -> dict[str, Any]:
        path = "/v1/stream?prompt=" + (
            "+".join(["tok"] * workload.tokens) if workload.relay else quote_plus(OBJECT_PROMPT)
        )
        command = [
            *self.prefix(LOADGEN_CPU), self.python, "-m", "benchmarks.loadgen",
            "--port", str(port), "--path", path, "--tokens", str(workload.tokens),
            "--connections", str(workload.connections),
            "--streams-per-connection", str(workload.streams_per_connection),
            "--ramp", f"{workload.ramp:g}", "--server-pid", str(server_pid),
            "--stream-timeout", f"{workload.stream_timeout:g}",
            "--tick-ms", f"{workload.tick_ms:g}",
            "--max-pending", str(workload.max_pending),
            "--pause-ms", f"{workload.pause_ms:g}",
            *(f"--exclude-pid={pid}" for pid in others),
        ]  # fmt: skip
        if workload.openai:
            command += relay.loadgen_args(workload.tools)
            spc = relay.streams_per_connection(server, workload.streams_per_connection)
            command[command.index("--streams-per-connection") + 1] = str(spc)
        ramp_s = workload.connections / workload.ramp if workload.ramp else 0
        limit = ramp_s + workload.stream_timeout * workload.streams_per_connection + 60
        return self.subprocess_json(command, limit)

    def subprocess_json(self, command: list[str], limit: float) -> dict[str, Any]:
        """Run the load generator (or the resume trials) and read its JSON summary."""
        try:
            done = subprocess.run(
                command,
                cwd=REPO,
                env=_env(),
                capture_output=True,
                timeout=limit,
                preexec_fn=_child_setup,
            )
        except subprocess.TimeoutExpired:
            raise BenchError(f"the load generator did not finish within {limit:.0f} s") from None
        try:
            result: dict[str, Any] = json.loads(done.stdout)
        except ValueError:
            raise BenchError(
                f"the load generator failed ({done.returncode}): "
                f"{done.stderr.decode(errors='replace')[-1500:]}"
            ) from None
        return result

    def suite(self, workloads: list[Workload], reps: int | None) -> None:
        for index, workload in enumerate(workloads):
            if workload.calibrate:
                workloads[index] = workload = self.calibrated(workload)
            servers = [s for s in workload.servers if self.available[s]]
            for rep in range(reps or workload.reps):
                # Rotate the order each repetition, so no server always runs first or last.
                shift = rep % len(servers)
                for server in servers[shift:] + servers[:shift]:
                    self.runs.append(self.measured(workload, server, rep))

    def calibrated(self, workload: Workload) -> Workload:
        """``workload`` with its concurrency set to ``calibrate`` × the raw floor's capacity at its
        pace, measured now. The capacity is the rate at which the floor's core would be fully
        busy: a probe at a load it carries (``PROBE_STREAMS`` at the pace, or the smoke run's
        own count), its delivered rate over its core's busy share (kernel work included). An
        overload probe overstates it: a server that falls behind sends several tokens per write
        (raw delivered 91.5k tok/s to 4000 paced streams, then ran 92% busy at 55k)."""
        streams = workload.connections or PROBE_STREAMS
        probe = replace(workload, name="calibrate", connections=streams, calibrate=0.0)
        probes = sorted(
            # A smoke run gives its own count of streams and probes once.
            (self.probe(probe, rep) for rep in range(1 if workload.connections else PROBE_REPS)),
            key=lambda p: p["tokens_per_s"],
        )
        median = probes[len(probes) // 2]
        rate, core, own, busy = (median[k] for k in ("rate", "core", "own", "busy"))
        capacity, measured = median["tokens_per_s"], median["from_busy_share"]
        if not measured:
            print(f"  calibrated: the floor's core busy share ({busy:.0%}) is not usable "
                  f"(unpinned, or the probe saturated it): its delivered rate is taken as the "
                  "capacity, a lower bound", flush=True)  # fmt: skip
        connections = max(1, round(workload.calibrate * capacity / workload.pace))
        # Streams arrive at the rate that keeps that many live (concurrency over a stream's
        # length), each client running its streams back to back: the first round is the ramp,
        # the later ones the steady state. Opened all at 1000 a second instead, the ramp alone
        # is an overload (1,000 starts a second at ~1 ms of CPU each), whatever the token load.
        arrivals = connections * workload.pace / workload.tokens
        each = ", ".join(f"{p['tokens_per_s']:,.0f}" for p in probes)
        print(f"  calibrated: raw delivered {rate:,.0f} tok/s to {streams} streams, its core "
              f"{busy:.0%} busy: capacity {capacity:,.0f} tok/s (the median of {each}); "
              f"{workload.calibrate:.0%} of it is {connections} streams, arriving at "
              f"{arrivals:,.0f} a second", flush=True)  # fmt: skip
        self.capacity = {"probe_streams": streams, "probe_tokens_per_s": rate,
                         "probe_core_busy": core, "probe_server_cpu": own,
                         "probe_busy": busy, "tokens_per_s": capacity,
                         "from_busy_share": measured, "arrivals_per_s": arrivals,
                         "probes": [p["tokens_per_s"] for p in probes]}  # fmt: skip
        title = f"{workload.title} ({connections} concurrent = {workload.calibrate:.0%} of " \
            f"{capacity:,.0f} tok/s, arriving at {arrivals:,.0f} a second, " \
            f"{CALIBRATED_ROUNDS} in turn per client)"  # fmt: skip
        return replace(workload, connections=connections, title=title, ramp=arrivals,
                       streams_per_connection=CALIBRATED_ROUNDS)  # fmt: skip

    def probe(self, probe: Workload, rep: int) -> dict[str, Any]:
        """One probe of the raw floor: its delivered rate, its core's busy share, and the
        capacity they give (``from_busy_share``: else the rate itself, a lower bound)."""
        run = self.measured(probe, "raw", rep)
        rate = run.loadgen.get("delivered_per_s") or run.loadgen.get("tokens_per_s") or 0.0
        core = run.loadgen.get("core_busy", {}).get("cpu" + SERVER_CPU) or 0.0
        own = (run.loadgen.get("server") or {}).get("cpu_util") or 0.0
        # The core is at least as busy as the one process pinned to it: its /proc/stat share has
        # read lower here (2.5% in one probe whose server used about 20% of a CPU).
        busy = max(core, own)
        measured = bool(self.pin and 0.05 < busy < 0.9)  # else the probe's rate (a lower bound)
        return {"rate": rate, "core": core, "own": own, "busy": busy, "from_busy_share": measured,
                "tokens_per_s": rate / busy if measured else rate}  # fmt: skip

    def measured(self, workload: Workload, server: str, rep: int) -> Run:
        """One run. While other processes on the machine took more than ``DISTURBED`` of a CPU
        during it, it is done again once they are quiet: twice per run at most, only for runs
        shorter than 20 s, and within ``RETRY_BUDGET_S`` for the whole suite."""
        tries = 0
        while True:
            began = time.monotonic()
            run = self.run_one(workload, server, rep)
            took = time.monotonic() - began
            other = run.loadgen.get("other_cpu") or 0
            again = (
                other > DISTURBED
                and tries < 2
                and took < 20
                and self.retry
                and self.retry_spent < RETRY_BUDGET_S
            )
            status = "ok" if run.ok else f"FAILED: {run.error}"
            if other > DISTURBED:
                status += f"; other processes used {other:.0%} of a CPU" + (
                    ": again" if again else ""
                )
            print(
                f"  {workload.name:11} rep {rep + 1} {server:18} "
                f"{took:5.1f} s  {_headline(run)}  {status}",
                flush=True,
            )
            if not again:
                return run
            tries += 1
            self.retries += 1
            wait_for_quiet(timeout=20)
            self.retry_spent += time.monotonic() - began


class BenchError(Exception):
    """A run could not be measured (a process failed to start, or timed out)."""


def _missing(server: str) -> str | None:
    """Why ``server`` cannot run here, or None."""
    if server == REDIS and shutil.which("redis-server") is None:
        return "redis-server is not installed (apt-get install redis-server)"
    if server in relay.RELAY_ONLY:
        return relay.missing(server)
    needs = {
        "fastapi": ("fastapi", "sse_starlette", "uvicorn", "httptools"),
        REDIS: ("redis",),
        UVLOOP: ("uvloop",),
    }.get(server, ())
    for module in needs:
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install -e '.[bench]')"
    return None


def _env() -> dict[str, str]:
    """The environment with the repository importable (after any PYTHONPATH already set)."""
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": f"{path}{os.pathsep}{REPO}" if path else str(REPO)}


def _child_setup() -> None:
    """In each server and load generator before it starts: the open-file limit raised to the hard
    limit, and SIGTERM when this runner dies, however it dies (Linux ``PR_SET_PDEATHSIG``), so a
    killed run leaves no server behind."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


_PR_SET_PDEATHSIG = 1


def _headline(run: Run) -> str:
    lg = run.loadgen
    if lg.get("resume_ms"):
        times = lg["resume_ms"]
        return (
            "  ".join(
                f"resume on {place}: p50 {t['p50']:.1f} ms p99 {t['p99']:.1f} ms"
                for place, t in times.items()
                if t
            )
            + f"  {lg['complete']}/{lg['streams']} complete"
        )
    if not lg or "tokens_per_s" not in lg:
        return ""
    ttft = (lg.get("ttft_ms") or {}).get("p99")
    server = lg.get("server") or {}
    return (
        f"{lg['tokens_per_s']:>9.0f} tok/s  ttft p99 {ttft if ttft is not None else '-':>8} ms  "
        f"peak {server.get('peak_rss_kib', 0) / 1024:5.1f} MiB  loadgen cpu "
        f"{lg.get('loadgen_cpu', 0) * 100:3.0f}%  {lg['complete']}/{lg['streams']} complete"
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (streamserver drains), then SIGKILL after 10 s."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def cpu_seconds(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def background_load(seconds: float = 1.0) -> dict[str, float]:
    """How busy each CPU is with nothing of ours running (other work on the machine)."""

    def read() -> dict[str, tuple[int, int]]:
        times = {}
        with open("/proc/stat", encoding="ascii") as f:
            for line in f:
                if line.startswith("cpu") and line[3].isdigit():
                    name, *values = line.split()
                    numbers = [int(v) for v in values[:8]]
                    times[name] = (sum(numbers) - numbers[3] - numbers[4], sum(numbers))
        return times

    try:
        before = read()
        time.sleep(seconds)
        after = read()
    except OSError:
        return {}
    return {
        name: round(
            (after[name][0] - before[name][0]) / max(1, after[name][1] - before[name][1]), 3
        )
        for name in after
    }


def wait_for_quiet(timeout: float) -> None:
    """Wait (up to ``timeout``) until no CPU is more than ``DISTURBED`` busy for a second."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if max(background_load().values(), default=0) <= DISTURBED:
            return


def environment(pin: bool) -> dict[str, Any]:
    """What the figures depend on: machine, versions, commit."""
    versions = {}
    for package in ("aiohttp", "aiohttp-sse", "fastapi", "sse-starlette", "starlette", "uvicorn",
                    "httptools"):  # fmt: skip
        with contextlib.suppress(Exception):
            from importlib.metadata import version

            versions[package] = version(package)
    cpu = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
        cpu = next(
            (line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), ""
        )
    commit = ""
    with contextlib.suppress(Exception):
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
        # Changed files make the figures another commit's, except the results being rewritten.
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--", ".", ":!benchmarks/results"],
            cwd=REPO,
            capture_output=True,
            text=True,
        ).stdout.strip()
        commit += "-dirty" if changed else ""
    return {
        "python": platform.python_version(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "pinned": pin,
        "versions": versions,
        "commit": commit,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the streamserver benchmark suite.")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    parser.add_argument("--smoke", action="store_true", help="tiny workloads, correctness only")
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"leave out {', '.join(LONG_WORKLOADS)} (make bench: under 10 minutes)",
    )
    parser.add_argument("--only", nargs="*", help="workload names to run")
    parser.add_argument("--servers", nargs="*", choices=ALL_SERVERS, help="servers to run")
    parser.add_argument("--reps", type=int, help="override every workload's repetitions")
    parser.add_argument("--no-pin", action="store_true", help="do not pin with taskset")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="rewrite report.md and plot.png from results.json",
    )
    args = parser.parse_args(argv)
    # A SIGTERM unwinds like Ctrl-C: the current server is stopped and the results so far written.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    if args.report_only:
        results = json.loads((args.out / "results.json").read_text())
        results["summary"] = summarise(results)
        results["targets"] = targets(results)
        (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
        write_report(results, args.out)
        return 0

    pin = not args.no_pin and shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2
    workloads = smoke_suite() if args.smoke else full_suite()
    if args.quick:
        workloads = [w for w in workloads if w.name not in LONG_WORKLOADS]
    if args.only:
        workloads = [w for w in workloads if w.name in args.only]
    if args.servers:
        workloads = [
            dataclasses.replace(w, servers=kept)
            for w in workloads
            if (kept := tuple(s for s in w.servers if s in args.servers))
        ]
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-") as workdir:
        bench = Bench(args.out, pin, Path(workdir), retry=not args.smoke)
        skipped = {name: why for name in ALL_SERVERS if (why := _missing(name))}
        for name, why in skipped.items():
            print(f"skipping {name}: {why}", flush=True)
        before = {} if args.smoke else background_load()
        print(f"background CPU load before: {before}", flush=True)
        try:
            bench.suite(workloads, args.reps)
        finally:
            after = {} if args.smoke else background_load()
            results = {
                "smoke": args.smoke,
                "environment": environment(pin),
                "background_load": {"before": before, "after": after},
                "skipped": skipped,
                "duration_s": round(time.monotonic() - started, 1),
                "retries": bench.retries,
                "capacity": bench.capacity,
                "workloads": [asdict(w) for w in workloads],
                "runs": [asdict(r) for r in bench.runs],
            }
            results["summary"] = summarise(results)
            results["targets"] = targets(results)
            (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    write_report(results, args.out)
    failed = [r for r in bench.runs if not r.ok]
    print(f"{len(bench.runs)} runs, {len(failed)} failed, {results['duration_s']} s; "
          f"report: {args.out / 'report.md'}")  # fmt: skip
    return 1 if failed else 0


# The figures reported per workload and server: medians over the repetitions.
_FIGURES = {
    "tokens_per_s": ("tokens_per_s",),
    "delivered_per_s": ("delivered_per_s",),
    "ttft_p50_ms": ("ttft_ms", "p50"),
    "ttft_p99_ms": ("ttft_ms", "p99"),
    "headers_p50_ms": ("headers_ms", "p50"),
    "headers_p99_ms": ("headers_ms", "p99"),
    "gap_p99_ms": ("gap_ms", "p99"),
    "connect_p99_ms": ("connect_ms", "p99"),
    "bytes_per_event": ("bytes_per_event",),
    "server_cpu_util": ("server", "cpu_util"),
    "server_cpu_us_per_token": ("server", "cpu_us_per_token"),
    "server_core_busy": ("core_busy", "cpu" + SERVER_CPU),
    "idle_rss_kib": ("server", "idle_rss_kib"),
    "peak_rss_kib": ("server", "peak_rss_kib"),
    "plateau_rss_kib": ("server", "plateau_rss_kib"),
    "loadgen_cpu": ("loadgen_cpu",),
    "loop_busy_p99_ms": ("loop_busy_ms", "p99"),
    "read_lag_p99_ms": ("read_lag_ms", "p99"),
    "loadgen_sys_us_per_read": ("loadgen_sys_us_per_read",),
    "other_cpu": ("other_cpu",),
    "listen_overflows": ("listen_overflows",),
    "ramp_s": ("ramp_s",),
    "all_live_s": ("all_live_s",),
    "loadgen_core_busy": ("core_busy", "cpu" + LOADGEN_CPU),
    # the resume trials (benchmarks/resume.py)
    **{
        f"resume_{place}_{q}_ms": ("resume_ms", place, q)
        for place in ("other", "same")
        for q in ("p50", "p90", "p99", "max")
    },
    "resume_connect_other_p99_ms": ("resume_connect_ms", "other", "p99"),
    "resume_connect_same_p99_ms": ("resume_connect_ms", "same", "p99"),
    "resume_start_p50_ms": ("start_ms", "p50"),
}


_RATIOS = (
    "tokens_per_s",
    "delivered_per_s",
    "ttft_p50_ms",
    "ttft_p99_ms",
    "headers_p99_ms",
    "gap_p99_ms",
    "peak_rss_kib",
    "kib_per_stream",
    "server_cpu_us_per_token",
)


def _get(data: dict[str, Any], path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)  # type: ignore[assignment]
    return data


def summarise(results: dict[str, Any]) -> dict[str, Any]:
    """Per workload and server: medians of every figure over the repetitions, and ratios to raw."""
    summary: dict[str, Any] = {}
    for workload in results["workloads"]:
        per_server: dict[str, Any] = {}
        for server in workload["servers"]:
            runs = [
                r
                for r in results["runs"]
                if r["workload"] == workload["name"] and r["server"] == server
            ]
            if not runs:
                continue
            figures: dict[str, Any] = {
                "reps": len(runs),
                "failed": sum(1 for r in runs if not r["ok"]),
                "streams": sum(r["loadgen"].get("streams", 0) for r in runs),
                "complete": sum(r["loadgen"].get("complete", 0) for r in runs),
                "loadgen_cpu_max": max(
                    (r["loadgen"].get("loadgen_cpu") or 0 for r in runs), default=None
                ),
                "read_lag_p99_max_ms": max(
                    (_get(r["loadgen"], ("read_lag_ms", "p99")) or 0 for r in runs), default=None
                ),
                "other_cpu_max": max(
                    (r["loadgen"].get("other_cpu") or 0 for r in runs), default=None
                ),
            }
            for name, path in _FIGURES.items():
                values = [v for r in runs if (v := _get(r["loadgen"], path)) is not None]
                figures[name] = statistics.median(values) if values else None
            idle, plateau = figures["idle_rss_kib"], figures["plateau_rss_kib"]
            if idle is not None and plateau is not None and workload["connections"] >= 100:
                figures["kib_per_stream"] = (plateau - idle) / workload["connections"]
            upstream = [r["upstream_cpu_s"] for r in runs if r.get("upstream_cpu_s") is not None]
            if upstream:
                figures["upstream_cpu_s"] = statistics.median(upstream)
            redis_us = [
                r["redis_cpu_s"] / r["loadgen"]["tokens"] * 1e6
                for r in runs
                if r.get("redis_cpu_s") is not None and r["loadgen"].get("tokens")
            ]
            if redis_us:
                figures["redis_cpu_us_per_token"] = round(statistics.median(redis_us), 3)
            figures["asked_per_s"] = (
                workload["connections"] * workload["pace"] if workload["pace"] else None
            )
            per_server[server] = figures
        raw = per_server.get("raw")
        for figures in per_server.values():
            figures["vs_raw"] = {
                name: round(figures[name] / raw[name], 3)
                for name in _RATIOS
                if raw is not None
                and isinstance(figures.get(name), int | float)
                and isinstance(raw.get(name), int | float)
                and raw[name]
            }
        memory = per_server.get("streamserver")
        for variant, key in ((REDIS, "vs_memory"), (OBJECT, "vs_text")):
            if variant in per_server and memory is not None:
                figures = per_server[variant]
                figures[key] = {
                    name: round(figures[name] / memory[name], 3)
                    for name in _RATIOS
                    if isinstance(figures.get(name), int | float)
                    and isinstance(memory.get(name), int | float)
                    and memory[name]
                }
        summary[workload["name"]] = per_server
    return summary


if __name__ == "__main__":
    sys.exit(main())
