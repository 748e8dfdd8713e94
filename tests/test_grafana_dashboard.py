"""``docs/grafana/streamserver.json``: every metric its PromQL queries name is one a running server
exposes at ``GET /metrics``, with samples, once streams of every kind have run (completed, failed
on an upstream error, resumed, refused)."""

from __future__ import annotations

import json
import re

from conftest import REPO, base_config, upstream_config
from prometheus_client.parser import text_string_to_metric_families

from streamserver.devtools.fake_upstream import Plan

DASHBOARD = REPO / "docs" / "grafana" / "streamserver.json"

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_VARIABLES = re.compile(r"\$\{?\w+\}?")
_NAME = re.compile(r"\b[a-zA-Z_:][a-zA-Z0-9_:]*\b(?!\s*\()")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "group_left", "group_right", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: its identifiers that are not a function,
    a keyword, a label (in a matcher or a grouping), a range or a dashboard variable."""
    for pattern in (_STRINGS, _MATCHERS, _RANGES, _GROUPING, _VARIABLES):
        expr = pattern.sub(" ", expr)
    return {name for name in _NAME.findall(expr) if name.lower() not in _KEYWORDS}


def dashboard_queries() -> list[str]:
    """Every query of every panel."""
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def test_metric_names_are_read_from_promql():
    expr = (
        'histogram_quantile(0.95, sum by (le) (rate(a_bucket{route="/x", le!="+Inf"}[$__rate_interval])))'
        " / on (model) group_left sum without (route) (b_total offset 5m) > bool 1"
    )

    assert metric_names(expr) == {"a_bucket", "b_total"}


def test_the_dashboard_charts_what_an_operator_watches():
    named = set().union(*map(metric_names, dashboard_queries()))

    assert {
        "streamserver_streams_finished_total",  # streams by outcome
        "streamserver_time_to_first_token_seconds_bucket",
        "streamserver_stream_duration_seconds_bucket",
        "streamserver_tokens_total",
        "streamserver_upstream_error_responses_total",
        "streamserver_requests_rejected_total",
        "streamserver_resumes_total",
        "streamserver_active_streams",
    } <= named
    assert any(expr.startswith("histogram_quantile(") for expr in dashboard_queries())


async def test_every_metric_the_dashboard_queries_is_in_metrics(serve, upstream):
    fake, url = upstream
    config = upstream_config(url, max_retries=0)
    client = await serve(base_config(**config, metrics={"sinks": ["memory", "prometheus"]}))
    done = await client.sse("/v1/stream", params={"prompt": "hello"})
    fake.queue(Plan(fault="server_error"))
    failed = await client.sse("/v1/stream", params={"prompt": "hi", "model": "fake-model"})
    stream_id = done.json()[0]["stream_id"]
    resumed = await client.sse(
        f"/v1/streams/{stream_id}", headers={"Last-Event-ID": f"{stream_id}:1"}
    )
    refused = await client.http.get("/v1/stream")  # no prompt
    assert (failed.names()[1], resumed.status, refused.status_code) == ("error", 200, 400)

    exposition = (await client.http.get("/metrics")).text
    sampled = {
        sample.name
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }

    named = set().union(*map(metric_names, dashboard_queries()))
    assert named - sampled == set()
