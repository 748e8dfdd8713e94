"""Graceful shutdown: SIGTERM to a real server process with 50 live streams."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import sys
import time

import httpx
import pytest
import websockets
from conftest import SCRIPTED, base_config, script
from httpx_sse import aconnect_sse

import streamserver
from streamserver.web.keys import SERVICE

NOISE = ("Traceback", "Task was destroyed", "Unclosed", "Error")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def serve_process(
    tmp_path, *, shutdown_grace_s: float, log_format: str = "text"
) -> tuple[asyncio.subprocess.Process, int]:
    """``streamserver serve`` in its own process: the simulated model at 20 tokens/s, conversations
    in ``tmp_path/c.sqlite3``; returns once it listens."""
    port = free_port()
    config = tmp_path / "config.toml"
    config.write_text(
        f'[server]\nport = {port}\nplugins_dir = "{tmp_path}"\n'
        f'shutdown_grace_s = {shutdown_grace_s}\nlog_format = "{log_format}"\n'
        "[providers.simulated]\nttft_ms = 0\ntokens_per_second = 20\nanswer_tokens = 400\n"
        f'[conversations.sqlite]\npath = "{tmp_path / "c.sqlite3"}"\n',
        encoding="utf-8",
    )
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "streamserver", "serve", "--config", str(config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert server.stdout is not None
    await asyncio.wait_for(server.stdout.readline(), timeout=20)  # "listening on ..."
    return server, port


async def read_stream(
    client: httpx.AsyncClient, params: dict[str, str], started: asyncio.Event
) -> list:
    events = []
    async with aconnect_sse(client, "GET", "/v1/stream", params=params) as source:
        async for event in source.aiter_sse():
            events.append((event.event, json.loads(event.data)))
            if event.event == "token":
                started.set()
    return events


async def test_sigterm_with_50_live_streams_ends_each_with_its_answer_or_the_shutdown_event(
    tmp_path,
):
    server, port = await serve_process(tmp_path, shutdown_grace_s=1)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30,
                                 limits=httpx.Limits(max_connections=100)) as client:  # fmt: skip
        # Half finish within the grace period (short echo answers at 20 tokens/s), half cannot.
        params = [{"prompt": "short answer " * (i % 2 + 1), "model": "echo"} if i % 2
                  else {"prompt": "long"} for i in range(50)]  # fmt: skip
        started = [asyncio.Event() for _ in params]
        readers = [
            asyncio.create_task(read_stream(client, p, s))
            for p, s in zip(params, started, strict=True)
        ]
        await asyncio.wait_for(asyncio.gather(*(s.wait() for s in started)), timeout=30)
        server.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        results = await asyncio.wait_for(asyncio.gather(*readers), timeout=30)
    _, stderr = await asyncio.wait_for(server.communicate(), timeout=30)

    completed = shut_down = 0
    for events in results:
        names = [name for name, _ in events]
        assert names[0] == "stream_start" and names[-1] == "stream_end"
        if events[-1][1]["finish_reason"] == "stop":
            assert "error" not in names
            completed += 1
        else:
            error = events[-2]
            assert error[0] == "error" and error[1]["code"] == "server_shutdown"
            shut_down += 1
    assert completed == 25 and shut_down == 25
    assert server.returncode == 0
    assert time.monotonic() - signalled < 10
    assert not any(noise in stderr.decode() for noise in NOISE), stderr.decode()


async def test_while_draining_new_streams_get_503_and_health_says_so(serve):
    app = streamserver.create_app(base_config(server={"shutdown_grace_s": 1}, **SCRIPTED))
    client = await serve(app=app)
    async with client.http.stream("GET", "/v1/stream", params={"prompt": script(["a"], then="hang"),
                                                               "model": "scripted"}):  # fmt: skip
        drain = asyncio.create_task(app[SERVICE].drain(1))
        await asyncio.sleep(0.05)
        refused = await client.http.get("/stream", params={"prompt": "new"})
        health = await client.http.get("/health")
        await drain

    assert refused.status_code == 503
    assert refused.headers["Retry-After"]
    assert refused.json()["error"]["code"] == "server_shutting_down"
    assert health.status_code == 503
    assert health.json()["status"] == "draining"


async def test_sigterm_during_a_conversation_turn_stores_the_reply_before_exiting(tmp_path):
    import sqlite3

    import websockets

    server, port = await serve_process(tmp_path, shutdown_grace_s=0.5)
    database = tmp_path / "c.sqlite3"
    async with websockets.connect(f"ws://127.0.0.1:{port}/ws/chat/kept") as socket:
        await socket.send(json.dumps({"message": "a long answer, please", "model": "simulated"}))
        messages = [json.loads(await socket.recv()) for _ in range(3)]
        server.send_signal(signal.SIGTERM)
        while messages[-1]["type"] != "done":
            messages.append(json.loads(await asyncio.wait_for(socket.recv(), timeout=10)))
        with pytest.raises(websockets.ConnectionClosedOK):
            await asyncio.wait_for(socket.recv(), timeout=5)  # the server closes it, not us
        close_code = socket.close_code
    _, stderr = await asyncio.wait_for(server.communicate(), timeout=20)
    with sqlite3.connect(database) as db:
        stored = db.execute(
            "SELECT role, content, status FROM messages WHERE conversation_id = 'kept' ORDER BY seq"
        ).fetchall()

    sent = "".join(m["content"] for m in messages if m["type"] == "token")
    assert server.returncode == 0
    assert close_code == 1001  # going away
    assert [m["type"] for m in messages[-2:]] == ["error", "done"]
    assert messages[-2]["code"] == "server_shutdown"
    assert messages[-1] == {"type": "done", "message_count": 2, "status": "failed"}
    assert stored == [("user", "a long answer, please", "complete"), ("assistant", sent, "failed")]
    assert not any(noise in stderr.decode() for noise in NOISE), stderr.decode()


async def start_long_stream(
    client: httpx.AsyncClient,
) -> tuple[asyncio.Task[list], asyncio.Event]:
    """A stream far longer than the grace (400 tokens at 20 tokens/s), once its first token is in."""
    started = asyncio.Event()
    reader = asyncio.create_task(read_stream(client, {"prompt": "long"}, started))
    await asyncio.wait_for(started.wait(), timeout=20)
    return reader, started


async def http_exchange(reader, writer, path: str) -> bytes:
    """One keep-alive ``GET path`` on an open connection; the response's head and body."""
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    return head + await reader.readexactly(length)


