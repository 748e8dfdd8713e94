"""Round two's fairness, calibrated-load and uvloop targets (issue 20, points 2, 3, 5) for
``report.md`` (``benchmarks/report.py`` calls this): each with its figure and verdict."""

from __future__ import annotations

from typing import Any

from streamserver.builtins.simulated import BURST_S, TURNS_PER_ITERATION

from .figures import _ms, _rate

RAW, RAW_YIELD, SERVER, UVLOOP = "raw", "raw-yield", "streamserver", "streamserver-uvloop"
SSE = "aiohttp-sse"


def fair_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The "Round two" rows: ``met`` is None when a figure could not be measured."""
    s = results["summary"]
    rows: list[dict[str, Any]] = []

    def add(number: str, target: str, figure: str, met: bool | None) -> None:
        rows.append({"number": number, "target": target, "figure": figure, "met": met})

    fair = s.get("fair", {})
    floor, yielding, ours = (fair.get(k) or {} for k in (RAW, RAW_YIELD, SERVER))
    target = (
        "fair, 64×256 unpaced: a new stream's first token p99 ≤ 2× the raw-yield floor's, "
        "throughput ≥ 1.0× the raw floor's"
    )
    ttft, base = ours.get("ttft_p99_ms"), yielding.get("ttft_p99_ms")
    rate, raw_rate = ours.get("tokens_per_s"), floor.get("tokens_per_s")
    if ttft is not None and base and rate and raw_rate:
        add("20.2", target, f"first token p99 {_ms(ttft)} = {ttft / base:.2f}× raw-yield's "
            f"{_ms(base)} (headers p50/p99 {_ms(ours.get('headers_p50_ms'))}/"
            f"{_ms(ours.get('headers_p99_ms'))}, raw-yield's {_ms(yielding.get('headers_p50_ms'))}/"
            f"{_ms(yielding.get('headers_p99_ms'))}); {_rate(rate)} tok/s = "
            f"{rate / raw_rate:.2f}× raw's {_rate(raw_rate)}; a loop iteration holds at most "
            f"{TURNS_PER_ITERATION} bursts of the running streams: {TURNS_PER_ITERATION} × "
            f"{BURST_S * 1e6:.0f} µs = {TURNS_PER_ITERATION * BURST_S * 1e3:.1f} ms (by "
            "construction, not measured), the rest wait their turn",
            ttft <= 2 * base and rate >= raw_rate)  # fmt: skip
    else:
        add("20.2", target, "not measured", None)

    starts = start_costs(s.get("starts", {}))
    if starts and rows[-1]["met"] is not None:  # what a new stream's headers wait for
        rows[-1]["figure"] += f"; {starts}"

    calibrated = s.get("calibrated", {})
    floor, sse, ours = (calibrated.get(k) or {} for k in (RAW, SSE, SERVER))
    target = (
        "calibrated paced load (60% of the floor's capacity): TTFT p99 and gap p99 ≤ 1.2× raw's"
    )
    if ours.get("ttft_p99_ms") is not None and floor.get("ttft_p99_ms") and floor.get("gap_p99_ms"):
        t, g = ours["ttft_p99_ms"] / floor["ttft_p99_ms"], ours["gap_p99_ms"] / floor["gap_p99_ms"]
        complete = ours["complete"] == ours["streams"] and floor["complete"] == floor["streams"]
        figure = (
            f"TTFT p99 {_ms(ours['ttft_p99_ms'])} = {t:.2f}× raw's {_ms(floor['ttft_p99_ms'])}; "
            f"gap p99 {_ms(ours['gap_p99_ms'])} = {g:.2f}× raw's {_ms(floor['gap_p99_ms'])}; "
            f"{ours['complete']:,}/{ours['streams']:,} complete"
        )
        if sse.get("ttft_p99_ms") is not None:
            figure += (
                f"; aiohttp-sse's minimal handler, the framework alone: TTFT p99 "
                f"{_ms(sse['ttft_p99_ms'])} = {sse['ttft_p99_ms'] / floor['ttft_p99_ms']:.2f}× "
                f"raw's, gap p99 {_ms(sse.get('gap_p99_ms'))}, "
                f"{sse.get('complete', 0):,}/{sse.get('streams', 0):,} complete"
            )
        arrivals = (results.get("capacity") or {}).get("arrivals_per_s")
        if arrivals:
            figure += f"; streams arrived at {arrivals:,.0f} a second"
        add("20.3", target, figure, t <= 1.2 and g <= 1.2 and complete)
        if starts:
            rows[-1]["figure"] += f"; {starts}"
    else:
        add("20.3", target, "not measured", None)

    plain, uv = (fair.get(k) or {} for k in (SERVER, UVLOOP))
    target = "uvloop against the standard loop, same run (fair workload): report both"
    if plain.get("tokens_per_s") and uv.get("tokens_per_s"):
        ratio = uv["tokens_per_s"] / plain["tokens_per_s"]
        wins = ratio >= 1.1 and (uv.get("ttft_p99_ms") or 0) <= (plain.get("ttft_p99_ms") or 0)
        add("20.5", target, f"uvloop {_rate(uv['tokens_per_s'])} tok/s, first token p99 "
            f"{_ms(uv.get('ttft_p99_ms'))}; standard loop {_rate(plain['tokens_per_s'])} tok/s, "
            f"{_ms(plain.get('ttft_p99_ms'))}: uvloop {ratio:.2f}× the throughput"
            + ("; it wins here" if wins else "; no clear win, so `serve` keeps the standard loop "
               "(`--loop uvloop` or `auto` to choose it)"), True)  # fmt: skip
    else:
        add("20.5", target, "not measured", None)
    return rows


def start_costs(starts: dict[str, Any]) -> str:
    """What one stream's start costs the server (the ``starts`` workload: one-token streams, a
    connection each), beside aiohttp-sse's minimal handler and the raw floor; empty when it was
    not run. A start that costs more delays every stream waiting behind it: the headers of new
    streams wait for the starts queued before them."""
    cost = {k: (starts.get(k) or {}).get("server_cpu_us_per_token") for k in (SERVER, SSE, RAW)}
    if cost[SERVER] is None:
        return ""
    others = ", ".join(f"{label} {cost[k]:.0f} µs" for k, label in
                       ((SSE, "aiohttp-sse's minimal handler"), (RAW, "raw")) if cost[k])  # fmt: skip
    return f"a stream's start (one token, a connection) costs {cost[SERVER]:.0f} µs of server " \
        f"CPU ({others})"  # fmt: skip


def round_two(rows: list[dict[str, Any]]) -> list[str]:
    """Issue 20's rows again, as the "Round two" list the issue asks for."""
    verdicts = {True: "met", False: "**MISSED**", None: "not measured"}
    items = [
        f"- **{r['number']}** {r['target']}: {r['figure']} — {verdicts[r['met']]}"
        for r in rows
        if str(r["number"]).startswith("20.")
    ]
    return ["### Round two", "", *items, ""] if items else []
