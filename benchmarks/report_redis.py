"""The Redis stream store's part of ``report.md``: its targets (issue 17), what it costs against
the memory store in the same run, and the resume trials (``benchmarks/report.py`` calls this)."""

from __future__ import annotations

from typing import Any

from .figures import _ms, _num, _pct, _rate

REDIS = "streamserver-redis"
MEMORY = "streamserver"


def redis_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The Redis store's targets, each with the measured figure and a verdict (``met`` is None
    when it could not be measured: no redis-server, or its runs failed)."""
    s = results["summary"]
    rows: list[dict[str, Any]] = []

    def add(target: str, figure: str, met: bool | None) -> None:
        rows.append({"number": "Redis", "target": target, "figure": figure, "met": met})

    paced = s.get("paced", {}).get(REDIS)
    memory = s.get("paced", {}).get(MEMORY) or {}
    delivered_target = "paced 1000×50, Redis store: ≥ 95% of the asked rate delivered"
    ttft_target = "paced 1000×50, Redis store: TTFT p99 ≤ 1.2× the memory store's"
    if paced:
        asked, delivered = paced["asked_per_s"] or 0, paced["delivered_per_s"]
        if delivered is None or not asked:
            add(delivered_target, "not measured: the streams were never all live at once for 0.5 s",
                False)  # fmt: skip
        else:
            add(delivered_target, f"{_rate(delivered)} of {_rate(asked)} tok/s = "
                f"{delivered / asked:.1%}", delivered >= 0.95 * asked)  # fmt: skip
        ttft, base = paced["ttft_p99_ms"], memory.get("ttft_p99_ms")
        if ttft is not None and base:
            add(ttft_target, f"{_ms(ttft)} = {ttft / base:.2f}× the memory store's {_ms(base)}"
                f"{_worst(results, 'paced', 'ttft_p99_ms', max)}", ttft <= 1.2 * base)  # fmt: skip
        else:
            add(ttft_target, "not measured", None)
    else:
        add(delivered_target, "not measured", None)
        add(ttft_target, "not measured", None)

    # The same comparison at a load the machine carries (issue 20's calibrated workload): where
    # 1000 × 50 saturates even the raw floor, its TTFT compares two overloads.
    calibrated = s.get("calibrated", {})
    ttft, base = ((calibrated.get(k) or {}).get("ttft_p99_ms") for k in (REDIS, MEMORY))
    if ttft is not None and base:
        arrivals = (results.get("capacity") or {}).get("arrivals_per_s")
        ours = calibrated[REDIS]
        add("calibrated paced load (60% of the floor's capacity), Redis store: TTFT p99 ≤ 1.2× "
            "the memory store's", f"{_ms(ttft)} = {ttft / base:.2f}× the memory store's "
            f"{_ms(base)}; gap p99 {_ms(ours.get('gap_p99_ms'))}; "
            f"{ours.get('complete', 0):,}/{ours.get('streams', 0):,} complete"
            + (f"; streams arrived at {arrivals:,.0f} a second" if arrivals else ""),
            ttft <= 1.2 * base and ours.get("complete") == ours.get("streams"))  # fmt: skip

    rate = (s.get("throughput", {}).get(REDIS) or {}).get("tokens_per_s")
    base = (s.get("throughput", {}).get(MEMORY) or {}).get("tokens_per_s")
    target = "throughput, Redis store: ≥ 0.7× the memory store's"
    if rate and base:
        add(target, f"{_rate(rate)} tok/s = {rate / base:.2f}× the memory store's {_rate(base)}"
            f"{_worst(results, 'throughput', 'tokens_per_s', min)}", rate >= 0.7 * base)  # fmt: skip
    else:
        add(target, "not measured", None)
    return rows


def _worst(results: dict[str, Any], workload: str, figure: str, pick: Any) -> str:
    """The worst Redis / memory ratio of one repetition (paired by repetition), as a note."""
    paths = {"tokens_per_s": ("tokens_per_s",), "ttft_p99_ms": ("ttft_ms", "p99")}[figure]
    by_rep: dict[int, dict[str, float]] = {}
    for run in results["runs"]:
        if run["workload"] == workload and run["ok"] and run["server"] in (REDIS, MEMORY):
            value: Any = run["loadgen"]
            for key in paths:
                value = value.get(key) if isinstance(value, dict) else None
            if isinstance(value, int | float):
                by_rep.setdefault(run["rep"], {})[run["server"]] = value
    ratios = [p[REDIS] / p[MEMORY] for p in by_rep.values() if REDIS in p and p.get(MEMORY)]
    if len(ratios) < 2:
        return ""
    return f"; worst repetition {pick(ratios):.2f}×"


def redis_cost(workload: dict[str, Any], per_server: dict[str, Any]) -> list[str]:
    """Below a workload's table: the Redis store's figures as ratios to the memory store's, and
    the CPU time each process spent per token."""
    redis, memory = per_server.get(REDIS), per_server.get(MEMORY)
    if redis is None or memory is None:
        return []
    ratios = redis.get("vs_memory", {})
    rate = "delivered_per_s" if workload["pace"] else "tokens_per_s"

    def ratio(name: str) -> str:
        value = ratios.get(name)
        return "-" if value is None else f"{value:.2f}×"

    server_us, memory_us = redis["server_cpu_us_per_token"], memory["server_cpu_us_per_token"]
    redis_us = redis.get("redis_cpu_us_per_token")
    total = None if server_us is None or redis_us is None else server_us + redis_us
    return [
        "",
        "The Redis store against the memory store (same run; Redis on the load generator's CPU): "
        f"{'delivered rate' if workload['pace'] else 'throughput'} {ratio(rate)}, TTFT p50 "
        f"{ratio('ttft_p50_ms')}, TTFT p99 {ratio('ttft_p99_ms')}, gap p99 {ratio('gap_p99_ms')}, "
        f"peak RSS {ratio('peak_rss_kib')}. CPU per token: the server {_num(server_us)} µs "
        f"({ratio('server_cpu_us_per_token')} the memory store's {_num(memory_us)} µs), Redis "
        f"{_num(redis_us)} µs, together {_num(total)} µs; the load generator's core (with Redis "
        f"on it) was {_pct(redis.get('loadgen_core_busy'))} busy "
        f"(memory store: {_pct(memory.get('loadgen_core_busy'))}).",
    ]


def resume_section(workload: dict[str, Any], figures: dict[str, Any]) -> list[str]:
    """The resume trials' table: time to the first replayed event, per place."""
    lines = [
        "| resumed on | first replayed event p50 | p90 | p99 | max | connect p99 |",
        "|---|---|---|---|---|---|",
    ]
    for place, label in (("other", "B (another instance, through Redis)"),
                         ("same", "A (the instance running the stream)")):  # fmt: skip
        lines.append(
            f"| {label} | {_ms(figures.get(f'resume_{place}_p50_ms'))} | "
            f"{_ms(figures.get(f'resume_{place}_p90_ms'))} | "
            f"{_ms(figures.get(f'resume_{place}_p99_ms'))} | "
            f"{_ms(figures.get(f'resume_{place}_max_ms'))} | "
            f"{_ms(figures.get(f'resume_connect_{place}_p99_ms'))} |"
        )
    failed = figures["streams"] - figures["complete"]
    lines += [
        "",
        f"{figures['complete']:,} of {figures['streams']:,} trials complete (ids consecutive "
        "from the cut, every token once, `stream_end`)"
        + (f"; **{failed} failed** (see `results.json`, `problems`)" if failed else "")
        + f". Time to the first token of the stream on A (with the Redis store), p50: "
        f"{_ms(figures.get('resume_start_p50_ms'))}.",
    ]
    return lines


