"""streamserver.client against a real server, with connections cut mid-stream by a real TCP proxy."""

from __future__ import annotations

import asyncio
import gc
import json
import signal
import sys
import warnings
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest
from conftest import SCRIPTED, base_config, script
from fakes.tcp_proxy import TCPProxy

import streamserver
from streamserver.client import (
    End,
    Error,
    Start,
    StreamClient,
    StreamFailed,
    Token,
    WebSocketStream,
    stream_sync,
)
from streamserver.web.keys import SERVICE

DELTAS = [f"word{i} " for i in range(60)]


@pytest.fixture
async def resumable(serve):
    app = streamserver.create_app(base_config(resume={"grace_s": 5}, **SCRIPTED))
    client = await serve(app=app)
    return app, client


async def test_stream_yields_typed_events_and_the_text(resumable):
    _, server = resumable
    async with StreamClient(server.base_url) as client:
        events = [event async for event in client.stream("typed events here", model="echo")]

    assert isinstance(events[0], Start)
    assert all(isinstance(e, Token) for e in events[1:-1])
    assert isinstance(events[-1], End) and events[-1].finish_reason == "stop"
    assert client.last.text == "typed events here"
    assert [e.index for e in events[1:-1]] == list(range(len(events) - 2))


async def test_connections_cut_mid_stream_are_resumed_with_no_gap_no_duplicate(resumable):
    app, server = resumable
    port = urlsplit(server.base_url).port
    proxy = TCPProxy("127.0.0.1", port)
    proxy_port = await proxy.start()
    provider = app[SERVICE].providers["scripted"]
    cuts_at = {10, 25, 40}
    received: list[str] = []

    async with StreamClient(f"http://127.0.0.1:{proxy_port}", backoff_s=0.01) as client:
        async for event in client.stream(script(DELTAS, gap_ms=5), model="scripted"):
            if isinstance(event, Token):
                received.append(event.content)
                if len(received) in cuts_at:
                    proxy.cut()
    await proxy.close()

    assert "".join(received) == "".join(DELTAS)
    assert received == DELTAS
    assert client.last.reconnects == 3
    assert proxy.connections == 4
    assert len(provider.started) == 1  # the answer was generated once


@pytest.fixture
async def unkept(serve):
    """A cutting proxy in front of a server that keeps no stream for a resume (no grace, no
    retention): the proxy and the base URL through it."""
    server = await serve(base_config(resume={"grace_s": 0, "retain_s": 0}, **SCRIPTED))
    proxy = TCPProxy("127.0.0.1", urlsplit(server.base_url).port)
    proxy_port = await proxy.start()
    yield proxy, f"http://127.0.0.1:{proxy_port}"
    await proxy.close()


async def test_without_grace_a_dropped_stream_cannot_be_resumed(unkept):
    proxy, url = unkept

    with pytest.raises(StreamFailed) as failed:
        async with StreamClient(url, backoff_s=0.01, max_reconnects=2) as client:
            async for event in client.stream(script(DELTAS, gap_ms=5), model="scripted"):
                if isinstance(event, Token) and event.index == 3:
                    proxy.cut()

    assert failed.value.code == "stream_not_found"


async def refusal(events: AsyncIterator[object]) -> StreamFailed:
    """The ``StreamFailed`` that reading ``events`` raises."""
    with pytest.raises(StreamFailed) as refused:
        async for _ in events:
            pass
    return refused.value


async def test_a_refused_request_raises_with_the_server_error(resumable):
    _, server = resumable
    async with StreamClient(server.base_url) as client:
        failed = await refusal(client.stream("x", model="no-such-model"))

    assert failed.status == 400
    assert failed.code == "unknown_model"


async def test_a_provider_failure_arrives_as_an_error_event_then_end(resumable):
    _, server = resumable
    async with StreamClient(server.base_url) as client:
        events = [e async for e in client.stream(script(["a"], then="fail"), model="scripted")]

    assert isinstance(events[-2], Error) and events[-2].code == "upstream_error"
    assert isinstance(events[-1], End) and events[-1].finish_reason == "error"


async def test_cancel_stops_the_stream_on_the_server(resumable):
    app, server = resumable
    provider = app[SERVICE].providers["scripted"]
    async with StreamClient(server.base_url) as client:
        events = []
        async for event in client.stream(script(["a"], then="hang"), model="scripted"):
            events.append(event)
            if isinstance(event, Token):
                assert await client.cancel(client.last.stream_id)

    assert isinstance(events[-1], End) and events[-1].finish_reason == "cancelled"
    assert provider.closed


