"""Round two's relay targets (issue 20, points 1 and 6) for ``report.md``
(``benchmarks/report.py`` calls this): streamserver's ``/v1/chat/completions`` relaying the fake
upstream against the LiteLLM proxy and the raw relay floor, text and tool-call streams."""

from __future__ import annotations

from typing import Any

from .figures import _mib, _ms, _rate

SERVER, FLOOR, LITELLM, UPSTREAM = "streamserver", "raw-relay", "litellm", "upstream"


def relay_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows 20.1 (text streams) and 20.6 (tool-call streams); ``met`` is None when a figure
    could not be measured."""
    s = results["summary"]
    rows: list[dict[str, Any]] = []
    for number, workload, kind in (("20.1", "relay-text", "text"),
                                   ("20.6", "relay-tool", "tool-call")):  # fmt: skip
        figures = s.get(workload, {})
        ours, floor, litellm, upstream = (
            figures.get(k) or {} for k in (SERVER, FLOOR, LITELLM, UPSTREAM)
        )
        us = ours.get("server_cpu_us_per_token")
        floor_us, litellm_us = (
            floor.get("server_cpu_us_per_token"),
            litellm.get("server_cpu_us_per_token"),
        )
        own = upstream.get("ttft_p50_ms")

        def added(server: dict[str, Any], own: Any = own) -> str:
            ttft = server.get("ttft_p50_ms")
            return _ms(ttft - own) if ttft is not None and own is not None else "-"

        detail = (
            f" (TTFT p50 added over the upstream's own {_ms(own)}: streamserver {added(ours)}, "
            f"floor {added(floor)}, LiteLLM {added(litellm)}; peak memory {_mib(ours.get('peak_rss_kib'))}"
            f", floor {_mib(floor.get('peak_rss_kib'))}, LiteLLM {_mib(litellm.get('peak_rss_kib'))})"
        )
        target = f"relay, {kind} streams: server CPU per relayed token ≤ 1/30 of LiteLLM's"
        if us and litellm_us:  # (a smoke run may measure no CPU at all)
            rows.append({"number": number, "target": target, "met": us * 30 <= litellm_us,
                         "figure": f"{us:.1f} µs = 1/{litellm_us / us:.0f} of LiteLLM's "
                         f"{litellm_us:.0f} µs" + detail})  # fmt: skip
        else:
            rows.append({"number": number, "target": target, "figure": "not measured", "met": None})
        target = f"relay, {kind} streams: server CPU per relayed token ≤ 1.5× the raw relay floor's"
        if us is not None and floor_us:
            rows.append({"number": number, "target": target, "met": us <= 1.5 * floor_us,
                         "figure": f"{us:.1f} µs = {us / floor_us:.2f}× the floor's "
                         f"{floor_us:.1f} µs"})  # fmt: skip
        else:
            rows.append({"number": number, "target": target, "figure": "not measured", "met": None})
    paced = s.get("relay-paced", {})
    asked = next((w["connections"] * w["upstream_pace"] for w in results["workloads"]
                  if w["name"] == "relay-paced" and w.get("upstream_pace")), None)  # fmt: skip
    delivered = (paced.get(SERVER) or {}).get("delivered_per_s")
    shown = ", ".join(f"{name} {_rate(f.get('delivered_per_s'))}" for name, f in paced.items() if f)
    target = "relay at a paced upstream (32 × 100 tok/s): ≥ 95% of the upstream's rate delivered"
    if delivered is not None and asked:
        rows.append({"number": "20.1", "target": target, "met": delivered >= 0.95 * asked,
                     "figure": f"{_rate(delivered)} of {_rate(asked)} tok/s = "
                     f"{delivered / asked:.1%} ({shown})"})  # fmt: skip
    else:
        rows.append({"number": "20.1", "target": target, "figure": "not measured", "met": None})
    return rows