def redis_methods() -> list[str]:
    """The Redis store's bullet of "How it is measured"."""
    return [
        "- The Redis store (`streamserver, Redis store`): the same streamserver config with "
        '`[redis] url` and `[resume] store = "redis"`, on a `redis-server` started afresh for '
        "each run (a free port, no persistence: `--save '' --appendonly no`) before the server, "
        "pinned to CPU 1 with the load generator: on a 2-core machine the other choice is the "
        "server's own core, which would charge Redis's work to the server measured (in a "
        "deployment Redis is another machine or core). Its runs are interleaved with the memory "
        "store's, and its figures are also given as ratios to the memory store's of the same "
        "run. Redis's CPU time is read from `/proc/<pid>/stat` (user + system) before and after "
        "the load and divided by the tokens delivered.",
        "- The resume trials (`benchmarks/resume.py`): instances A and B of streamserver on one "
        "Redis (`grace_s = 5`, so a cut stream goes on), both on CPU 0; the trials run on CPU 1, "
        "one at a time. Each starts a stream on A, reads it to its 4th token, closes the "
        "connection, waits 60 ms, and sends the same request with `Last-Event-ID` to B or to A "
        "(alternating), timed from writing the request to the first event's arrival; then reads "
        "the resumed stream to its end and checks it.",
    ]