async def test_sync_wrapper_for_scripts(resumable):
    _, server = resumable

    def run() -> str:
        return "".join(e.content for e in stream_sync(server.base_url, "sync client", model="echo")
                       if isinstance(e, Token))  # fmt: skip

    assert await asyncio.to_thread(run) == "sync client"


async def test_websocket_client_resumes_across_cuts_and_sees_each_token_once(resumable):
    app, server = resumable
    proxy = TCPProxy("127.0.0.1", urlsplit(server.base_url).port)
    proxy_port = await proxy.start()
    provider = app[SERVICE].providers["scripted"]
    received: list[str] = []

    async with WebSocketStream(f"http://127.0.0.1:{proxy_port}", backoff_s=0.01) as socket:
        async for message in socket.stream(script(DELTAS, gap_ms=5), model="scripted"):
            if message["type"] == "token":
                received.append(message["content"])
                if len(received) in (10, 25, 40):
                    proxy.cut()
            done = message
    await proxy.close()

    assert received == DELTAS
    assert done == {"type": "done", "full_response": "".join(DELTAS)}
    assert socket.reconnects == 3
    assert proxy.connections == 4
    assert len(provider.started) == 1  # the answer was generated once


async def test_websocket_client_raises_on_a_refused_prompt_and_yields_a_stream_failure(resumable):
    _, server = resumable
    async with WebSocketStream(server.base_url) as socket:
        refused = await refusal(socket.stream("x", model="no-such-model"))
        failed = [m async for m in socket.stream(script(["a"], then="fail"), model="scripted")]

    assert refused.code == "unknown_model"
    assert [m["type"] for m in failed] == ["start", "token", "error", "done"]
    assert failed[2]["code"] == "upstream_error"


async def test_websocket_client_without_grace_cannot_resume(unkept):
    proxy, url = unkept

    with pytest.raises(StreamFailed) as failed:
        async with WebSocketStream(url, backoff_s=0.01, max_reconnects=2) as socket:
            async for message in socket.stream(script(DELTAS, gap_ms=5), model="scripted"):
                if message["type"] == "token":
                    proxy.cut()

    assert failed.value.code == "stream_not_found"


async def test_websocket_client_cancel(resumable):
    _, server = resumable
    async with WebSocketStream(server.base_url) as socket:
        messages = []
        async for message in socket.stream(script(["part"], then="hang"), model="scripted"):
            messages.append(message)
            if message["type"] == "token":
                await socket.cancel()

    assert messages[-1] == {"type": "done", "full_response": "part", "cancelled": True}


async def test_websocket_client_takes_the_base_url_like_stream_client(resumable):
    _, server = resumable
    async with WebSocketStream(server.base_url + "/") as socket:
        messages = [m async for m in socket.stream("base url", model="echo")]

    assert messages[-1] == {"type": "done", "full_response": "base url"}


async def test_websocket_client_takes_another_route_as_path(serve):
    routes = {"/ws/other": {"transport": "ws", "formatter": "simple", "allow": ["model"]}}
    server = await serve(base_config(routes=routes))
    async with WebSocketStream(server.base_url, path="/ws/other") as socket:
        messages = [m async for m in socket.stream("other route", model="echo")]

    assert messages[-1] == {"type": "done", "full_response": "other route"}


async def test_websocket_client_refused_handshake_says_what_it_wants(resumable):
    _, server = resumable
    with pytest.raises(StreamFailed) as refused:
        async with WebSocketStream(server.base_url + "/ws/stream"):
            pass

    assert refused.value.status == 404
    assert "base URL" in refused.value.message


def test_websocket_client_refuses_a_url_without_a_scheme_by_saying_what_it_wants():
    with pytest.raises(ValueError, match=r"base URL, like http://127\.0\.0\.1:8000"):
        WebSocketStream("127.0.0.1:8000")


async def test_websocket_client_refused_handshake_leaks_no_session(resumable):
    _, server = resumable
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(StreamFailed):
            async with WebSocketStream(server.base_url + "/nowhere"):
                pass
        gc.collect()

    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []


async def test_websocket_client_closes_its_session_on_leaving(resumable):
    _, server = resumable
    async with WebSocketStream(server.base_url) as socket:
        session = socket.session
        _ = [m async for m in socket.stream("closed after", model="echo")]

    assert session.closed


async def test_in_process_generate_yields_segments_with_metadata():
    config = base_config()
    stream = streamserver.generate(
        "One. Two. Three.", config=config, model="echo", buffer="sentence"
    )
    segments = [segment async for segment in stream]

    assert [s.text for s in segments] == ["One. ", "Two. ", "Three."]
    assert [s.index for s in segments] == [0, 1, 2]
    assert {s.model for s in segments} == {"echo"}
    assert [s.finish_reason for s in segments] == [None, None, "stop"]
    assert stream.text == "One. Two. Three."


