"""Auth, tickets, CORS and limits, as a client sees them."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
import websockets
from conftest import SCRIPTED, base_config, script

import streamserver

KEYS = "alice:sk-alice-0123456789,bob:sk-bob-9876543210"


@pytest.fixture
def keys(monkeypatch):
    monkeypatch.setenv("STREAMSERVER_API_KEYS", KEYS)


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
async def secured(serve, keys):
    return await serve(base_config(auth={"mode": "api_key"}, resume={"grace_s": 5}, **SCRIPTED))


async def test_a_request_without_a_key_is_401(secured):
    response = await secured.http.get("/stream", params={"prompt": "hi"})

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.json()["error"]["code"] == "unauthorized"


async def test_a_wrong_key_is_401_and_never_echoed(secured):
    response = await secured.http.get("/stream", params={"prompt": "hi"}, headers=auth("sk-guess"))

    assert response.status_code == 401
    assert "sk-guess" not in response.text


async def test_a_valid_key_streams(secured):
    got = await secured.sse(
        "/stream", params={"prompt": "hello", "model": "echo"}, headers=auth("sk-bob-9876543210")
    )

    assert got.status == 200
    assert got.json()[-1] == {"done": True}


async def test_health_is_public(secured):
    assert (await secured.http.get("/health")).status_code == 200


@pytest.mark.parametrize("name", ["api_key", "key", "token", "access_token"])
async def test_a_key_in_the_url_is_refused(secured, name):
    response = await secured.http.get(
        "/stream", params={"prompt": "hi", name: "sk-alice-0123456789"}
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "key_in_url"
    assert "sk-alice" not in response.text


@pytest.mark.parametrize("name", ["API_KEY", "Api-Key", "apiKey", "Token", "ACCESS_TOKEN", "KEY"])
async def test_a_key_name_in_the_url_is_refused_whatever_its_case_or_separator(secured, name):
    response = await secured.http.get(
        "/stream", params={"prompt": "hi", name: "sk-alice-0123456789"}
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "key_in_url"


async def test_a_value_shaped_like_a_key_is_refused_under_any_name(secured):
    response = await secured.http.get(
        "/stream", params={"prompt": "hi", "auth": "sk-proj-AbCdEf0123456789xyz"}
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "key_in_url"
    assert "sk-proj" not in response.text


async def test_a_configured_key_of_any_shape_is_refused_under_any_name(serve, monkeypatch):
    monkeypatch.setenv("STREAMSERVER_API_KEYS", "carol:correct-horse-battery-staple")
    client = await serve(base_config(auth={"mode": "api_key"}, **SCRIPTED))
    response = await client.http.get(
        "/stream", params={"prompt": "hi", "secret": "correct-horse-battery-staple"}
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "key_in_url"


async def test_a_prompt_that_merely_mentions_sk_is_not_taken_for_a_key(secured):
    got = await secured.sse(
        "/stream",
        params={"prompt": "sk-learn or pytorch?", "model": "echo"},
        headers=auth("sk-bob-9876543210"),
    )

    assert got.status == 200


async def test_a_ticket_opens_one_path_for_eventsource(secured):
    issued = await secured.http.post(
        "/v1/tickets", json={"path": "/stream"}, headers=auth("sk-alice-0123456789")
    )
    ticket = issued.json()["ticket"]

    ok = await secured.sse(
        "/stream", params={"prompt": "with a ticket", "model": "echo", "ticket": ticket}
    )
    wrong_path = await secured.http.get("/stream/v2", params={"prompt": "x", "ticket": ticket})
    forged = await secured.http.get("/stream", params={"prompt": "x", "ticket": ticket[:-2] + "AA"})

    assert issued.status_code == 200
    assert "sk-alice" not in ticket
    assert "".join(e["token"] for e in ok.json() if "token" in e) == "with a ticket"
    assert wrong_path.status_code == 403
    assert forged.status_code == 401


async def test_a_ticket_needs_a_key_and_expires(serve, keys):
    client = await serve(base_config(auth={"mode": "api_key", "ticket_ttl_s": 0.2}))
    no_key = await client.http.post("/v1/tickets", json={"path": "/stream"})
    ticket = (
        await client.http.post(
            "/v1/tickets", json={"path": "/stream"}, headers=auth("sk-alice-0123456789")
        )
    ).json()
    await asyncio.sleep(0.3)
    expired = await client.http.get("/stream", params={"prompt": "x", "ticket": ticket["ticket"]})

    assert no_key.status_code == 401
    assert expired.status_code == 401
    assert "expired" in expired.json()["error"]["message"]


async def ticketed_websocket_url(secured) -> str:
    """``/ws/stream`` with a fresh ticket for it, taken with alice's key."""
    ticket = (await secured.http.post("/v1/tickets", json={"path": "/ws/stream"},
                                      headers=auth("sk-alice-0123456789"))).json()["ticket"]  # fmt: skip
    return secured.base_url.replace("http://", "ws://") + f"/ws/stream?ticket={ticket}"


