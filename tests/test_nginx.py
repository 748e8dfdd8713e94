"""Behind a real load balancer: Debian's nginx, round-robin in front of two ``streamserver serve``
processes, with the config the README shows (``tests/fakes/nginx.py``).

What a reverse proxy can break, shown through it: SSE held back in nginx's buffers, a stalled
client's backpressure absorbed by nginx, a WebSocket upgrade not passed on, every request sent to
one instance, a resume sent elsewhere, a stream on a healthy instance hurt by another's death, a
POST that started a stream sent again to another instance. Each instance is asked directly (not
through nginx) what it served; nginx's access log says which upstream it chose for each request.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from conftest import REPO, ServeFactory, wait_until
from fakes.cluster import Cluster
from fakes.nginx import NGINX, PROCESS_CONF, Nginx, readme_conf
from httpx_sse import ServerSentEvent, aconnect_sse

PROMPT = (
    "Through nginx each token of this answer reaches its reader while the instance behind it is "
    "still writing the rest"
)
"""Streamed back by ``model=echo``: 23 tokens, over a second at the instances' pace."""


def paced_config() -> dict[str, Any]:
    """The simulated model at 20 tokens a second; a stream whose reader left keeps going 30 s."""
    simulated = {"ttft_ms": 0, "tokens_per_second": 20, "jitter": 0, "seed": 7}
    return {
        "server": {"retry_ms": 200},
        "providers": {"simulated": simulated},
        "resume": {"grace_s": 30},
    }


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """Two instances and a fresh nginx (its first request goes to ``instances[0]``)."""
    started = Cluster(paced_config(), tmp_path).start()
    yield started
    started.close()


def tokens(events: list[ServerSentEvent]) -> str:
    return "".join(json.loads(event.data)["content"] for event in events if event.event == "token")


def seqs(events: list[ServerSentEvent]) -> list[int]:
    return [int(event.id.rsplit(":", 1)[1]) for event in events]


