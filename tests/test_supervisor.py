"""``streamserver serve --workers N``, run for real: a supervisor process and its workers on one
port, real HTTP on 127.0.0.1, signals, a reload under load.

The running supervisor is given the Redis stores (a real redis-server, the ``redis_url``
fixture), since ``--workers 2`` refuses the embedded ones; ``GET /test/worker`` (the test plugin
``shared_for_tests``) names the process that served a request.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tomllib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from conftest import REPO
from httpx_sse import aconnect_sse

NOISE = ("Traceback", "Task was destroyed", "Unclosed")
REDIS_URL = ""
"""The test's Redis (set by the autouse fixture below)."""


@pytest.fixture(autouse=True)
def _redis(redis_url: str) -> None:
    global REDIS_URL
    REDIS_URL = redis_url


def shared_stores() -> str:
    """Every store on the test's Redis, and the route that names the serving process."""
    return (
        '[plugins]\nmodules = ["shared_for_tests"]\n'
        f'[redis]\nurl = "{REDIS_URL}"\nlease_s = 1\n'
        '[resume]\nstore = "redis"\n'
        '[limits]\nstore = "redis"\n'
        '[conversations]\nstore = "redis"\n'
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def environment() -> dict[str, str]:
    """The test plugins importable by name in the server's processes."""
    paths = [str(REPO), str(REPO / "tests" / "plugin_fixtures"), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}


def write_config(
    tmp_path: Path,
    port: int,
    *,
    shared: bool = True,
    grace_s: float = 1,
    simulated: str = "tokens_per_second = 0\nanswer_tokens = 20",
    extra: str = "",
) -> Path:
    path = tmp_path / "config.toml"
    (tmp_path / "plugins").mkdir(exist_ok=True)
    path.write_text(
        f'[server]\nport = {port}\nplugins_dir = "{tmp_path / "plugins"}"\n'
        f"shutdown_grace_s = {grace_s}\n"
        f"[providers.simulated]\nttft_ms = 0\njitter = 0\n{simulated}\n"
        + (shared_stores() if shared else f'[conversations.sqlite]\npath = "{tmp_path / "c.sqlite3"}"\n')
        + extra,
        encoding="utf-8",
    )  # fmt: skip
    return path


def port_of(config: Path) -> int:
    return int(tomllib.loads(config.read_text())["server"]["port"])


def run_serve(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamserver", "serve", *args],
        cwd=cwd, env=environment(), capture_output=True, text=True, timeout=30,
    )  # fmt: skip


class Supervised:
    """A running ``serve --workers N``: its process, its port, and its stderr as it comes."""

    def __init__(self, process: asyncio.subprocess.Process, port: int) -> None:
        self.process = process
        self.port = port
        self.lines: list[str] = []
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process.stderr is not None
        while line := await self.process.stderr.readline():
            self.lines.append(line.decode())

    @property
    def stderr(self) -> str:
        return "".join(self.lines)

    async def log_line(self, pattern: str, timeout: float = 30) -> re.Match[str]:  # noqa: ASYNC109
        """The first log line matching ``pattern`` (waits for it, bounded)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            for line in self.lines:
                if match := re.search(pattern, line):
                    return match
            if asyncio.get_running_loop().time() > deadline or self._reader.done():
                raise AssertionError(f"no log line like {pattern!r} in:\n{self.stderr}")
            await asyncio.sleep(0.02)

    def signal(self, number: int) -> None:
        self.process.send_signal(number)

    async def exit_status(self) -> int:
        status = await asyncio.wait_for(self.process.wait(), timeout=30)
        await asyncio.wait_for(self._reader, timeout=10)
        return status


Start = Callable[..., Awaitable[Supervised]]


@pytest.fixture
async def supervised(tmp_path: Path) -> AsyncIterator[Start]:
    """Start ``serve --config <config> --workers N``; returns once its "listening" line is out."""
    started: list[Supervised] = []

    async def start(config: Path, workers: int = 2) -> Supervised:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "streamserver", "serve", "--config", str(config),
            "--workers", str(workers), cwd=tmp_path, env=environment(),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        server = Supervised(process, port_of(config))
        started.append(server)
        assert process.stdout is not None
        banner = await asyncio.wait_for(process.stdout.readline(), timeout=60)
        assert (
            f"listening on http://127.0.0.1:{server.port} ({workers} workers" in banner.decode()
        ), server.stderr
        return server

    yield start
    for server in started:
        if server.process.returncode is None:
            server.process.kill()  # the workers retire by themselves once their link ends
            await server.process.wait()


async def serving_pids(port: int, requests: int = 60) -> set[int]:
    """The workers that served ``requests`` requests, each on a new connection (the kernel picks
    a worker per connection)."""
    limits = httpx.Limits(max_keepalive_connections=0)
    pids = set()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits) as client:
        for _ in range(requests):
            pids.add((await client.get("/test/worker")).json()["pid"])
    return pids


async def both_pids(port: int) -> set[int]:
    """The two workers' pids, asking until both have answered (bounded)."""
    pids: set[int] = set()
    for _ in range(10):
        pids |= await serving_pids(port, 20)
        if len(pids) == 2:
            return pids
    raise AssertionError(f"only {pids} answered")


async def read_stream(
    client: httpx.AsyncClient, params: dict[str, str], started: asyncio.Event | None = None
) -> list[tuple[str, str, dict]]:
    """Every event of one SSE stream: ``(name, id, data)``."""
    events = []
    async with aconnect_sse(client, "GET", "/v1/stream", params=params) as source:
        assert source.response.status_code == 200, await source.response.aread()
        async for event in source.aiter_sse():
            events.append((event.event, event.id, json.loads(event.data)))
            if event.event == "token" and started is not None:
                started.set()
    return events


def test_workers_below_one_is_a_usage_error(tmp_path):
    for count in ("0", "-2", "two"):
        result = run_serve("--config", str(write_config(tmp_path, free_port())),
                           "--workers", count, cwd=tmp_path)  # fmt: skip
        assert result.returncode == 2
        assert "argument --workers: expected a whole number of processes, 1 or more" in (
            result.stderr
        )
        assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("key", "section"),
    [
        ("resume.store", '[resume]\nstore = "memory"\n'),
        ("limits.store", '[limits]\nstore = "memory"\n'),
        ("conversations.store", '[conversations]\nstore = "sqlite"\n'),
    ],
)
def test_a_store_each_process_keeps_for_itself_is_refused_with_several_workers(
    tmp_path, key, section
):
    text = write_config(tmp_path, free_port()).read_text()
    # Everything shared but the one store under test.
    text = text.replace(f'[{key.split(".")[0]}]\nstore = "redis"\n', section)
    config = tmp_path / "config.toml"
    config.write_text(text)
    result = run_serve("--config", str(config), "--workers", "2", cwd=tmp_path)

    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"streamserver: config error: {config}: {key}: expected a store")
    assert 'with --workers 2: "redis", with a [redis] section' in line
    assert "Traceback" not in result.stderr