async def test_a_websocket_accepts_a_ticket(secured):
    url = await ticketed_websocket_url(secured)
    async with websockets.connect(url) as socket:
        await socket.send(json.dumps({"prompt": "ws ticket", "model": "echo"}))
        messages = [json.loads(await socket.recv()) for _ in range(4)]

    assert messages[-1] == {"type": "done", "full_response": "ws ticket"}
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with websockets.connect(secured.base_url.replace("http://", "ws://") + "/ws/stream"):
            pass
    assert refused.value.response.status_code == 401


async def test_a_ticket_opens_one_websocket_only(secured):
    url = await ticketed_websocket_url(secured)
    async with websockets.connect(url) as socket:
        await socket.send(json.dumps({"prompt": "first", "model": "echo"}))
        first = [json.loads(await socket.recv()) for _ in range(3)]
    with pytest.raises(websockets.InvalidStatus) as replayed:
        async with websockets.connect(url):
            pass

    assert first[-1] == {"type": "done", "full_response": "first"}
    assert replayed.value.response.status_code == 401
    assert b"POST /v1/tickets" in replayed.value.response.body


async def test_an_eventsource_ticket_serves_its_reconnects_within_its_ttl(secured):
    # EventSource reconnects by itself on the URL it was given, ticket included.
    ticket = (await secured.http.post("/v1/tickets", json={"path": "/stream"},
                                      headers=auth("sk-alice-0123456789"))).json()["ticket"]  # fmt: skip
    params = {"prompt": "again", "model": "echo", "ticket": ticket}
    first = await secured.sse("/stream", params=params)
    second = await secured.sse("/stream", params=params)

    assert (first.status, second.status) == (200, 200)


async def test_only_the_key_that_started_a_stream_may_resume_or_cancel_it(secured):
    async with secured.http.stream("GET", "/v1/stream", params={"prompt": script(["a"], then="hang"),
                                   "model": "scripted"}, headers=auth("sk-alice-0123456789")) as response:  # fmt: skip
        stream_id = response.headers["X-Stream-ID"]

    by_bob = await secured.http.delete(
        f"/v1/streams/{stream_id}", headers=auth("sk-bob-9876543210")
    )
    resume_by_bob = await secured.http.get(
        f"/v1/streams/{stream_id}", headers=auth("sk-bob-9876543210")
    )
    by_alice = await secured.http.delete(
        f"/v1/streams/{stream_id}", headers=auth("sk-alice-0123456789")
    )

    assert by_bob.status_code == 404
    assert resume_by_bob.status_code == 404
    assert by_alice.status_code == 200


async def test_a_conversation_belongs_to_the_key_that_created_it(serve, keys, tmp_path):
    client = await serve(base_config(auth={"mode": "api_key"},
                                     conversations={"sqlite": {"path": str(tmp_path / "c.sqlite3")}}))  # fmt: skip
    url = client.base_url.replace("http://", "ws://") + "/ws/chat/mine"
    async with websockets.connect(url, additional_headers=auth("sk-alice-0123456789")) as socket:
        await socket.send(json.dumps({"message": "private", "model": "echo"}))
        while json.loads(await socket.recv())["type"] != "done":
            pass
    async with websockets.connect(url, additional_headers=auth("sk-bob-9876543210")) as socket:
        await socket.send(json.dumps({"message": "let me in", "model": "echo"}))
        refused = json.loads(await socket.recv())

    assert refused["code"] == "conversation_not_found"
    assert (
        await client.http.get("/v1/conversations/mine", headers=auth("sk-bob-9876543210"))
    ).status_code == 404
    assert (
        await client.http.get("/v1/conversations/mine", headers=auth("sk-alice-0123456789"))
    ).status_code == 200


