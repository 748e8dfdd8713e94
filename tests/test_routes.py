"""The SSE routes of the contract (the README's route table) in their exact wire shape, as an independent
SSE parser (httpx-sse) reads them from the routes the shipped ``config.toml`` declares; plus
``/health``, ``/v1/stream/metrics`` and the JSON errors of refused requests."""

from __future__ import annotations

import asyncio
import json
import tomllib
from collections.abc import Callable
from typing import Any

import pytest
from conftest import FAST_SIMULATED, REPO, Client, Received, base_config

from streamserver.tokens import tokenize

SHIPPED_ROUTES = tomllib.loads((REPO / "config.toml").read_text(encoding="utf-8"))["routes"]

PROMPT = 'Hello, wörld 🙂!\r\nA "quoted" word, a tab\tand\n\ndata: not an event\nid: 9\r:x'
TOKENS = tokenize(PROMPT)

ROUTES = [
    ("GET", "/stream"),
    ("GET", "/stream/v2"),
    ("GET", "/stream/safe"),
    ("GET", "/stream/progress"),
    ("GET", "/v1/stream"),
    ("POST", "/v1/stream"),
]
ROUTE_IDS = [f"{method} {path}" for method, path in ROUTES]


def shipped_config(simulated: dict[str, Any] | None = None, **sections: Any) -> dict[str, Any]:
    """The test config with the shipped config.toml's routes and a fast simulated provider."""
    provider = {**FAST_SIMULATED, **(simulated or {})}
    return base_config(routes=SHIPPED_ROUTES, providers={"simulated": provider}, **sections)


@pytest.fixture
async def client(serve) -> Client:
    return await serve(shipped_config())


async def stream(client: Client, method: str, path: str, **fields: Any) -> Received:
    """One stream request; fields go in the query string (GET) or the JSON body (POST)."""
    fields.setdefault("prompt", PROMPT)
    fields.setdefault("model", "echo")
    if method == "POST":
        return await client.sse(path, method="POST", json_body=fields)
    return await client.sse(path, params=fields)


def token_texts(got: Received) -> list[str]:
    """The text of each token event, in any of the four shapes."""
    texts = []
    for event, data in zip(got.events, got.json(), strict=True):
        if "token" in data:
            texts.append(data["token"])
        elif event.event == "token":
            texts.append(data["content"])
    return texts


async def metrics(client: Client) -> dict[str, Any]:
    response = await client.http.get("/v1/stream/metrics")
    assert response.status_code == 200
    return response.json()


async def metrics_when(
    client: Client, predicate: Callable[[dict[str, Any]], bool], within_s: float = 2.0
) -> dict[str, Any]:
    """Poll /v1/stream/metrics (bounded) until ``predicate`` holds; returns those figures."""
    deadline = asyncio.get_running_loop().time() + within_s
    while not predicate(figures := await metrics(client)):
        assert asyncio.get_running_loop().time() < deadline, figures
        await asyncio.sleep(0.02)
    return figures


# Wire shapes


async def test_stream_sends_token_objects_then_done(client):
    got = await stream(client, "GET", "/stream")

    assert got.status == 200
    assert got.names() == ["message"] * (len(TOKENS) + 1)
    assert got.json() == [{"token": t} for t in TOKENS] + [{"done": True}]


@pytest.mark.parametrize("path", ["/stream/v2", "/stream/safe"])
async def test_events_routes_send_token_events_then_done(client, path):
    got = await stream(client, "GET", path)

    assert got.status == 200
    assert got.names() == ["token"] * len(TOKENS) + ["done"]
    assert got.json() == [{"content": t} for t in TOKENS] + [{"finished": True}]