def test_port_0_is_refused_with_several_workers(tmp_path):
    config = write_config(tmp_path, 0)
    result = run_serve("--config", str(config), "--workers", "3", cwd=tmp_path)

    assert result.returncode == 2
    assert f"{config}: server.port: expected a fixed port with --workers 3" in result.stderr


def test_several_workers_on_a_port_in_use_exit_1_saying_so(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_serve("--config", str(write_config(tmp_path, port)), "--workers", "2",
                           cwd=tmp_path)  # fmt: skip

    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "before it listened; stopping" in result.stderr


async def test_both_workers_serve_and_sigterm_drains_both_then_exits_0(supervised, tmp_path):
    slow = "tokens_per_second = 20\nanswer_tokens = 10000"
    server = await supervised(write_config(tmp_path, free_port(), simulated=slow))
    pids = await both_pids(server.port)
    limits = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", timeout=30,
                                 limits=limits) as client:  # fmt: skip
        started = [asyncio.Event() for _ in range(8)]
        readers = [asyncio.create_task(read_stream(client, {"prompt": "hi"}, s)) for s in started]
        await asyncio.wait_for(asyncio.gather(*(s.wait() for s in started)), timeout=30)
        server.signal(signal.SIGTERM)
        results = await asyncio.wait_for(asyncio.gather(*readers), timeout=30)

    assert await server.exit_status() == 0, server.stderr
    for events in results:  # cut by the drain, as one process does it
        assert [name for name, _, _ in events[-2:]] == ["error", "stream_end"]
        assert events[-2][2]["code"] == "server_shutdown"
    for pid in pids:
        await server.log_line(rf"streamserver\[{pid}\]: drained in")
        await server.log_line(rf"streamserver\[{pid}\]: stopped")
    drained = [int(m) for m in re.findall(r"draining: (\d+) live streams", server.stderr)]
    assert len(drained) == 2 and sum(drained) == 8
    assert not any(noise in server.stderr for noise in NOISE), server.stderr