async def test_requests_per_minute_answers_429_with_retry_after(serve):
    client = await serve(base_config(limits={"requests_per_minute": 3}))
    statuses = [(await client.http.get("/v1/models")).status_code for _ in range(4)]
    refused = await client.http.get("/v1/models")

    assert statuses == [200, 200, 200, 429]
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.json()["error"]["code"] == "rate_limited"


async def test_concurrent_streams_per_key_are_limited(serve, keys):
    client = await serve(base_config(auth={"mode": "api_key"}, limits={"max_concurrent_streams_per_key": 1},
                                     **SCRIPTED))  # fmt: skip
    params = {"prompt": script(["a"], then="hang"), "model": "scripted"}
    async with client.http.stream(
        "GET", "/v1/stream", params=params, headers=auth("sk-alice-0123456789")
    ) as first:
        assert first.status_code == 200
        second = await client.http.get(
            "/v1/stream", params=params, headers=auth("sk-alice-0123456789")
        )
        other_key = await client.http.get("/v1/stream", params={"prompt": "hi", "model": "echo"},
                                          headers=auth("sk-bob-9876543210"))  # fmt: skip

    assert second.status_code == 429
    assert second.headers["Retry-After"] == "1"
    assert other_key.status_code == 200


async def test_concurrent_streams_are_limited_globally(serve):
    client = await serve(base_config(limits={"max_concurrent_streams": 1}, **SCRIPTED))
    params = {"prompt": script(["a"], then="hang"), "model": "scripted"}
    async with client.http.stream("GET", "/v1/stream", params=params) as first:
        assert first.status_code == 200
        second = await client.http.get("/v1/stream", params={"prompt": "hi"})

    assert second.status_code == 429
    assert second.json()["error"]["code"] == "too_many_streams"


async def test_a_stream_past_max_stream_s_ends_with_an_error_event(serve):
    client = await serve(base_config(limits={"max_stream_s": 0.2}, **SCRIPTED))
    got = await client.sse(
        "/v1/stream", params={"prompt": script(["a"], then="hang"), "model": "scripted"}
    )

    assert got.names() == ["stream_start", "token", "error", "stream_end"]
    assert json.loads(got.events[2].data)["code"] == "limit_exceeded"


async def test_a_silent_upstream_ends_with_an_error_event(serve):
    client = await serve(base_config(limits={"upstream_idle_s": 0.2}, **SCRIPTED))
    got = await client.sse(
        "/v1/stream", params={"prompt": script(["a"], then="hang"), "model": "scripted"}
    )

    assert json.loads(got.events[-2].data)["code"] == "upstream_idle"


async def test_a_slow_but_steady_upstream_is_not_idle(serve):
    client = await serve(base_config(limits={"upstream_idle_s": 0.2}, **SCRIPTED))
    deltas = [f"t{i} " for i in range(10)]
    got = await client.sse(
        "/v1/stream", params={"prompt": script(deltas, gap_ms=60), "model": "scripted"}
    )

    assert got.names()[-1] == "stream_end"
    assert "error" not in got.names()


async def test_cors_allows_listed_origins_only(serve):
    client = await serve(base_config(cors={"origins": ["https://app.example"]}))
    allowed = await client.http.get("/v1/models", headers={"Origin": "https://app.example"})
    other = await client.http.get("/v1/models", headers={"Origin": "https://evil.example"})
    preflight = await client.http.options("/v1/stream", headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "POST"})  # fmt: skip
    streamed = await client.sse("/stream", params={"prompt": "x", "model": "echo"},
                                headers={"Origin": "https://app.example"})  # fmt: skip

    assert allowed.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert "Access-Control-Allow-Origin" not in other.headers
    assert preflight.status_code == 204
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    assert streamed.headers["Access-Control-Allow-Origin"] == "https://app.example"


