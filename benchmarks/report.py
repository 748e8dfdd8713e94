"""``report.md`` and ``plot.png`` from a run's results (``benchmarks/run.py`` calls this)."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .figures import _mib, _ms, _num, _pct, _rate

SERVER_LABELS = {
    "raw": "raw asyncio (floor)",
    "raw-yield": "raw asyncio, yielding after every token",
    "aiohttp-sse": "aiohttp + aiohttp-sse",
    "fastapi": "FastAPI + sse-starlette",
    "streamserver": "streamserver",
    "streamserver-redis": "streamserver, Redis store",
    "streamserver-object": "streamserver, object stream",
    "streamserver-uvloop": "streamserver on uvloop",
    "upstream": "fake upstream, no relay",
    "raw-relay": "raw aiohttp relay (floor)",
    "litellm": "LiteLLM proxy",
}
# The reference figures for the baselines (same workloads, another run), for comparison.
REFERENCE = {
    "throughput": {"fastapi": "36.5k (0.27×)", "aiohttp-sse": "51k (0.37×)", "raw": "137k"},
    "paced": {
        "fastapi": "16.5k/s, TTFT p50 3.4 s, 84 MiB",
        "aiohttp-sse": "25.4k/s, TTFT p99 178 ms, 52 MiB",
        "raw": "48.3k/s, TTFT p99 38 ms, 27 MiB",
    },
}


def _fig(summary: dict[str, Any], workload: str, server: str, name: str) -> Any:
    return summary.get(workload, {}).get(server, {}).get(name)


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """streamserver's targets from the issue, each with the measured figure and a verdict
    (``met`` is None when the figure could not be measured)."""
    s = results["summary"]
    rows: list[dict[str, Any]] = []

    def add(number: str, target: str, figure: str, met: bool | None) -> None:
        rows.append({"number": number, "target": target, "figure": figure, "met": met})

    ss_tput = _fig(s, "throughput", "streamserver", "tokens_per_s")
    raw_tput = _fig(s, "throughput", "raw", "tokens_per_s")
    aio_tput = _fig(s, "throughput", "aiohttp-sse", "tokens_per_s")
    if ss_tput and raw_tput:
        ratio = ss_tput / raw_tput
        add("1", "throughput ≥ 1.0× the raw floor", f"{_rate(ss_tput)} tok/s = {ratio:.2f}× raw "
            f"({_rate(raw_tput)})", ratio >= 1.0)  # fmt: skip
    else:
        add("1", "throughput ≥ 1.0× the raw floor", "not measured", None)
    if ss_tput and aio_tput:
        worst = _worst_pair_ratio(results, "throughput", "streamserver", "aiohttp-sse")
        ratio = ss_tput / aio_tput
        add("1", "throughput never below 2× aiohttp-sse", f"{ratio:.2f}× aiohttp-sse (median); "
            f"worst repetition {worst:.2f}×", ratio >= 2.0 and worst >= 2.0)  # fmt: skip
    else:
        add("1", "throughput never below 2× aiohttp-sse", "not measured", None)

    paced = s.get("paced", {}).get("streamserver")
    if paced:
        asked = paced["asked_per_s"] or 0
        delivered = paced["delivered_per_s"]
        if delivered is None or not asked:
            add("2", "paced 1000×50: ≥ 95% of the asked rate delivered",
                "not measured: the streams were never all live at once for 0.5 s", False)  # fmt: skip
        else:
            add("2", "paced 1000×50: ≥ 95% of the asked rate delivered",
                f"{_rate(delivered)} of {_rate(asked)} tok/s = {delivered / asked:.1%}",
                delivered >= 0.95 * asked)  # fmt: skip
        # The floor's figure of the same run says what this machine allowed at all.
        floor = s.get("paced", {}).get("raw") or {}

        def beside(key: str, show: Callable[[Any], str]) -> str:
            value = floor.get(key)
            return f" (raw floor: {show(value)} in the same run)" if value is not None else ""

        ttft = paced["ttft_p99_ms"]
        add("2", "paced 1000×50: TTFT p99 ≤ 50 ms", _ms(ttft) + beside("ttft_p99_ms", _ms),
            ttft is not None and ttft <= 50)  # fmt: skip
        gap = paced["gap_p99_ms"]
        add("2", "paced 1000×50: gap p99 ≤ 30 ms", _ms(gap) + beside("gap_p99_ms", _ms),
            gap is not None and gap <= 30)  # fmt: skip
        peak = paced["peak_rss_kib"]
        add("2", "paced 1000×50: peak memory ≤ 64 MiB", _mib(peak) + beside("peak_rss_kib", _mib),
            peak is not None and peak <= 64 * 1024)  # fmt: skip
    else:
        add("2", "paced 1000×50", "not measured", None)

    slow = s.get("slow", {}).get("streamserver")
    if slow:
        errors = slow["streams"] - slow["complete"]
        live = slow.get("all_live_s")
        add("3", "10,000 slow streams held 30 s with no error",
            f"{slow['complete']:,} of {slow['streams']:,} streams complete; all of them live at once "
            f"for {live:.1f} s (ramp {slow['ramp_s']:.1f} s)" if live is not None else "-",
            errors == 0 and live is not None and live >= 30)  # fmt: skip
        per = slow.get("kib_per_stream")
        minimal = (s.get("slow", {}).get("aiohttp-sse") or {}).get("kib_per_stream")
        add("3", "10,000 slow streams: ≤ 15 KiB server memory per stream",
            (f"{per:.1f} KiB per stream" if per is not None else "not measured")
            + (f" (aiohttp-sse minimal: {minimal:.1f} KiB)" if minimal is not None else ""),
            per is not None and per <= 15)  # fmt: skip
        # Issue 20's target: what streamserver adds fits in what aiohttp-sse's handler spends.
        add("20.4", "10,000 slow streams: ≤ 1.0× aiohttp-sse minimal's memory per stream, "
            "in the same run",
            f"{per:.1f} vs {minimal:.1f} KiB per stream = {per / minimal:.2f}×"
            if per is not None and minimal else "not measured",
            per is not None and bool(minimal) and per <= minimal)  # fmt: skip
    else:
        add("3", "10,000 slow streams", "not measured", None)

    relay = s.get("relay", {}).get("streamserver")
    if relay and relay.get("server_cpu_us_per_token") is not None:
        us = relay["server_cpu_us_per_token"]
        add("4", "relay: server CPU ≤ 20 µs per relayed token", f"{us:.1f} µs per token", us <= 20)
    else:
        add("4", "relay: server CPU ≤ 20 µs per relayed token", "not measured", None)

    ss_idle = _fig(s, "idle-ttft", "streamserver", "ttft_p99_ms")
    raw_idle = _fig(s, "idle-ttft", "raw", "ttft_p99_ms")
    if ss_idle is not None and raw_idle is not None:
        added = ss_idle - raw_idle
        p50 = (_fig(s, "idle-ttft", "streamserver", "ttft_p50_ms") or 0) - (
            _fig(s, "idle-ttft", "raw", "ttft_p50_ms") or 0
        )
        add("5", "time added to the first token on an idle server: < 2 ms p99",
            f"{added:+.2f} ms at p99 ({_ms(ss_idle)} vs raw {_ms(raw_idle)}); {p50:+.2f} ms at p50",
            added < 2)  # fmt: skip
    else:
        add(
            "5", "time added to the first token on an idle server: < 2 ms p99", "not measured", None
        )
    text = _fig(s, "object", "streamserver", "server_cpu_us_per_token")
    objects = _fig(s, "object", "streamserver-object", "server_cpu_us_per_token")
    tokens = next((w["tokens"] for w in results["workloads"] if w["name"] == "object"), None)
    if text and objects is not None:
        add("18", f"object stream: server CPU per token ≤ 2× a text token's ({tokens}-token "
            "objects)", f"{objects:.1f} µs = {objects / text:.2f}× the same JSON as text tokens: "
            f"{text:.1f} µs", objects <= 2 * text)  # fmt: skip
    else:
        add("18", "object stream: server CPU per token ≤ 2× a text token's", "not measured", None)
    from .report_fair import fair_targets
    from .report_redis import redis_targets  # it uses this module's formatting
    from .report_relay import relay_targets

    return rows + redis_targets(results) + relay_targets(results) + fair_targets(results)


def _worst_pair_ratio(results: dict[str, Any], workload: str, a: str, b: str) -> float:
    """The smallest ``a``/``b`` throughput ratio over repetitions (same repetition index)."""
    ratios = []
    by_rep: dict[int, dict[str, float]] = {}
    for run in results["runs"]:
        if run["workload"] == workload and run["ok"]:
            by_rep.setdefault(run["rep"], {})[run["server"]] = run["loadgen"]["tokens_per_s"]
    for pair in by_rep.values():
        if a in pair and b in pair and pair[b]:
            ratios.append(pair[a] / pair[b])
    return min(ratios) if ratios else float("nan")


def _ratio(figures: dict[str, Any], name: str) -> str:
    ratio = figures.get("vs_raw", {}).get(name)
    return "" if ratio is None else f" ({ratio:.2f}×)"


def _workload_table(workload: dict[str, Any], per_server: dict[str, Any]) -> list[str]:
    paced = bool(workload["pace"])
    rate_name = "delivered_per_s" if paced else "tokens_per_s"
    rate_title = "delivered tok/s" if paced else "tok/s"
    lines = [
        f"| server | {rate_title} (× raw) | TTFT p50 | TTFT p99 (× raw) | gap p99 | peak RSS (× raw)"
        " | server CPU µs/token | server core busy | loadgen CPU | other processes | complete |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for server in SERVER_LABELS:
        f = per_server.get(server)
        if f is None:
            continue
        rate = f.get(rate_name)
        if paced and rate is None:
            rate_text = "- (every stream live together < 0.5 s)"
        elif paced and f.get("asked_per_s"):
            rate_text = (
                f"{_rate(rate)}{_ratio(f, rate_name)}, {rate / f['asked_per_s']:.0%} of asked"
            )
        else:
            rate_text = f"{_rate(rate)}{_ratio(f, rate_name)}"
        lines.append(
            f"| {SERVER_LABELS[server]} | {rate_text} | {_ms(f['ttft_p50_ms'])} | "
            f"{_ms(f['ttft_p99_ms'])}{_ratio(f, 'ttft_p99_ms')} | {_ms(f['gap_p99_ms'])} | "
            f"{_mib(f['peak_rss_kib'])}{_ratio(f, 'peak_rss_kib')} | "
            f"{_num(f['server_cpu_us_per_token'])} | {_pct(f['server_core_busy'])} | "
            f"{_pct(f['loadgen_cpu'])} (max {_pct(f['loadgen_cpu_max'])}), read lag p99 "
            f"{_ms(f['read_lag_p99_ms'])}{' ⚠' if _near_limit(f) else ''} | "
            f"{_pct(f['other_cpu'])} (max {_pct(f['other_cpu_max'])}) | "
            f"{f['complete']:,}/{f['streams']:,}{'' if not f['failed'] else ' ⚠'} |"
        )
    return lines


def _near_limit(figures: dict[str, Any]) -> bool:
    """The load generator was close enough to its limit to blur latencies by milliseconds."""
    return (figures["loadgen_cpu_max"] or 0) > 0.85 or (figures["read_lag_p99_max_ms"] or 0) > 10


def render(results: dict[str, Any]) -> str:
    """The Markdown report."""
    env = results["environment"]
    s = results["summary"]
    workloads = {w["name"]: w for w in results["workloads"]}
    out = ["# streamserver benchmarks", ""]
    if results.get("smoke"):
        out += ["**Smoke run: tiny workloads, the figures mean nothing.**", ""]
    out += [
        f"Generated by `make bench` ({datetime.date.today().isoformat()}, {results['duration_s']:.0f} s"
        f" in all) on {env['cpus']} × {env['cpu'] or 'CPU'}, Python {env['python']}, commit "
        f"`{env['commit']}`. "
        + ("Server pinned to CPU 0, load generator to CPU 1 (`taskset`)." if env["pinned"] else
           "**Not pinned** (no `taskset` or fewer than 2 CPUs): figures are not comparable.")
        + " Versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items()) + ".",
        "",
    ]  # fmt: skip
    load = results.get("background_load", {})
    busy = max([*load.get("before", {}).values(), *load.get("after", {}).values()], default=0)
    if busy > 0.05:
        out += [
            f"**Warning: the machine was not idle**: other processes kept a CPU up to {busy:.0%} "
            f"busy just before or after the suite ({load}). Figures from this run are noisy.",
            "",
        ]
    skipped = results.get("skipped") or {}
    for name, why in skipped.items():
        out += [f"Skipped {SERVER_LABELS[name]}: {why}.", ""]

    if not results.get("smoke"):
        out += ["## streamserver against its targets", "", "| # | target | measured | verdict |",
                "|---|---|---|---|"]  # fmt: skip
        rows = results.get("targets") or targets(results)
        for row in rows:
            verdict = {True: "met", False: "**MISSED**", None: "not measured"}[row["met"]]
            out.append(f"| {row['number']} | {row['target']} | {row['figure']} | {verdict} |")
        out.append("")
        from .report_fair import round_two

        out += round_two(rows)

    if results.get("retries"):
        out += [
            f"{results['retries']} run(s) were done again because other processes on the machine "
            "used more than 10% of a CPU meanwhile.",
            "",
        ]
    disturbed = [
        f"{r['workload']} / {r['server']} / rep {r['rep'] + 1} ({r['loadgen']['other_cpu']:.0%})"
        for r in results["runs"]
        if (r["loadgen"].get("other_cpu") or 0) > 0.1
    ]
    if disturbed:
        out += [
            "**Runs disturbed by other processes** (they used more than 10% of a CPU meanwhile; "
            "the figures of these runs are not clean): " + ", ".join(disturbed) + ".",
            "",
        ]
    failed = [r for r in results["runs"] if not r["ok"]]
    if failed:
        out += ["## Failed runs", ""]
        out += [
            f"- {r['workload']} / {r['server']} / rep {r['rep'] + 1}: {r['error']}" for r in failed
        ]
        out.append("")

    out += [
        "## Results",
        "",
        "![delivered tokens/s and TTFT p99 against concurrency](plot.png)",
        "",
    ]
    out += [
        "Medians over the repetitions; `× raw` is the ratio to the raw-asyncio floor measured in "
        "the same run (higher is better for rates, lower for latency and memory). *Server CPU "
        "µs/token* is the server process's user+system CPU time over the measured phase divided by "
        "the tokens delivered; *server core busy* is CPU 0's busy share from `/proc/stat` "
        "(it includes the kernel's softirq work for loopback TCP, which no process is charged "
        "for). *Loadgen CPU* is the load generator's own CPU time per wall second: below 100% it "
        "was waiting for the server, not the other way round. *Read lag p99* is how long data "
        "sat in a socket before the load generator read it (p99): times are the kernel's receive "
        "timestamps, so the lag does not delay them, but events that arrive within one lag share "
        "a read and its timestamp (the later one's), which lengthens the gap before them and "
        "zeroes theirs. ⚠ marks a run where the load generator was near its limit (CPU above "
        "85% or read lag p99 above 10 ms, half the 20 ms token gap of the paced runs): its TTFT "
        "and gap figures are upper bounds. *Other processes* is the CPU that "
        "processes outside the run used meanwhile (per wall second, all CPUs): anything above a few "
        "percent competed with the run.",
        "",
    ]
    from .report_redis import redis_cost, redis_methods, resume_section

    for name, per_server in s.items():
        w = workloads[name]
        reps = sorted({f["reps"] for f in per_server.values()})
        out += [f"### {w['title']}", "", f"`{name}`: {'/'.join(map(str, reps))} repetition(s)."]
        if w.get("resume_trials"):
            out += ["", *resume_section(w, next(iter(per_server.values()))), ""]
            continue
        if name in REFERENCE:
            ref = "; ".join(f"{SERVER_LABELS[k]} {v}" for k, v in REFERENCE[name].items())
            out[-1] += f" The issue's reference figures: {ref}."
        if w["connections"] == 1 and w["streams_per_connection"] > 1:
            out[-1] += (" One stream at a time: the server and the load generator take turns, so "
                        "the load generator's CPU share says nothing about headroom here.")  # fmt: skip
        out.append("")
        out += _workload_table(w, per_server)
        out += redis_cost(w, per_server)
        memory = [
            f"{SERVER_LABELS[server]} idle {_mib(f['idle_rss_kib'])}, plateau "
            f"{_mib(f['plateau_rss_kib'])}: {f['kib_per_stream']:.1f} KiB per stream"
            f"{_ratio(f, 'kib_per_stream')} (connected in {f['ramp_s']:.1f} s, all live together "
            f"for {f['all_live_s']:.1f} s)"
            for server, f in per_server.items()
            if f.get("kib_per_stream") is not None and w["connections"] >= 1000
        ]
        if memory:
            out += ["", "Memory while every stream was live: " + "; ".join(memory) + "."]
        for f in per_server.values():
            if f.get("upstream_cpu_s") is not None:
                out += ["", f"The fake upstream used {f['upstream_cpu_s']:.2f} s of CPU per "
                        "repetition (its own process, on the load generator's CPU)."]  # fmt: skip
        connects = [
            f"{SERVER_LABELS[k]} {_ms(f['connect_p99_ms'])}"
            for k, f in per_server.items()
            if f.get("connect_p99_ms") is not None
        ]
        if connects and w["connections"] > 1:
            out += ["", "Time to connect and send the request (not part of TTFT), p99: "
                    + ", ".join(connects) + "."]  # fmt: skip
        drops = {
            k: f["listen_overflows"] for k, f in per_server.items() if f.get("listen_overflows")
        }
        if drops:
            out += ["", "Connections dropped by a full listen queue (the kernel's ListenOverflows "
                    "during the run, median; the client retries after 1 s, 3 s, …): "
                    + ", ".join(f"{SERVER_LABELS[k]} {v:,.0f}" for k, v in drops.items()) + "."]  # fmt: skip
        out.append("")

    out += _loadgen_section(results)
    out += [
        "## How it is measured",
        "",
        "- `benchmarks/run.py` starts each server afresh for every run (so the peak RSS, `VmHWM`, is "
        "that run's), pinned to CPU 0; the load generator `benchmarks/loadgen.py` runs pinned to "
        "CPU 1. Repetitions are interleaved across servers in a rotated order.",
        "- Every server serves the same workload on `GET /v1/stream`: N tokens of text at the pace "
        "asked (scheduled, not slept after each token), one SSE event per token, in the wire shape "
        'of streamserver\'s `production` route (`stream_start`, `token` `{"content", "index"}`, '
        "`stream_end`, each with `id: <stream>:<seq>`), with a keep-alive ping every 15 s. "
        "`bytes_per_event` in `results.json` (chunk framing included) shows the wire is "
        "comparable; streamserver's is a few bytes lower in the unpaced run because it puts "
        "several events in one chunk when a reader is behind.",
        "- streamserver runs as users run it (`streamserver serve --config`), from a generated "
        "config: the `simulated` provider (ttft 0, jitter 0, exactly N tokens), `/v1/stream` with "
        "the `production` formatter and `raw` buffer, `memory` and `prometheus` sinks; concurrency "
        "limits raised to 20,000 and the per-client rate limit off (all load comes from one "
        "address); resume on with `grace_s = 0` and `retain_s = 2` (see "
        "`benchmarks/servers/streamserver_config.py`).",
        "- The baselines run on the standard asyncio loop, as streamserver does; uvicorn uses "
        "httptools. The aiohttp-sse baseline keeps aiohttp's default listen backlog (128), "
        "uvicorn and the raw floor use 2048, streamserver what `streamserver serve` sets.",
        "- The load generator opens one connection per stream (as EventSource does), ramped at "
        "1000 connections/s in the paced runs (2000/s for 2000 streams) and 2000/s in the "
        "10,000-stream run; in the calibrated run the streams arrive at concurrency over a "
        "stream's length a second, each client running three in turn on its connection (the "
        "10,000-stream run also "
        "keeps at most 100 connections waiting for their response head, so that no server's "
        "listen queue overflows), and counts events on raw bytes (no HTTP client library); once a "
        "response head has arrived, every body is read from one epoll set in a tight loop. It "
        "looks at its sockets once per tick (1 ms; 5 ms in the unpaced runs) instead of waking "
        "up for every arrival: that keeps it cheap, and keeps the server from paying a cross-CPU "
        "wakeup per event it sends, which a server whose clients are on a network does not pay. "
        "Every read is dated by the kernel's receive timestamp (`SO_TIMESTAMPNS`), so neither the "
        "tick nor the load generator's own delays end up in the figures; a read that holds "
        "several events gets the time of the last. The idle-server run wakes for every arrival "
        "and pauses 5 ms between streams. TTFT runs from sending the request to the first "
        "`token` event's arrival; the time to connect and send (which includes any connection "
        "the server's listen queue dropped, retried by the kernel after 1 s, and the load "
        "generator's own delay) is `connect_ms` in `results.json`. Gaps are between token arrivals; tokens that "
        "arrive in one read have a gap of 0. A stream is complete when it got status 200, exactly "
        "N token events, `stream_end` and the final chunk; every run checks that every stream is "
        "complete.",
        "- Throughput (unpaced) is tokens received / wall time from the first connection to the "
        "last stream's end. Delivered rate (paced) is the tokens received per second while every "
        "client had a stream live (from the last client's first token to the first client's "
        "last token: with one stream per client, the ramp of at most 1 s leaves about 2 s), "
        "against the asked rate, concurrency × pace; `-` when that never lasted 0.5 s. It can "
        "pass 100% when a server that fell behind catches up (tokens are paced against a "
        "schedule, so late ones go out at once): how late they were is in the TTFT and gap "
        "columns.",
        "- Memory is read from `/proc/<pid>/status`: idle RSS after a warm-up stream, peak = "
        "`VmHWM`, plateau = the largest RSS sampled (every 0.25 s) while every stream was live; "
        "per stream = (plateau − idle) / streams.",
        "- The relay runs `streamserver fake-upstream --tokens-per-second 0` as its own process "
        "(pinned with the load generator to CPU 1; it answers after 0.2 s, then unpaced) behind "
        "an `openai` provider; its figure is streamserver's CPU time per relayed token.",
        *redis_methods(),
        "- Reduced to fit 10 minutes: the 10,000-stream run and the concurrency sweep points "
        "(100, 300, 2000) run once per server; everything else three times.",
        "",
    ]
    return "\n".join(out)


def _loadgen_section(results: dict[str, Any]) -> list[str]:
    """Was the load generator ever the limit? Its CPU and read lag per workload."""
    out = [
        "## The load generator",
        "",
        "| workload | loadgen CPU, max over runs | read lag p99, max | kernel time per read "
        "(connecting and closing included) |",
        "|---|---|---|---|",
    ]
    near = []
    trials = {w["name"] for w in results["workloads"] if w.get("resume_trials")}
    for name, per_server in results["summary"].items():
        if name in trials:  # not a load: the load generator did not run
            continue
        figures = list(per_server.values())
        cpu = max((f["loadgen_cpu_max"] or 0 for f in figures), default=0)
        lag = max((f["read_lag_p99_max_ms"] or 0 for f in figures), default=0)
        sys_us = [f["loadgen_sys_us_per_read"] for f in figures if f["loadgen_sys_us_per_read"]]
        per_read = f"{min(sys_us):.0f}–{max(sys_us):.0f} µs" if sys_us else "-"
        out.append(f"| `{name}` | {cpu:.0%} | {_ms(lag)} | {per_read} |")
        near += [f"{SERVER_LABELS[k]} in `{name}`" for k, f in per_server.items() if _near_limit(f)]
    out.append("")
    if near:
        out += [
            "Near its limit (⚠): " + ", ".join(near) + ". On this machine (a VM) a read on a "
            "loopback TCP socket costs the load generator about 20 µs of kernel time whatever it "
            "holds (the receive path, and the acknowledgement it sends back, which on loopback is "
            "processed at once against the server's side of the connection, on this CPU). When "
            "a server delivers tokens on time, 1000 streams at 50 tokens/s "
            "mean about 50,000 separate reads a second, close to what one core can do; a server "
            "that falls behind sends bursts, which take fewer reads. So in those runs the load "
            "generator is close to its limit, events that arrive within its read lag are merged, "
            "and the TTFT and gap figures are upper bounds (the throughput figures are not "
            "affected: the server's core was the busy one).",
            "",
        ]
    return out


def plot(results: dict[str, Any], path: Path) -> bool:
    """Delivered tokens/s and TTFT p99 against concurrency, per server (the paced series)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    workloads = [w for w in results["workloads"] if w["series"] == "paced"]
    if not workloads:
        workloads = [w for w in results["workloads"] if not w["relay"]]
    workloads.sort(key=lambda w: w["connections"])
    fig, (rate_ax, ttft_ax) = plt.subplots(1, 2, figsize=(11, 4.2))
    for server in ("raw", "aiohttp-sse", "fastapi", "streamserver"):
        xs, rates, ttfts = [], [], []
        for w in workloads:
            f = results["summary"].get(w["name"], {}).get(server)
            if f is None:
                continue
            rate = f["delivered_per_s"] if w["pace"] else f["tokens_per_s"]
            if rate is None or f["ttft_p99_ms"] is None:
                continue
            xs.append(w["connections"])
            rates.append(rate)
            ttfts.append(f["ttft_p99_ms"])
        if xs:
            rate_ax.plot(xs, rates, marker="o", label=SERVER_LABELS[server])
            ttft_ax.plot(xs, ttfts, marker="o", label=SERVER_LABELS[server])
    paces = {w["pace"] for w in workloads}
    if len(paces) == 1 and (pace := paces.pop()):
        xs = [w["connections"] for w in workloads]
        rate_ax.plot(xs, [x * pace for x in xs], "k:", label=f"asked ({pace:g} tok/s per stream)")
        rate_ax.set_title(f"Delivered tokens/s, streams paced at {pace:g} tok/s")
    else:
        rate_ax.set_title("Delivered tokens/s")
    ttft_ax.set_title("Time to first token, p99")
    for ax in (rate_ax, ttft_ax):
        ax.set_xlabel("concurrent streams")
        ax.set_xscale("log")
        ax.grid(True, which="both", alpha=0.3)
    rate_ax.set_ylabel("tokens/s")
    ttft_ax.set_ylabel("ms")
    ttft_ax.set_yscale("log")
    rate_ax.legend(fontsize=8)
    fig.suptitle("one server process on one core; load generator on the other", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write_report(results: dict[str, Any], out: Path) -> None:
    """Write ``report.md`` and ``plot.png`` into ``out``."""
    results.setdefault("targets", targets(results))
    text = render(results)
    if not plot(results, out / "plot.png"):
        text = text.replace(
            "![delivered tokens/s and TTFT p99 against concurrency](plot.png)",
            "(No plot: matplotlib is not installed; `pip install -e '.[bench]'`.)",
        )
    (out / "report.md").write_text(text, encoding="utf-8")
