"""A client that vanishes without closing (Wi-Fi off, cable pulled: no FIN, no RST) is detected.

The client runs in a network namespace of its own, joined to this one by a veth pair. Mid-stream the
link is cut and the client killed, so the server hears nothing at all; the keep-alive pings go
unacknowledged and TCP_USER_TIMEOUT (``dead_peer_timeout_s``) makes the kernel drop the connection,
which cancels the stream upstream. Needs root and iproute2 (as in CI); skipped elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time

import pytest
from aiohttp.test_utils import TestServer
from conftest import SCRIPTED, base_config, script, wait_until

import streamserver
from streamserver.web.keys import SERVICE

TAG = f"{os.getpid() % 100000}"
NAMESPACE = f"ssdp{TAG}"
HOST_LINK, PEER_LINK = f"ssh{TAG}", f"ssp{TAG}"
# Link-local addresses on our own veth pair: the "network" is two namespaces of this test.
HOST_ADDRESS, PEER_ADDRESS = "169.254.213.1", "169.254.213.2"


def ip(*args: str, namespace: bool = False) -> None:
    command = ["ip", "netns", "exec", NAMESPACE, "ip", *args] if namespace else ["ip", *args]
    subprocess.run(command, check=True, capture_output=True, timeout=10)


@pytest.fixture
def peer_namespace():
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 to build a network namespace")
    try:
        ip("netns", "add", NAMESPACE)
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"network namespaces are not available here: {exc.stderr.decode().strip()}")
    try:
        ip("link", "add", HOST_LINK, "type", "veth", "peer", "name", PEER_LINK)
        ip("link", "set", PEER_LINK, "netns", NAMESPACE)
        ip("addr", "add", f"{HOST_ADDRESS}/30", "dev", HOST_LINK)
        ip("link", "set", HOST_LINK, "up")
        ip("addr", "add", f"{PEER_ADDRESS}/30", "dev", PEER_LINK, namespace=True)
        ip("link", "set", PEER_LINK, "up", namespace=True)
        ip("link", "set", "lo", "up", namespace=True)
        yield
    finally:
        subprocess.run(["ip", "netns", "del", NAMESPACE], capture_output=True, timeout=10)
        subprocess.run(["ip", "link", "del", HOST_LINK], capture_output=True, timeout=10)


CLIENT = """
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=30) as response:
    for line in response:
        print(line.decode().rstrip(), flush=True)
"""


async def test_a_vanished_client_is_detected_and_its_stream_cancelled(peer_namespace):
    config = base_config(server={"ping_interval_s": 0.3, "dead_peer_timeout_s": 1}, **SCRIPTED)
    app = streamserver.create_app(config)
    server = TestServer(app, host=HOST_ADDRESS)
    await server.start_server()
    provider = app[SERVICE].providers["scripted"]
    url = str(
        server.make_url("/v1/stream").with_query(
            prompt=script(["hello "], then="hang"), model="scripted"
        )
    )
    try:
        detected = await cut_a_client_off(provider, CLIENT, url)
    finally:
        await server.close()

    assert detected is not None, "the stream was never cancelled: the dead peer went unnoticed"
    assert detected < 0.3 + 1 + 2.5  # one ping interval + dead_peer_timeout_s + slack
    metrics = app[SERVICE].metrics_sinks[0].snapshot()
    assert metrics["outcomes"] == {"client_gone": 1}


async def cut_a_client_off(provider, program: str, *args: str) -> float | None:
    """Run ``program`` in the peer's namespace until it has read the first token, cut its cable,
    and wait for the stream's provider iterator to be closed: how long that took after the cut,
    or ``None`` if it was not within 10 s."""
    client = await asyncio.create_subprocess_exec(
        "ip", "netns", "exec", NAMESPACE, sys.executable, "-c", program, *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert await asyncio.wait_for(_read_until(client, b'"content": "hello "'), timeout=15)
        # Cut the cable: the peer's side goes down, so nothing it sends (not even the RST of a
        # killed process) reaches us, and nothing we send reaches it.
        ip("link", "set", PEER_LINK, "down", namespace=True)
        client.kill()
        cut = time.monotonic()
        assert not provider.closed
        with contextlib.suppress(AssertionError):
            await wait_until(lambda: bool(provider.closed), timeout=10)
            return time.monotonic() - cut
        return None
    finally:
        if client.returncode is None:
            client.kill()
        await client.wait()


async def _read_until(process: asyncio.subprocess.Process, marker: bytes) -> bool:
    assert process.stdout is not None
    async for line in process.stdout:
        if marker in line:
            return True
    return False


WS_CLIENT = """
import asyncio, json, sys, websockets
async def main():
    async with websockets.connect(sys.argv[1], ping_interval=None) as socket:
        await socket.send(sys.argv[2])
        async for message in socket:
            print(message, flush=True)
asyncio.run(main())
"""


async def test_a_vanished_websocket_client_is_detected_without_the_heartbeat(peer_namespace):
    # No heartbeat and nothing to send (the model hangs): only the socket's keepalive can tell.
    config = base_config(server={"ws_heartbeat_s": 0, "dead_peer_timeout_s": 1}, **SCRIPTED)
    app = streamserver.create_app(config)
    server = TestServer(app, host=HOST_ADDRESS)
    await server.start_server()
    provider = app[SERVICE].providers["scripted"]
    url = str(server.make_url("/ws/stream")).replace("http://", "ws://")
    prompt = json.dumps({"prompt": script(["hello "], then="hang"), "model": "scripted"})
    try:
        detected = await cut_a_client_off(provider, WS_CLIENT, url, prompt)
    finally:
        await server.close()

    assert detected is not None, "the stream was never cancelled: the dead peer went unnoticed"
    assert detected < 1 + 1 + 2.5  # keepalive idle + dead_peer_timeout_s + slack