def test_a_wildcard_origin_with_credentials_is_a_config_error():
    with pytest.raises(streamserver.ConfigError, match=r"cors\.origins"):
        streamserver.load_config(base_config(cors={"origins": ["*"], "allow_credentials": True}))


async def test_api_key_mode_without_keys_is_a_config_error(serve, monkeypatch):
    monkeypatch.delenv("STREAMSERVER_API_KEYS", raising=False)
    app = streamserver.create_app(base_config(auth={"mode": "api_key"}))

    with pytest.raises(streamserver.ConfigError, match="STREAMSERVER_API_KEYS"):
        await serve(app=app)


async def test_logs_name_the_key_id_never_the_key(serve, keys, caplog):
    client = await serve(
        base_config(auth={"mode": "api_key"}, metrics={"sinks": ["memory", "log"]})
    )
    with caplog.at_level(logging.INFO, logger="streamserver.streams"):
        await client.sse(
            "/stream", params={"prompt": "hi", "model": "echo"}, headers=auth("sk-alice-0123456789")
        )
        for _ in range(100):
            if "stream_finished" in caplog.text:
                break
            await asyncio.sleep(0.01)

    line = json.loads(
        next(r.getMessage() for r in caplog.records if "stream_finished" in r.getMessage())
    )
    assert line["key_id"] == "alice"
    assert "sk-alice" not in caplog.text


async def test_prometheus_metrics_need_a_key_unless_listed_as_public(serve, keys):
    sinks = {"sinks": ["memory", "prometheus"]}
    secured = await serve(base_config(auth={"mode": "api_key"}, metrics=sinks))
    public = await serve(
        base_config(
            auth={"mode": "api_key", "public_paths": ["/health", "/metrics"]}, metrics=sinks
        )
    )

    assert (await secured.http.get("/metrics")).status_code == 401
    assert (
        await secured.http.get("/metrics", headers=auth("sk-bob-9876543210"))
    ).status_code == 200
    assert (await public.http.get("/metrics")).status_code == 200


async def test_a_preflight_allows_the_headers_the_api_and_the_browser_sdks_send(serve):
    client = await serve(base_config(cors={"origins": ["https://app.example"]}))
    asked = ("content-type, authorization, idempotency-key, x-stainless-lang, "
             "x-stainless-retry-count, x-api-key, anthropic-version, "
             "anthropic-dangerous-direct-browser-access, x-team")  # fmt: skip
    preflight = await client.http.options("/v1/chat/completions", headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": asked})  # fmt: skip
    allowed = {
        h.strip().lower() for h in preflight.headers["Access-Control-Allow-Headers"].split(",")
    }
    streamed = await client.http.get("/v1/models", headers={"Origin": "https://app.example"})

    assert preflight.status_code == 204
    assert set(asked.replace(" ", "").split(",")) - allowed == {"x-team"}  # not listed: refused
    assert "Access-Control-Request-Headers" in preflight.headers["Vary"]
    exposed = streamed.headers["Access-Control-Expose-Headers"]
    assert "X-Stream-ID" in exposed and "Retry-After" in exposed


@pytest.mark.parametrize("extra", [["X-Team"], ["*"]])
async def test_cors_allow_headers_adds_request_headers(serve, extra):
    client = await serve(
        base_config(cors={"origins": ["https://app.example"], "allow_headers": extra})
    )
    preflight = await client.http.options("/v1/stream", headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "x-team"})  # fmt: skip

    assert "x-team" in preflight.headers["Access-Control-Allow-Headers"].lower()


def test_a_cors_allow_headers_entry_that_is_not_a_header_name_is_a_config_error():
    with pytest.raises(streamserver.ConfigError, match=r"cors\.allow_headers.*'x team'"):
        streamserver.load_config(base_config(cors={"allow_headers": ["x team"]}))