async def test_during_the_grace_new_connections_are_answered_503_and_health_says_draining(
    tmp_path,
):
    server, port = await serve_process(tmp_path, shutdown_grace_s=2)
    base_url = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        running, _ = await start_long_stream(client)
        server.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.3)
        async with httpx.AsyncClient(base_url=base_url, timeout=5) as newcomer:  # new connections
            health = await newcomer.get("/health")
            refused = await newcomer.get("/v1/stream", params={"prompt": "new"})
        events = await asyncio.wait_for(running, timeout=10)
    await asyncio.wait_for(server.communicate(), timeout=20)

    assert health.status_code == 503
    assert health.json() == {"status": "draining", "active_streams": 1}
    assert refused.status_code == 503
    assert refused.headers["Retry-After"]
    assert refused.json()["error"]["code"] == "server_shutting_down"
    assert [name for name, _ in events[-2:]] == ["error", "stream_end"]
    assert events[-2][1]["code"] == "server_shutdown"
    assert server.returncode == 0


async def test_during_the_grace_a_websocket_upgrade_is_answered_503_and_an_open_socket_finishes(
    tmp_path,
):
    server, port = await serve_process(tmp_path, shutdown_grace_s=2)
    http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10)
    running, _ = await start_long_stream(http)  # the drain lasts while a stream runs
    async with websockets.connect(f"ws://127.0.0.1:{port}/ws/stream") as opened:
        server.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.3)
        refused = []
        for path in ("/ws/stream", "/ws/chat/drain-test"):
            with pytest.raises(websockets.InvalidStatus) as caught:
                async with websockets.connect(f"ws://127.0.0.1:{port}{path}"):
                    pass
            refused.append(caught.value.response)
        await opened.send(json.dumps({"prompt": "still here?"}))
        answer = json.loads(await asyncio.wait_for(opened.recv(), timeout=5))
    await asyncio.wait_for(running, timeout=10)
    await http.aclose()
    await asyncio.wait_for(server.communicate(), timeout=20)

    assert [r.status_code for r in refused] == [503, 503]
    assert all(r.headers["Retry-After"] for r in refused)
    assert [json.loads(r.body)["error"]["code"] for r in refused] == ["server_shutting_down"] * 2
    assert answer["type"] == "error" and answer["code"] == "server_shutting_down"
    assert server.returncode == 0


async def test_an_idle_keep_alive_connection_gets_a_response_during_the_grace_then_a_close(
    tmp_path,
):
    server, port = await serve_process(tmp_path, shutdown_grace_s=2)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        running, _ = await start_long_stream(client)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        before = await http_exchange(reader, writer, "/health")  # then idle, kept alive
        server.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.3)
        during = await http_exchange(reader, writer, "/health")
        closed = await asyncio.wait_for(reader.read(), timeout=5)  # b"": the server closed it
        writer.close()
        await asyncio.wait_for(running, timeout=10)
    await asyncio.wait_for(server.communicate(), timeout=20)

    assert before.startswith(b"HTTP/1.1 200")
    assert during.startswith(b"HTTP/1.1 503")
    assert b"Connection: close" in during
    assert b'"draining"' in during
    assert closed == b""
    assert server.returncode == 0
