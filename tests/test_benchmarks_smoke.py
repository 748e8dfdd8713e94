"""The benchmark suite (``benchmarks/``) works: a tiny run of the whole harness, correctness only.

No timing is asserted: the figures of a run this small mean nothing. The FastAPI baseline needs the
``bench`` extra; without it the harness skips it and says so.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks.loadgen import Reader, Record, SSEClient, Tally
from benchmarks.report_fair import fair_targets

REPO = Path(__file__).resolve().parent.parent
HAS_FASTAPI = all(
    importlib.util.find_spec(m) for m in ("fastapi", "sse_starlette", "uvicorn", "httptools")
)
HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None
HAS_LITELLM = importlib.util.find_spec("litellm") is not None
HAS_REDIS = (
    shutil.which("redis-server") is not None and importlib.util.find_spec("redis") is not None
)

# The smoke run starts every server of the suite, LiteLLM's proxy twice (~15 s each): 88-93 s
# alone on a 2-core machine, past the suite's 120 s per test beside the other worker's tests.
pytestmark = pytest.mark.timeout(360)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("bench") / "results"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--smoke", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return out, json.loads((out / "results.json").read_text())


def test_every_stream_of_every_run_is_complete(smoke: tuple[Path, dict[str, Any]]) -> None:
    _out, results = smoke
    assert results["runs"]
    for run in results["runs"]:
        assert run["ok"], run
        assert run["loadgen"]["complete"] == run["loadgen"]["streams"] > 0


def test_every_available_server_is_measured(smoke: tuple[Path, dict[str, Any]]) -> None:
    _out, results = smoke
    expected = {"raw", "raw-yield", "aiohttp-sse", "streamserver", "streamserver-object"}
    expected |= {"streamserver-uvloop", "upstream", "raw-relay"}
    expected |= {"litellm"} if HAS_LITELLM else set()
    expected |= {"fastapi"} if HAS_FASTAPI else set()
    expected |= {"streamserver-redis"} if HAS_REDIS else set()
    assert {run["server"] for run in results["runs"]} == expected
    assert ("fastapi" in results["skipped"]) is not HAS_FASTAPI
    assert ("streamserver-redis" in results["skipped"]) is not HAS_REDIS
    assert ("litellm" in results["skipped"]) is not HAS_LITELLM


def test_the_object_stream_runs_beside_text_of_its_length(
    smoke: tuple[Path, dict[str, Any]],
) -> None:
    _out, results = smoke
    runs = [run for run in results["runs"] if run["workload"] == "object"]
    [workload] = [w for w in results["workloads"] if w["name"] == "object"]

    assert {run["server"] for run in runs} == {"streamserver", "streamserver-object"}
    assert all(
        run["loadgen"]["tokens"] == workload["tokens"] * run["loadgen"]["streams"] for run in runs
    )
    assert "tokens_per_s" in results["summary"]["object"]["streamserver-object"]["vs_text"]
    [row] = [row for row in results["targets"] if row["number"] == "18"]  # too small to judge
    assert row["target"].startswith("object stream: server CPU per token")


@pytest.mark.skipif(not HAS_REDIS, reason="needs redis-server and redis-py")
def test_the_redis_store_runs_beside_the_memory_store(smoke: tuple[Path, dict[str, Any]]) -> None:
    _out, results = smoke
    runs = [run for run in results["runs"] if run["server"] == "streamserver-redis"]
    assert {run["workload"] for run in runs} == {"throughput", "paced", "calibrated", "resume"}
    loads = [run for run in runs if run["workload"] != "resume"]
    assert all(run["redis_cpu_s"] is not None for run in loads)
    for workload in ("throughput", "paced", "calibrated"):
        assert "vs_memory" in results["summary"][workload]["streamserver-redis"]
    targets = [row["target"] for row in results["targets"] if row["number"] == "Redis"]
    assert any(t.startswith("calibrated paced load") for t in targets), targets


@pytest.mark.skipif(not HAS_REDIS, reason="needs redis-server and redis-py")
def test_the_resume_trials_time_a_resume_on_both_instances(
    smoke: tuple[Path, dict[str, Any]],
) -> None:
    out, results = smoke
    (run,) = [run for run in results["runs"] if run["workload"] == "resume"]
    assert run["loadgen"]["complete"] == run["loadgen"]["streams"] > 0
    assert all(run["loadgen"]["resume_ms"][place]["p50"] > 0 for place in ("other", "same"))
    assert "| B (another instance, through Redis) |" in (out / "report.md").read_text()


def test_the_relay_goes_through_the_fake_upstream(smoke: tuple[Path, dict[str, Any]]) -> None:
    _out, results = smoke
    relay = [run for run in results["runs"] if run["workload"] == "relay"]
    assert relay and all(run["upstream_cpu_s"] is not None for run in relay)


def test_the_report_and_plot_are_written(smoke: tuple[Path, dict[str, Any]]) -> None:
    out, _results = smoke
    assert (out / "report.md").read_text(encoding="utf-8").startswith("# streamserver benchmarks")
    assert (out / "plot.png").is_file() is HAS_MATPLOTLIB


async def _feed(body: bytes, step: int, tokens_expected: int = 3) -> Record:
    record = Record()
    loop = asyncio.get_running_loop()
    reader = Reader(loop)
    with socket.socket() as sock:
        client = SSEClient(b"", record, loop.create_future(), Tally(), reader, sock)
        head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        data = head + body
        for i in range(0, len(data), step):
            client.received(data[i : i + step], loop.time())
    reader.close()
    return record


def _chunk(event: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(event), event)


_EVENTS = [
    b'id: s:0\nevent: stream_start\ndata: {"stream_id": "s"}\n\n',
    *(
        b'id: s:%d\nevent: token\ndata: {"content": "t", "index": %d}\n\n' % (i + 1, i)
        for i in range(3)
    ),
    b'id: s:4\nevent: stream_end\ndata: {"tokens_generated": 3}\n\n',
]


@pytest.mark.parametrize("step", [1, 2, 7, 1000])
async def test_the_load_generator_counts_events_however_the_bytes_are_split(step: int) -> None:
    body = b"".join(_chunk(e) for e in _EVENTS) + b"0\r\n\r\n"
    record = await _feed(body, step)
    assert (record.tokens, record.ended, record.terminated, record.error) == (3, True, True, None)


async def test_the_load_generator_never_counts_a_token_event_split_across_chunks() -> None:
    split = _EVENTS[1][:12], _EVENTS[1][12:]
    body = b"".join(_chunk(e) for e in (_EVENTS[0], *split, *_EVENTS[2:])) + b"0\r\n\r\n"
    record = await _feed(body, 1000)
    assert record.tokens == 2  # too few, so the stream counts as incomplete, never the reverse


def test_the_calibrated_workload_is_paced_at_the_measured_capacity(
    smoke: tuple[Path, dict[str, Any]],
) -> None:
    _out, results = smoke
    capacity = results["capacity"]["tokens_per_s"]
    (workload,) = [w for w in results["workloads"] if w["name"] == "calibrated"]
    assert capacity > 0
    assert workload["connections"] == max(1, round(0.6 * capacity / workload["pace"]))
    # Steady-state arrivals: as many a second as keeps that many live, three streams per client.
    arrivals = workload["connections"] * workload["pace"] / workload["tokens"]
    assert workload["ramp"] == pytest.approx(arrivals)
    assert results["capacity"]["arrivals_per_s"] == pytest.approx(arrivals)
    assert workload["streams_per_connection"] == 3
    runs = [r for r in results["runs"] if r["workload"] == "calibrated"]
    redis = {"streamserver-redis"} if HAS_REDIS else set()
    assert {r["server"] for r in runs} == {"raw", "aiohttp-sse", "streamserver", *redis}
    assert results["capacity"]["probes"] == [capacity]  # a smoke run probes once
    assert all(r["loadgen"]["streams"] == 3 * workload["connections"] for r in runs)
    # The probe's busy share is never below its server's own CPU share.
    assert results["capacity"]["probe_busy"] >= results["capacity"]["probe_server_cpu"]
    rows = {row["number"]: row for row in fair_targets(results)}
    assert set(rows) == {"20.2", "20.3", "20.5"}
    assert all(row["met"] is not None for row in rows.values()), rows  # every figure measured
    assert "a stream's start (one token, a connection) costs" in rows["20.3"]["figure"]
    assert "aiohttp-sse's minimal handler, the framework alone" in rows["20.3"]["figure"]
    assert "streams arrived at" in rows["20.3"]["figure"]