async def test_progress_sends_start_running_totals_then_complete(client):
    got = await stream(client, "GET", "/stream/progress")

    assert got.status == 200
    assert got.names() == ["start"] + ["token"] * len(TOKENS) + ["complete"]
    assert got.json() == [
        {"status": "generating"},
        *({"content": t, "total_tokens": n} for n, t in enumerate(TOKENS, 1)),
        {"status": "done", "total_tokens": len(TOKENS), "full_response": PROMPT},
    ]


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_v1_stream_sends_start_indexed_tokens_then_end(client, method):
    got = await stream(client, method, "/v1/stream")
    stream_id = got.headers["X-Stream-ID"]
    start, *tokens, end = got.json()

    assert got.status == 200
    assert got.names() == ["stream_start"] + ["token"] * len(TOKENS) + ["stream_end"]
    assert start == {"stream_id": stream_id, "model": "echo"}
    assert tokens == [{"content": t, "index": i} for i, t in enumerate(TOKENS)]
    assert set(end) == {
        "stream_id",
        "tokens_generated",
        "duration_ms",
        "tokens_per_second",
        "finish_reason",
        "usage",
        "tool_calls",
    }
    assert end["usage"] == {
        "prompt_tokens": len(TOKENS),  # the echo model's prompt is its answer
        "completion_tokens": len(TOKENS),
        "total_tokens": 2 * len(TOKENS),
        "estimated": False,
    }
    assert end["tool_calls"] == []
    assert end["stream_id"] == stream_id
    assert end["tokens_generated"] == len(TOKENS)
    assert end["finish_reason"] == "stop"
    assert isinstance(end["duration_ms"], int | float) and end["duration_ms"] >= 0
    assert isinstance(end["tokens_per_second"], int | float) and end["tokens_per_second"] >= 0


async def test_v1_stream_post_takes_messages_and_answers_the_last_user_message(client):
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "an earlier question"},
        {"role": "assistant", "content": "an earlier answer"},
        {"role": "user", "content": "the question now"},
    ]
    got = await client.sse(
        "/v1/stream", method="POST", json_body={"messages": messages, "model": "echo"}
    )

    assert got.status == 200
    assert "".join(token_texts(got)) == "the question now"


@pytest.mark.parametrize(("method", "path"), ROUTES, ids=ROUTE_IDS)
async def test_every_route_delivers_the_echoed_prompt_exactly(client, method, path):
    got = await stream(client, method, path)

    assert token_texts(got) == TOKENS
    assert "".join(token_texts(got)) == PROMPT


async def test_without_a_model_the_route_uses_the_providers_first_model(client):
    got = await client.sse("/v1/stream", params={"prompt": "Tell me about streaming."})
    start, end = got.json()[0], got.json()[-1]

    assert start["model"] == "simulated"
    assert end["tokens_generated"] >= FAST_SIMULATED["answer_tokens"]
    assert "".join(token_texts(got)) != "Tell me about streaming."


# Event ids, retry and headers


@pytest.mark.parametrize(("method", "path"), ROUTES, ids=ROUTE_IDS)
async def test_every_event_carries_the_stream_id_and_a_contiguous_seq(client, method, path):
    got = await stream(client, method, path)
    stream_id = got.headers["X-Stream-ID"]

    assert stream_id
    assert [e.id for e in got.events] == [f"{stream_id}:{seq}" for seq in range(len(got.events))]


async def test_two_streams_never_share_an_id(client):
    first = await stream(client, "GET", "/stream")
    second = await stream(client, "GET", "/stream")

    first_ids = {e.id.rpartition(":")[0] for e in first.events}
    second_ids = {e.id.rpartition(":")[0] for e in second.events}
    assert len(first_ids) == len(second_ids) == 1
    assert first_ids != second_ids


@pytest.mark.parametrize(
    ("method", "path"), [ROUTES[0], ROUTES[-1]], ids=["GET /stream", "POST /v1/stream"]
)
async def test_the_first_event_carries_the_configured_retry_hint(serve, method, path):
    client = await serve(shipped_config(server={"retry_ms": 1500}))
    got = await stream(client, method, path)

    assert got.events[0].retry == 1500
    assert all(e.retry is None for e in got.events[1:])


@pytest.mark.parametrize(("method", "path"), ROUTES, ids=ROUTE_IDS)
async def test_sse_responses_are_event_streams_that_no_proxy_caches_or_buffers(
    client, method, path
):
    got = await stream(client, method, path)

    assert got.status == 200
    assert got.headers["Content-Type"].startswith("text/event-stream")
    assert got.headers["Cache-Control"] == "no-cache"
    assert got.headers["X-Accel-Buffering"] == "no"


@pytest.fixture
async def slow_first_token(serve) -> Client:
    """First token after 400 ms, keep-alive pings every 50 ms."""
    return await serve(shipped_config({"ttft_ms": 400}, server={"ping_interval_s": 0.05}))


@pytest.mark.parametrize(
    ("path", "first_token"), [("/stream", 'data: {"token"'), ("/v1/stream", "event: token")]
)
async def test_keep_alive_comments_arrive_before_a_slow_first_token(
    slow_first_token, path, first_token
):
    params = {"prompt": "slow start", "model": "echo"}
    async with slow_first_token.http.stream("GET", path, params=params) as response:
        lines = (await response.aread()).decode().splitlines()
    token_at = next(i for i, line in enumerate(lines) if line.startswith(first_token))

    comments = [line for line in lines[:token_at] if line.startswith(":")]
    assert len(comments) >= 2, lines


