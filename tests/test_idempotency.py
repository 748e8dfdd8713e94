"""Idempotent starts: a POST that arrives again with the same ``Idempotency-Key`` (a client's
retry) reads the stream the first one started, from its start, instead of paying for a second
generation; the same key with another request is refused."""

from __future__ import annotations

import pytest
from conftest import SCRIPTED, base_config, script

import streamserver
from streamserver.web.keys import SERVICE


@pytest.fixture
async def scripted(serve):
    app = streamserver.create_app(base_config(**SCRIPTED))
    return app, await serve(app=app)


async def test_a_retried_stream_request_reads_the_first_stream_and_generates_once(scripted):
    app, client = scripted
    provider = app[SERVICE].providers["scripted"]
    body = {"prompt": script(["one ", "two"]), "model": "scripted"}
    headers = {"Idempotency-Key": "req-1"}
    first = await client.sse("/v1/stream", method="POST", json_body=body, headers=headers)
    again = await client.sse("/v1/stream", method="POST", json_body=body, headers=headers)
    other = await client.sse("/v1/stream", method="POST", json_body=body,
                             headers={"Idempotency-Key": "req-2"})  # fmt: skip

    assert again.headers["X-Stream-ID"] == first.headers["X-Stream-ID"]
    assert [(e.id, e.data) for e in again.events] == [(e.id, e.data) for e in first.events]
    assert other.headers["X-Stream-ID"] != first.headers["X-Stream-ID"]
    assert len(provider.started) == 2  # req-1 once, req-2 once


async def test_the_same_key_with_another_request_is_a_409(scripted):
    _, client = scripted
    headers = {"Idempotency-Key": "req-1"}
    body = {"prompt": script(["a"]), "model": "scripted"}
    await client.sse("/v1/stream", method="POST", json_body=body, headers=headers)
    changed = await client.http.post(
        "/v1/stream", json={**body, "prompt": script(["b"])}, headers=headers
    )
    bad = await client.http.post("/v1/stream", json=body, headers={"Idempotency-Key": "a b"})

    assert changed.status_code == 409
    assert changed.json()["error"]["code"] == "idempotency_key_reused"
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_idempotency_key"


@pytest.mark.parametrize("stream", [False, True])
async def test_a_retried_chat_completion_is_answered_from_the_first_generation(scripted, stream):
    app, client = scripted
    provider = app[SERVICE].providers["scripted"]
    body = {"model": "scripted", "stream": stream,
            "messages": [{"role": "user", "content": script(["Hello", " there"])}]}  # fmt: skip
    headers = {"Idempotency-Key": f"chat-{stream}"}
    first = await client.http.post("/v1/chat/completions", json=body, headers=headers)
    again = await client.http.post("/v1/chat/completions", json=body, headers=headers)

    assert first.status_code == again.status_code == 200
    assert again.text == first.text  # the same completion (id included), or the same chunks
    assert len(provider.started) == 1