async def test_in_process_generate_collects():
    text = await streamserver.generate(
        "collect all of it", config=base_config(), model="echo"
    ).collect()

    assert text == "collect all of it"


async def test_in_process_generate_raises_provider_errors():
    config = base_config(**SCRIPTED)
    with pytest.raises(streamserver.ProviderError, match="scripted upstream failed"):
        async for _ in streamserver.generate(
            script(["x"], then="fail"), config=config, model="scripted"
        ):
            pass


async def test_in_process_generate_sync():
    def run() -> list[str]:
        return [
            s.text
            for s in streamserver.generate_sync("sync gen", config=base_config(), model="echo")
        ]

    assert await asyncio.to_thread(run) == ["sync", " gen"]


async def run_ask(server, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "streamserver", "ask", "--url", server.base_url, *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def test_ask_prints_the_answer_as_it_streams(resumable):
    _, server = resumable
    process = await run_ask(server, "--model", "echo", "printed by ask")
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=30)

    assert process.returncode == 0, stderr
    assert stdout.decode() == "printed by ask\n"


async def test_ask_over_websocket(resumable):
    _, server = resumable
    process = await run_ask(server, "--ws", "--model", "echo", "socket ask")
    stdout, _ = await asyncio.wait_for(process.communicate(), timeout=30)

    assert stdout.decode() == "socket ask\n"


@pytest.mark.parametrize("transport", [[], ["--ws"]], ids=["sse", "websocket"])
async def test_ask_ctrl_c_stops_the_stream_on_the_server(resumable, transport):
    # The server keeps a stream whose reader left for resume.grace_s (5 s here): stopping it
    # within a second means ask cancelled it, not merely disconnected.
    app, server = resumable
    provider = app[SERVICE].providers["scripted"]
    process = await run_ask(
        server, *transport, "--model", "scripted", script(["first "], then="hang")
    )
    assert process.stdout is not None
    assert await asyncio.wait_for(process.stdout.read(6), timeout=30) == b"first "
    process.send_signal(signal.SIGINT)
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=30)

    assert process.returncode == 130
    assert b"Traceback" not in stderr
    for _ in range(100):
        if provider.closed:
            break
        await asyncio.sleep(0.01)
    assert provider.closed
    metrics = (await server.http.get("/v1/stream/metrics")).json()
    assert metrics["outcomes"] == {"cancelled": 1}


ALICE = "sk-alice-0123456789"


@pytest.fixture
async def secured(serve, monkeypatch):
    monkeypatch.setenv("STREAMSERVER_API_KEYS", f"alice:{ALICE}")
    monkeypatch.delenv("STREAMSERVER_API_KEY", raising=False)
    return await serve(base_config(auth={"mode": "api_key"}))


@pytest.mark.parametrize("transport", [[], ["--ws"]], ids=["sse", "websocket"])
async def test_ask_authenticates_with_api_key(secured, transport):
    process = await run_ask(secured, *transport, "--api-key", ALICE, "--model", "echo", "let me in")
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=30)

    assert process.returncode == 0, stderr
    assert stdout.decode() == "let me in\n"


async def test_ask_takes_the_api_key_from_streamserver_api_key(secured, monkeypatch):
    monkeypatch.setenv("STREAMSERVER_API_KEY", ALICE)
    process = await run_ask(secured, "--model", "echo", "from the environment")
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=30)

    assert process.returncode == 0, stderr
    assert stdout.decode() == "from the environment\n"


async def test_ask_refused_for_want_of_a_key_says_how_to_give_one(secured):
    process = await run_ask(secured, "--model", "echo", "no key")
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=30)

    assert process.returncode == 1
    assert "--api-key" in stderr.decode()
    assert b"Traceback" not in stderr


async def test_in_process_generate_takes_tools_and_gives_the_calls_and_the_reasoning():
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]  # fmt: skip
    calling = streamserver.generate("Weather in Paris?", config=base_config(), model="sim-tools",
                                    tools=tools)  # fmt: skip
    await calling.collect()
    thinking = streamserver.generate("why?", config=base_config(), model="sim-reasoner",
                                     reasoning_effort="low")  # fmt: skip
    answer = await thinking.collect()

    (call,) = calling.tool_calls
    assert call.name == "get_weather" and json.loads(call.arguments)["city"]
    assert calling.summary is not None and calling.summary.finish_reason == "tool_calls"
    assert thinking.reasoning and answer
    with pytest.raises(streamserver.StreamRejected):  # checked as a route checks it
        await streamserver.generate("x", config=base_config(), temperature=9).collect()