async def test_sigterm_to_every_process_at_once_still_drains(supervised, tmp_path):
    # systemd's default KillMode signals the whole group: the supervisor's own stop must not
    # count as each worker's second signal.
    paced = "tokens_per_second = 20\nanswer_tokens = 30"
    server = await supervised(write_config(tmp_path, free_port(), grace_s=30, simulated=paced))
    pids = await both_pids(server.port)
    limits = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", timeout=30,
                                 limits=limits) as client:  # fmt: skip
        started = [asyncio.Event() for _ in range(6)]
        readers = [asyncio.create_task(read_stream(client, {"prompt": "hi"}, s)) for s in started]
        await asyncio.wait_for(asyncio.gather(*(s.wait() for s in started)), timeout=30)
        for pid in (server.process.pid, *pids):
            os.kill(pid, signal.SIGTERM)
        results = await asyncio.wait_for(asyncio.gather(*readers), timeout=30)

    assert await server.exit_status() == 0, server.stderr
    for events in results:
        assert events[-1][0] == "stream_end" and events[-1][2]["finish_reason"] == "stop"
    assert "exiting now" not in server.stderr


async def test_a_second_sigterm_makes_the_workers_exit_at_once_with_status_1(supervised, tmp_path):
    endless = "tokens_per_second = 20\nanswer_tokens = 10000"
    server = await supervised(write_config(tmp_path, free_port(), grace_s=60, simulated=endless))
    await both_pids(server.port)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", timeout=30) as client:
        started = asyncio.Event()
        reader = asyncio.create_task(read_stream(client, {"prompt": "hi"}, started))
        await asyncio.wait_for(started.wait(), timeout=30)
        server.signal(signal.SIGTERM)
        draining = await server.log_line(r"streamserver\[(\d+)\]: draining: 1 live streams")
        server.signal(signal.SIGTERM)
        assert await server.exit_status() == 1
        with pytest.raises(httpx.HTTPError):  # cut, not ended
            await asyncio.wait_for(reader, timeout=30)
    await server.log_line(rf"streamserver\[{draining[1]}\]: the supervisor asks to exit now")


async def test_a_worker_that_dies_is_replaced(supervised, tmp_path):
    server = await supervised(write_config(tmp_path, free_port()))
    killed, kept = sorted(await both_pids(server.port))
    os.kill(killed, signal.SIGKILL)

    await server.log_line(rf"\(pid {killed}\) ended unexpectedly \(killed by SIGKILL\); "
                          r"starting another in 0\.5 s")  # fmt: skip
    replaced = await server.log_line(r"\(pid (\d+)\) listening on .* \(in place of the one")
    new = int(replaced[1])
    assert await both_pids(server.port) == {kept, new}
    server.signal(signal.SIGTERM)
    assert await server.exit_status() == 0, server.stderr


async def test_sighup_with_a_config_that_does_not_validate_keeps_the_workers(supervised, tmp_path):
    config = write_config(tmp_path, free_port())
    server = await supervised(config)
    pids = await both_pids(server.port)
    config.write_text(config.read_text().replace("answer_tokens = 20", "answer_tokens = -3"))
    server.signal(signal.SIGHUP)

    refused = await server.log_line(r"reload refused, the running workers stay .*")
    assert f"config error: {config}: providers.simulated.answer_tokens: expected" in refused[0]
    assert "starting 2 workers" not in server.stderr
    assert await serving_pids(server.port) == pids
    server.signal(signal.SIGTERM)
    assert await server.exit_status() == 0, server.stderr


async def test_a_reload_whose_new_workers_cannot_listen_keeps_the_old_ones(supervised, tmp_path):
    config = write_config(tmp_path, free_port())
    server = await supervised(config)
    pids = await both_pids(server.port)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        text = config.read_text().replace(
            f"port = {server.port}", f"port = {taken.getsockname()[1]}"
        )
        config.write_text(text)
        server.signal(signal.SIGHUP)
        await server.log_line(r"reload failed: a new worker ended \(exit status 1\) before it "
                              r"listened; the running workers stay")  # fmt: skip

    assert await serving_pids(server.port) == pids
    server.signal(signal.SIGTERM)
    assert await server.exit_status() == 0, server.stderr


async def test_workers_whose_supervisor_is_killed_stop_listening_and_exit(supervised, tmp_path):
    server = await supervised(write_config(tmp_path, free_port()))
    pids = await both_pids(server.port)
    server.process.kill()
    await server.exit_status()

    for pid in pids:
        await server.log_line(rf"streamserver\[{pid}\]: stopped")
    async with httpx.AsyncClient() as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(f"http://127.0.0.1:{server.port}/health")