async def test_keep_alive_comments_leave_the_events_intact(slow_first_token):
    got = await stream(slow_first_token, "GET", "/v1/stream", prompt="slow start")
    # httpx-sse 0.4 turns a comment block that follows an event with an id into an empty
    # "message" event (florimondmanca/httpx-sse#35); EventSource dispatches nothing for it.
    got.events = [e for e in got.events if (e.event, e.data) != ("message", "")]

    assert got.names() == ["stream_start", "token", "token", "stream_end"]
    assert "".join(token_texts(got)) == "slow start"
    assert [e.id.rpartition(":")[2] for e in got.events] == ["0", "1", "2", "3"]


# /health and /v1/stream/metrics


async def test_health_says_healthy_with_no_active_streams(client):
    response = await client.http.get("/health")

    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json() == {"status": "healthy", "active_streams": 0}


async def test_metrics_start_at_zero(client):
    figures = await metrics(client)

    assert figures["active_streams"] == 0
    assert figures["total_streams"] == 0
    assert figures["total_tokens"] == 0


async def test_metrics_count_finished_streams_and_their_tokens(client):
    await stream(client, "GET", "/stream", prompt="one two three")
    await stream(client, "POST", "/v1/stream", prompt=PROMPT)

    figures = await metrics(client)
    assert figures["total_streams"] == 2
    assert figures["total_tokens"] == len(tokenize("one two three")) + len(TOKENS)
    assert figures["active_streams"] == 0


async def test_a_live_stream_is_active_until_its_reader_leaves(serve):
    client = await serve(shipped_config({"ttft_ms": 5000}, server={"ping_interval_s": 0.05}))
    params = {"prompt": "never reached", "model": "echo"}
    async with client.http.stream("GET", "/v1/stream", params=params) as response:
        assert response.status_code == 200
        live = await metrics(client)
        health = (await client.http.get("/health")).json()

    assert live["active_streams"] == 1
    assert live["total_streams"] == 1
    assert health == {"status": "healthy", "active_streams": 1}
    settled = await metrics_when(client, lambda figures: figures["active_streams"] == 0)
    assert settled["total_streams"] == 1
    assert (await client.http.get("/health")).json()["active_streams"] == 0


# Refused requests: a JSON error, and no stream


def form(body: str) -> dict[str, Any]:
    return {"content": body, "headers": {"Content-Type": "application/x-www-form-urlencoded"}}


def raw_json(body: str) -> dict[str, Any]:
    return {"content": body, "headers": {"Content-Type": "application/json"}}


