"""What ``streamserver serve`` logs: start-up, one access line per request or stream, the drain,
and a second signal during the drain; as text or JSON lines (``server.log_format``)."""

from __future__ import annotations

import asyncio
import json
import signal

import httpx
from test_shutdown import serve_process, start_long_stream


async def stop(server: asyncio.subprocess.Process) -> str:
    """SIGTERM, then everything the server logged."""
    server.send_signal(signal.SIGTERM)
    _, stderr = await asyncio.wait_for(server.communicate(), timeout=20)
    return stderr.decode()


async def test_start_up_logs_the_config_file_the_plugins_and_the_routes(tmp_path):
    server, _ = await serve_process(tmp_path, shutdown_grace_s=1)
    logged = await stop(server)

    assert f"config: {tmp_path / 'config.toml'}" in logged
    assert "streamserver.builtins.simulated  (built-in)" in logged
    assert "/v1/stream" in logged and "/ws/stream" in logged


async def test_each_stream_gets_one_json_access_line_with_its_id_ttft_and_tokens(tmp_path):
    server, port = await serve_process(tmp_path, shutdown_grace_s=1, log_format="json")
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        response = await client.get("/v1/stream", params={"prompt": "two words", "model": "echo"})
    logged = await stop(server)
    lines = [json.loads(line) for line in logged.splitlines() if line.startswith("{")]
    access = [line for line in lines if line["logger"] == "streamserver.access"]

    assert len(access) == 1
    (line,) = access
    assert line["method"] == "GET" and line["path"] == "/v1/stream" and line["status"] == 200
    assert line["stream_id"] == response.headers["X-Stream-ID"]
    assert line["outcome"] == "completed"
    assert line["tokens"] > 0 and line["ttft_ms"] >= 0 and line["duration_ms"] >= 0
    assert "prompt" not in json.dumps(line)  # the path, never its query string


async def test_a_key_in_the_query_string_never_reaches_the_log(tmp_path):
    server, port = await serve_process(tmp_path, shutdown_grace_s=1)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        await client.get("/v1/stream", params={"prompt": "hi", "api_key": "sk-secret-value"})
    logged = await stop(server)

    assert "GET /v1/stream 4" in logged  # refused, and logged
    assert "sk-secret-value" not in logged


async def test_the_drain_logs_how_many_streams_it_waited_for_and_how_long_it_took(tmp_path):
    server, port = await serve_process(tmp_path, shutdown_grace_s=0.5)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        running, _ = await start_long_stream(client)
        logged = await stop(server)
        await asyncio.wait_for(running, timeout=10)

    assert "draining: 1 live streams" in logged
    assert "drained in 0.5" in logged and "1 ended with server_shutdown" in logged
    assert server.returncode == 0


async def test_a_second_sigterm_during_the_drain_exits_at_once_with_status_1_and_says_so(
    tmp_path,
):
    server, port = await serve_process(tmp_path, shutdown_grace_s=30)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        running, _ = await start_long_stream(client)
        server.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.5)
        server.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(server.communicate(), timeout=5)  # not the 30 s grace
        running.cancel()

    assert server.returncode == 1
    assert "SIGTERM received again while draining: exiting now, status 1" in stderr.decode()