async def test_sighup_under_50_streams_completes_each_once_and_then_serves_the_new_config(
    supervised, tmp_path
):
    # About 4 s per stream on the old config; the new one answers 200 tokens at once.
    config = write_config(tmp_path, free_port(), grace_s=60,
                          simulated="tokens_per_second = 10\nanswer_tokens = 40")  # fmt: skip
    server = await supervised(config)
    old_pids = await both_pids(server.port)
    base_url = f"http://127.0.0.1:{server.port}"
    async with httpx.AsyncClient(base_url=base_url, timeout=60,
                                 limits=httpx.Limits(max_connections=100)) as client:  # fmt: skip
        started = [asyncio.Event() for _ in range(50)]
        readers = [asyncio.create_task(read_stream(client, {"prompt": f"question {i}"}, s))
                   for i, s in enumerate(started)]  # fmt: skip
        await asyncio.wait_for(asyncio.gather(*(s.wait() for s in started)), timeout=30)
        config.write_text(config.read_text().replace(
            "tokens_per_second = 10\nanswer_tokens = 40", "tokens_per_second = 0\nanswer_tokens = 200"))  # fmt: skip
        server.signal(signal.SIGHUP)
        listening = await server.log_line(r"reload: the new workers listen \(pids (\d+), (\d+)\)")
        await server.log_line(r"reload: the old workers no longer listen")
        new_pids = {int(listening[1]), int(listening[2])}

        async with httpx.AsyncClient(base_url=base_url, timeout=30) as fresh:
            after = await asyncio.gather(
                *(read_stream(fresh, {"prompt": f"after {i}"}) for i in range(10))
            )
        served_after = await serving_pids(server.port)
        results = await asyncio.wait_for(asyncio.gather(*readers), timeout=60)
    await server.log_line(r"reload complete: the workers of generation 1 have stopped")

    assert served_after <= new_pids and not served_after & old_pids
    for events in after:  # the new config's answer
        assert events[-1][0] == "stream_end" and events[-1][2]["tokens_generated"] >= 200
    retiring = [int(n) for n in re.findall(r"retiring: no longer listening; draining (\d+)",
                                           server.stderr)]  # fmt: skip
    assert len(retiring) == 2 and sum(retiring) > 0  # the reload came while streams ran
    stream_ids = set()
    for events in results:
        names = [name for name, _, _ in events]
        assert names.count("stream_start") == 1 and names[0] == "stream_start"
        assert names.count("stream_end") == 1 and names[-1] == "stream_end"
        assert "error" not in names
        end = events[-1][2]
        assert end["finish_reason"] == "stop" and end["tokens_generated"] < 200  # the old config
        ids = [event_id for _, event_id, _ in events]
        assert len(set(ids)) == len(ids)
        assert [int(i.rpartition(":")[2]) for i in ids] == list(range(len(ids)))
        stream_ids.add(events[0][2]["stream_id"])
    assert len(stream_ids) == 50
    server.signal(signal.SIGTERM)
    assert await server.exit_status() == 0, server.stderr
    assert not any(noise in server.stderr for noise in NOISE), server.stderr


async def test_with_the_redis_stores_a_stream_cut_on_one_worker_resumes_on_either(
    supervised, tmp_path
):
    config = write_config(tmp_path, free_port(), grace_s=5,
                          simulated="tokens_per_second = 100\nanswer_tokens = 60")  # fmt: skip
    config.write_text(config.read_text().replace('[resume]\nstore = "redis"\n',
                                                 '[resume]\nstore = "redis"\ngrace_s = 10\n'))  # fmt: skip
    server = await supervised(config)
    no_reuse = httpx.Limits(max_keepalive_connections=0)  # each request: a new connection
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", timeout=30,
                                 limits=no_reuse) as client:  # fmt: skip

        async def cut_and_resumed(number: int) -> list[tuple[str, str]]:
            events: list[tuple[str, str]] = []
            request = {"method": "GET", "url": "/v1/stream", "params": {"prompt": f"q{number}"}}
            for _ in range(12):
                async with aconnect_sse(client, **request) as source:
                    assert source.response.status_code == 200, await source.response.aread()
                    async for event in source.aiter_sse():
                        events.append((event.event, event.id))
                        if event.event == "stream_end":
                            return events
                        if event.event == "token" and len(events) % 15 == 0:
                            break  # cut: resume on a new connection, on either worker
                request["headers"] = {"Last-Event-ID": events[-1][1]}
            raise AssertionError(f"no end: {events}")

        results = await asyncio.gather(*(cut_and_resumed(i) for i in range(20)))

    for events in results:
        ids = [event_id for _, event_id in events]
        assert [int(i.rpartition(":")[2]) for i in ids] == list(range(len(ids)))
        assert [name for name, _ in events].count("stream_end") == 1
    # Each connection is new and the kernel spreads new connections over both workers (checked
    # below), so about half of the 80-odd resumes landed on the worker that did not run their
    # stream: with the memory store each of those would have been a 404.
    assert len(await both_pids(server.port)) == 2
    server.signal(signal.SIGTERM)
    assert await server.exit_status() == 0, server.stderr