REFUSED = [
    # (method, path, request kwargs for httpx, status, code)
    ("GET", "/stream", {"params": {}}, 400, "missing_prompt"),
    ("GET", "/stream", {"params": {"prompt": ""}}, 400, "missing_prompt"),
    ("GET", "/stream/v2", {"params": {"prompt": "  \n "}}, 400, "missing_prompt"),
    ("POST", "/v1/stream", {"json": {"model": "echo"}}, 400, "missing_prompt"),
    ("POST", "/v1/stream", {"json": {"prompt": 42}}, 400, "missing_prompt"),
    ("GET", "/stream/v2", {"params": {"prompt": "hi", "model": "no-such-model"}}, 400, "unknown_model"),
    ("GET", "/stream", {"params": {"prompt": "hi", "buffer": "word"}}, 400, "override_not_allowed"),
    ("GET", "/stream/safe", {"params": {"prompt": "hi", "format": "simple"}}, 400, "override_not_allowed"),
    ("GET", "/stream/progress", {"params": {"prompt": "hi", "max_tokens": "5"}}, 400, "override_not_allowed"),
    ("GET", "/v1/stream", {"params": {"prompt": "hi", "max_tokens": "0"}}, 400, "invalid_max_tokens"),
    ("GET", "/v1/stream", {"params": {"prompt": "hi", "max_tokens": "-3"}}, 400, "invalid_max_tokens"),
    ("GET", "/v1/stream", {"params": {"prompt": "hi", "max_tokens": "many"}}, 400, "invalid_max_tokens"),
    ("GET", "/v1/stream", {"params": {"prompt": "hi", "max_tokens": "\u00b2"}}, 400, "invalid_max_tokens"),
    ("GET", "/v1/stream", {"params": {"prompt": "hi", "max_tokens": "\u0663"}}, 400, "invalid_max_tokens"),
    ("GET", "/v1/stream", {"params": {"prompt": "hi", "max_tokens": "1" * 5000}}, 400, "invalid_max_tokens"),
    ("POST", "/v1/stream", {"json": {"prompt": "hi", "max_tokens": "\u00b2"}}, 400, "invalid_max_tokens"),
    ("POST", "/v1/stream", {"json": {"prompt": "hi", "max_tokens": 2.5}}, 400, "invalid_max_tokens"),
    ("POST", "/v1/stream", {"json": {"prompt": "hi", "max_tokens": True}}, 400, "invalid_max_tokens"),
    ("POST", "/v1/stream", {"json": {"prompt": "hi", "max_tokens": 10**9}}, 400, "max_tokens_too_large"),
    ("POST", "/v1/stream", raw_json("{not json"), 400, "invalid_json"),
    ("POST", "/v1/stream", raw_json('["a list"]'), 400, "invalid_json"),
    ("POST", "/v1/stream", raw_json(""), 400, "invalid_json"),
    ("POST", "/v1/stream", form("prompt=hi&model=echo"), 400, "invalid_json"),
    ("POST", "/v1/stream", {"json": {"prompt": "hi", "colour": "blue"}}, 400, "unknown_field"),
    ("GET", "/v1/stream", {"params": {"prompt": "hi", "colour": "blue"}}, 400, "unknown_field"),
    ("POST", "/v1/stream", {"json": {"prompt": "hi", "buffer": "no-such"}}, 400, "unknown_buffer"),
    ("POST", "/v1/stream", {"json": {"prompt": "hi", "buffer": {"an": "object"}}}, 400, "invalid_field"),
    ("POST", "/v1/stream", {"json": {"prompt": "hi", "format": ["a", "list"]}}, 400, "invalid_field"),
    ("POST", "/v1/stream", {"json": {"prompt": "hi", "format": "no-such"}}, 400, "unknown_format"),
    ("POST", "/v1/stream", {"json": {"prompt": "hi", "provider": "no-such"}}, 400, "unknown_provider"),
    ("POST", "/v1/stream", {"json": {"prompt": "hi", "messages": []}}, 400, "invalid_field"),
    ("POST", "/v1/stream", {"json": {"messages": []}}, 400, "invalid_messages"),
    ("POST", "/v1/stream", {"json": {"messages": [{"role": "robot", "content": "x"}]}}, 400, "invalid_messages"),
    ("POST", "/v1/stream", raw_json('{"prompt": "half an emoji \\ud83d"}'), 400, "invalid_text"),
    ("POST", "/v1/stream", raw_json('{"messages": [{"role": "user", "content": "\\udc00"}]}'), 400, "invalid_text"),
    ("GET", "/v1/stream", {"params": {"prompt": "hi", "last_event_id": "not-an-id"}}, 400, "invalid_last_event_id"),
    ("GET", "/v1/stream", {"params": {"prompt": "hi", "last_event_id": "st_x:\u00b2"}}, 400, "invalid_last_event_id"),
    ("GET", "/v1/stream", {"params": {"prompt": "hi", "last_event_id": "st_x:\u0663"}}, 400, "invalid_last_event_id"),
    ("GET", "/v1/stream", {"headers": {"Last-Event-ID": b"st_x:\xc2\xb2"}}, 400, "invalid_last_event_id"),
    ("GET", "/v1/stream", {"headers": {"Last-Event-ID": "st_x:" + "9" * 5000}}, 400, "invalid_last_event_id"),
    ("GET", "/stream", {"params": {"prompt": "hi", "last_event_id": "st_unknown:3"}}, 404, "stream_not_found"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("method", "path", "request_kwargs", "status", "code"),
    REFUSED,
    ids=[f"{m} {p} {code}-{i}" for i, (m, p, _, _, code) in enumerate(REFUSED)],
)
async def test_a_refused_request_gets_a_json_error_and_starts_no_stream(
    client, method, path, request_kwargs, status, code
):
    response = await client.http.request(method, path, **request_kwargs)

    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    figures = await metrics(client)
    assert figures["total_streams"] == 0
    assert figures["active_streams"] == 0


async def test_a_prompt_over_the_limit_is_413_and_starts_no_stream(serve):
    client = await serve(shipped_config(limits={"max_prompt_chars": 10}))
    response = await client.http.get("/stream", params={"prompt": "x" * 11})

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "prompt_too_large"
    assert (await metrics(client))["total_streams"] == 0
    assert (await client.http.get("/stream", params={"prompt": "x" * 10})).status_code == 200


async def test_a_body_over_the_limit_is_413_and_starts_no_stream(serve):
    client = await serve(shipped_config(limits={"max_body_bytes": 100}))
    response = await client.http.post("/v1/stream", json={"prompt": "x" * 200})

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"
    assert (await metrics(client))["total_streams"] == 0


async def test_an_unknown_path_is_a_json_404(client):
    response = await client.http.get("/stream/v3", params={"prompt": "hi"})

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize("path", ["/static/nope.js", "/static/", "/static/%2e%2e/app.py"])
async def test_a_path_under_static_that_is_not_a_page_file_is_a_json_404(client, path):
    response = await client.http.get(path)

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


async def test_the_demo_page_files_are_served(client):
    page = await client.http.get("/")
    script = await client.http.get("/static/app.js")
    style = await client.http.get("/static/style.css")

    assert page.status_code == script.status_code == style.status_code == 200
    assert "static/app.js" in page.text
    assert "javascript" in script.headers["Content-Type"]
    assert style.headers["Content-Type"].startswith("text/css")


async def test_a_method_the_route_does_not_serve_is_a_json_405_with_allow(client):
    response = await client.http.post("/stream", json={"prompt": "hi"})

    assert response.status_code == 405
    assert "GET" in response.headers["Allow"]
    assert response.json()["error"]["code"] == "method_not_allowed"
    assert (await metrics(client))["total_streams"] == 0


# A provider failure mid-stream


FAILURE_SHAPES = {
    "/stream": ["message"] * 3 + ["message", "message"],
    "/stream/v2": ["token"] * 3 + ["error", "done"],
    "/stream/safe": ["token"] * 3 + ["error", "done"],
    "/stream/progress": ["start"] + ["token"] * 3 + ["error", "complete"],
    "/v1/stream": ["stream_start"] + ["token"] * 3 + ["error", "stream_end"],
}


@pytest.mark.parametrize(("method", "path"), ROUTES, ids=ROUTE_IDS)
async def test_a_provider_failure_mid_stream_is_an_error_event_then_the_routes_end(
    serve, method, path
):
    client = await serve(shipped_config({"fail_after_tokens": 3}))
    got = await stream(client, method, path)
    *_, error, end = got.json()
    stream_id = got.headers["X-Stream-ID"]

    assert got.status == 200
    assert got.names() == FAILURE_SHAPES[path]
    assert token_texts(got) == TOKENS[:3]
    assert error["code"] == "provider_error"
    assert isinstance(error["error"], str) and error["error"]
    assert [e.id for e in got.events] == [f"{stream_id}:{seq}" for seq in range(len(got.events))]
    if path == "/stream":
        assert set(error) == {"error", "code"}
        assert end == {"done": True}
    elif path == "/stream/progress":
        assert set(error) == {"error", "code"}
        assert end == {"status": "error", "total_tokens": 3, "full_response": "".join(TOKENS[:3])}
    elif path == "/v1/stream":
        assert set(error) == {"error", "code", "stream_id"}
        assert error["stream_id"] == stream_id
        assert end["finish_reason"] == "error"
        assert end["tokens_generated"] == 3
    else:
        assert set(error) == {"error", "code"}
        assert end == {"finished": True}
    figures = await metrics(client)
    assert figures["active_streams"] == 0
    assert figures["outcomes"] == {"error": 1}


async def test_the_ai_sdk_format_speaks_the_ui_message_stream_protocol(client):
    got = await client.sse(
        "/v1/stream", params={"prompt": "hi there", "model": "echo", "format": "ai-sdk"}
    )

    assert got.status == 200
    assert got.headers["x-vercel-ai-ui-message-stream"] == "v1"
    assert got.events[-1].data == "[DONE]"
    parts = [json.loads(e.data) for e in got.events[:-1]]
    assert [p["type"] for p in parts] == [
        "start", "start-step", "text-start", "text-delta", "text-delta", "text-end", "finish-step", "finish",
    ]  # fmt: skip
    assert parts[0]["messageId"] == "msg_" + got.headers["X-Stream-ID"]
    assert "".join(p["delta"] for p in parts if p["type"] == "text-delta") == "hi there"
    assert {p["id"] for p in parts if p["type"].startswith("text-")} == {"text-1"}


async def test_max_tokens_written_as_an_integral_float_is_that_integer(client):
    got = await stream(client, "POST", "/v1/stream", max_tokens=3.0)

    assert got.status == 200
    assert got.json()[-1]["tokens_generated"] == 3