def test_the_readme_shows_the_nginx_config_the_tests_run(tmp_path):
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Running several instances") :]
    shown = re.search(r"^```nginx\n(.*?)^```", section, re.MULTILINE | re.DOTALL)

    assert shown is not None, "the README's 'Running several instances' has no nginx block"
    assert shown.group(1) == readme_conf()
    # As it stands, in an http block: nginx -t accepts it.
    conf = tmp_path / "nginx.conf"
    conf.write_text(PROCESS_CONF.format(dir=tmp_path, streaming=shown.group(1)), encoding="utf-8")
    checked = subprocess.run(
        [NGINX, "-t", "-p", str(tmp_path), "-c", str(conf), "-e", str(tmp_path / "error.log")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stderr


async def test_sse_through_nginx_reaches_the_client_while_its_stream_is_generating(cluster):
    # 100 tokens, five seconds at the instances' pace, cancelled on the owner as soon as the first
    # token is through: a proxy that held the response back until its end would deliver that
    # token only once the stream had finished, and the cancel would be a 409.
    params = {"prompt": "hi", "max_tokens": "100"}
    events: list[ServerSentEvent] = []
    cancel = None
    async with (
        httpx.AsyncClient(base_url=cluster.base_url, timeout=30) as http,
        aconnect_sse(http, "GET", "/v1/stream", params=params) as sse,
    ):
        async for event in sse.aiter_sse():
            events.append(event)
            if event.event == "token" and cancel is None:
                stream_id = sse.response.headers["X-Stream-ID"]
                owner = cluster.instances[0].base_url  # a fresh nginx's first request
                cancel = await http.delete(f"{owner}/v1/streams/{stream_id}")
    end = json.loads(events[-1].data)

    assert cancel is not None and cancel.status_code == 200, cancel and cancel.text
    assert events[-1].event == "stream_end"
    assert end["finish_reason"] == "cancelled"
    assert len([event for event in events if event.event == "token"]) == end["tokens_generated"]
    assert end["tokens_generated"] < 100
    assert seqs(events) == list(range(len(events)))


ANSWER = 1_000_000
"""Tokens of an unpaced answer: about 70 MB of events, more than every buffer between an instance
and a client that reads nothing can hold."""


async def test_a_client_that_reads_nothing_holds_its_stream_back_on_the_instance(tmp_path):
    # With nginx's buffering on, nginx would read the whole answer into its buffers and temp files
    # and the instance would see a client that keeps up; off, the client's backpressure reaches
    # the instance, whose send_timeout_s then drops it (and grace_s 0 cancels the generation).
    simulated = {"ttft_ms": 0, "tokens_per_second": 0, "seed": 7, "answer_tokens": ANSWER}
    config = {"server": {"send_timeout_s": 1}, "limits": {"max_tokens": ANSWER},
              "resume": {"grace_s": 0}, "providers": {"simulated": simulated}}  # fmt: skip
    cluster = Cluster(config, tmp_path, count=1).start()
    try:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)  # a small, fixed window
        sock.connect(("127.0.0.1", cluster.nginx.port))
        reader, writer = await asyncio.open_connection(sock=sock)
        writer.write(f"GET /v1/stream?prompt=hi&max_tokens={ANSWER} HTTP/1.1\r\n"
                     "Host: nginx\r\n\r\n".encode())  # fmt: skip
        status = await reader.readline()  # and nothing more
        for _ in range(3000):
            (metrics,) = await cluster.metrics()
            if metrics["outcomes"]:
                break
            await asyncio.sleep(0.01)
        writer.close()
    finally:
        cluster.close()

    assert status.startswith(b"HTTP/1.1 200")
    assert metrics["outcomes"] == {"client_gone": 1}
    assert metrics["total_tokens"] < ANSWER


async def test_a_websocket_upgrades_through_nginx_and_streams(cluster):
    messages: list[dict[str, Any]] = []
    async with websockets.connect(f"ws://127.0.0.1:{cluster.nginx.port}/ws/stream") as ws:
        await ws.send(json.dumps({"prompt": PROMPT, "model": "echo"}))
        async for frame in ws:
            messages.append(json.loads(frame))
            if messages[-1]["type"] == "done":
                break
    logged = await cluster.nginx.logged(1)

    assert messages[0]["type"] == "start"
    assert "".join(m["content"] for m in messages if m["type"] == "token") == PROMPT
    assert messages[-1]["full_response"] == PROMPT
    assert [(entry.path, entry.status) for entry in logged] == [("/ws/stream", 101)]


async def test_nginx_sends_requests_to_both_instances_in_turn(cluster):
    async with httpx.AsyncClient(base_url=cluster.base_url, timeout=30) as http:
        for _ in range(4):
            response = await http.get("/v1/stream", params={"prompt": "a b", "model": "echo"})
            assert response.status_code == 200
    logged = await cluster.nginx.logged(4)
    metrics = await cluster.metrics()

    assert [m["total_streams"] for m in metrics] == [2, 2]  # as each instance counts them
    first, second = (instance.address for instance in cluster.instances)
    assert [entry.upstream for entry in logged] == [first, second, first, second]


async def test_a_resume_through_nginx_completes_on_its_owner_and_is_a_404_on_the_other(cluster):
    # The memory store: only the instance that runs a stream knows it.
    params = {"prompt": PROMPT, "model": "echo"}
    before: list[ServerSentEvent] = []
    async with httpx.AsyncClient(base_url=cluster.base_url, timeout=30) as http:
        async with aconnect_sse(http, "GET", "/v1/stream", params=params) as sse:
            async for event in sse.aiter_sse():
                before.append(event)
                if len(before) == 6:
                    break  # the connection closes: the stream goes on for grace_s
        headers = {"Last-Event-ID": before[-1].id}
        # Round robin: the next request goes to the other instance, the one after to the owner.
        elsewhere = await http.get("/v1/stream", params=params, headers=headers)
        async with aconnect_sse(http, "GET", "/v1/stream", params=params, headers=headers) as sse:
            after = [event async for event in sse.aiter_sse()]
    logged = await cluster.nginx.logged(3)

    owner, other = (instance.address for instance in cluster.instances)
    served = {(entry.last_event_id, entry.status, entry.upstream) for entry in logged}
    assert (before[-1].id, 404, other) in served
    assert (before[-1].id, 200, owner) in served
    assert elsewhere.status_code == 404
    assert elsewhere.json()["error"]["code"] == "stream_not_found"
    assert seqs(before + after) == list(range(len(before) + len(after)))
    assert tokens(before + after) == PROMPT
    assert after[-1].event == "stream_end"


LONG_PROMPT = " ".join([PROMPT] * 3)
"""About three seconds of tokens: still streaming when the other instance is killed."""


async def read_stream(
    http: httpx.AsyncClient, params: dict[str, str], events: list[ServerSentEvent]
) -> list[ServerSentEvent]:
    """Read a stream into ``events`` until it ends or its connection does."""
    try:
        async with aconnect_sse(http, "GET", "/v1/stream", params=params) as sse:
            async for event in sse.aiter_sse():
                events.append(event)
    except httpx.HTTPError:
        pass  # the connection was cut
    return events


async def test_a_stream_on_a_live_instance_is_unaffected_when_another_instance_is_killed(cluster):
    # Round robin: the first stream is on instances[0], the second (a long answer) on instances[1].
    live: list[ServerSentEvent] = []
    doomed: list[ServerSentEvent] = []
    async with httpx.AsyncClient(base_url=cluster.base_url, timeout=30) as http:
        readers = [
            asyncio.create_task(read_stream(http, {"prompt": LONG_PROMPT, "model": "echo"}, live))
        ]
        await wait_until(lambda: any(e.event == "token" for e in live), timeout=20)
        readers.append(asyncio.create_task(read_stream(http, {"prompt": "hi"}, doomed)))
        await wait_until(lambda: any(e.event == "token" for e in doomed), timeout=20)
        cluster.instances[1].kill()
        live_at_kill = tokens(live)
        await asyncio.wait_for(asyncio.gather(*readers), timeout=30)
    logged = await cluster.nginx.logged(2, path="/v1/stream")

    assert len(live_at_kill) < len(LONG_PROMPT), "the live stream had ended before the kill"
    upstreams = {entry.stream_id: entry.upstream for entry in logged}
    assert upstreams[live[0].id.split(":")[0]] == cluster.instances[0].address
    assert upstreams[doomed[0].id.split(":")[0]] == cluster.instances[1].address
    assert doomed[-1].event != "stream_end"  # cut with its instance
    assert live[-1].event == "stream_end"
    assert tokens(live) == LONG_PROMPT
    assert seqs(live) == list(range(len(live)))


class BlackHole:
    """An upstream that reads a request, then closes the connection without an answer (an
    instance that died while handling it)."""

    def __init__(self) -> None:
        self.requests: list[bytes] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._take, "127.0.0.1", 0)
        return f"127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _take(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.requests.append(await reader.readuntil(b"\r\n\r\n"))
        writer.close()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


@pytest.fixture
async def black_hole() -> AsyncIterator[BlackHole]:
    hole = BlackHole()
    yield hole
    await hole.close()


@pytest.mark.parametrize(
    ("method", "status", "streams_started"),
    [("POST", 502, 0), ("GET", 200, 1)],
    ids=["a POST is not retried", "a GET is"],
)
async def test_a_request_that_reached_a_failing_instance_is_retried_elsewhere_only_if_a_get(
    serve: ServeFactory, black_hole: BlackHole, method: str, status: int, streams_started: int
):
    healthy = await serve()
    nginx = Nginx([await black_hole.start(), healthy.base_url.removeprefix("http://")]).start()
    try:
        async with httpx.AsyncClient(base_url=nginx.base_url, timeout=30) as http:
            if method == "POST":
                response = await http.post("/v1/stream", json={"prompt": "hi"})
            else:
                response = await http.get("/v1/stream", params={"prompt": "hi"})
        metrics = (await healthy.http.get("/v1/stream/metrics")).json()
    finally:
        nginx.close()

    assert [request.split(b" ")[0].decode() for request in black_hole.requests] == [method]
    assert response.status_code == status
    assert metrics["total_streams"] == streams_started
