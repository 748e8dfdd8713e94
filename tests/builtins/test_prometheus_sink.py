"""The ``prometheus`` sink as a scraper sees it: ``GET /metrics`` after real streams and a refused
request, read with prometheus-client's own text parser (an independent reader of the exposition)."""

from __future__ import annotations

import asyncio

from conftest import Client, Received, base_config
from prometheus_client.parser import text_string_to_metric_families

STREAM = {"route": "/v1/stream", "provider": "simulated", "model": "simulated"}
ECHO = {"route": "/stream", "provider": "simulated", "model": "echo"}


class Scrape:
    """Every sample of one exposition, found by name and exact label set."""

    def __init__(self, text: str) -> None:
        self.samples = [
            s for family in text_string_to_metric_families(text) for s in family.samples
        ]

    def value(self, name: str, **labels: str) -> float:
        """The one sample called ``name`` with exactly these labels (an error if there is none)."""
        found = [s.value for s in self.samples if s.name == name and s.labels == labels]
        assert len(found) == 1, (name, labels, [s for s in self.samples if s.name == name])
        return found[0]

    def labelsets(self, name: str) -> list[dict[str, str]]:
        """The label sets of every sample called ``name``."""
        return [s.labels for s in self.samples if s.name == name]


async def scrape(client: Client) -> Scrape:
    response = await client.http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    return Scrape(response.text)


def tokens_of(got: Received) -> int:
    """Token events of a stream read through the raw buffer: one per provider delta."""
    return sum(
        1
        for e, data in zip(got.events, got.json(), strict=True)
        if e.event == "token" or "token" in data
    )


async def test_metrics_count_streams_tokens_latencies_and_rejections_by_label(serve):
    client = await serve(base_config(metrics={"sinks": ["memory", "prometheus"]}))
    generated = [
        await client.sse("/v1/stream", params={"prompt": f"question {i}"}) for i in range(2)
    ]
    echoed = await client.sse("/stream", params={"prompt": "one two three", "model": "echo"})
    refused = await client.http.get("/v1/stream")  # no prompt

    got = await scrape(client)

    assert [g.json()[0]["model"] for g in generated] == ["simulated", "simulated"]
    assert [g.names()[-1] for g in generated] == ["stream_end", "stream_end"]
    assert refused.status_code == 400
    generated_tokens = sum(tokens_of(g) for g in generated)
    assert generated_tokens == sum(g.json()[-1]["tokens_generated"] for g in generated) > 0
    assert tokens_of(echoed) == 3

    assert got.value("streamserver_streams_started_total", **STREAM) == 2
    assert got.value("streamserver_streams_started_total", **ECHO) == 1
    assert got.value("streamserver_streams_finished_total", **STREAM, outcome="completed") == 2
    assert got.value("streamserver_streams_finished_total", **ECHO, outcome="completed") == 1
    assert len(got.labelsets("streamserver_streams_finished_total")) == 2  # no other outcome
    assert got.value("streamserver_tokens_total", **STREAM) == generated_tokens
    assert got.value("streamserver_tokens_total", **ECHO) == 3
    assert got.value("streamserver_characters_total", **ECHO) == len("one two three")
    assert got.value("streamserver_active_streams") == 0
    for histogram in (
        "streamserver_time_to_first_token_seconds",
        "streamserver_stream_duration_seconds",
    ):
        assert got.value(f"{histogram}_count", **STREAM) == 2
        assert got.value(f"{histogram}_bucket", **STREAM, le="+Inf") == 2
        assert got.value(f"{histogram}_count", **ECHO) == 1
    assert got.labelsets("streamserver_requests_rejected_total") == [
        {"route": "/v1/stream", "status": "400", "code": "missing_prompt"}
    ]
    assert got.value(
        "streamserver_requests_rejected_total", route="/v1/stream", status="400", code="missing_prompt"
    ) == 1  # fmt: skip


async def test_active_streams_gauge_counts_a_stream_while_it_runs(serve):
    slow = {"ttft_ms": 0, "tokens_per_second": 20, "answer_tokens": 1000}
    client = await serve(
        base_config(metrics={"sinks": ["memory", "prometheus"]}, providers={"simulated": slow})
    )

    async with client.http.stream("GET", "/v1/stream", params={"prompt": "go"}) as response:
        await anext(response.aiter_lines())  # the stream has started
        during = await scrape(client)
    # grace_s = 0: the dropped reader cancels the stream at once; its outcome lands a moment later
    for _ in range(100):
        after = await scrape(client)
        if after.value("streamserver_active_streams") == 0:
            break
        await asyncio.sleep(0.01)

    assert during.value("streamserver_active_streams") == 1
    assert during.value("streamserver_streams_started_total", **STREAM) == 1
    assert after.value("streamserver_active_streams") == 0
    assert after.value("streamserver_streams_finished_total", **STREAM, outcome="client_gone") == 1
