"""streamserver inside someone else's aiohttp app: ``create_app`` mounted with ``add_subapp``,
``setup`` on an existing app, the three forms a config may take, two apps side by side, and a clean
shutdown of the host."""

from __future__ import annotations

import asyncio
import contextlib
import json
import tomllib
from typing import Any

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from conftest import FAST_SIMULATED, Received, ServeFactory, base_config, wait_until

import streamserver
from streamserver.tokens import tokenize
from streamserver.web.keys import CONFIG

PROMPT = "Embedded apps stream too."

CONFIG_TOML = """\
[server]
plugins_dir = "no-plugins-here"
ping_interval_s = 5

[providers.simulated]
ttft_ms = 0
tokens_per_second = 0

[routes."/ask"]
formatter = "events"
model = "echo"
"""
"""A config whose only stream route is ``/ask``, answering with the echo model."""


async def host_page(request: web.Request) -> web.Response:
    return web.Response(text="the host's own page")


def host_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/", host_page)
    app.router.add_get("/about", host_page)
    return app


def text_of(got: Received) -> str:
    return "".join(json.loads(e.data)["content"] for e in got.events if e.event == "token")


@pytest.fixture
async def mounted(serve: ServeFactory):
    """A host app with its own routes and streamserver mounted at /llm."""
    host = host_app()
    host.add_subapp("/llm", streamserver.create_app(base_config()))
    return await serve(app=host)


async def test_the_host_routes_still_work_beside_a_mounted_app(mounted):
    for path in ("/", "/about"):
        response = await mounted.http.get(path)
        assert response.status_code == 200
        assert response.text == "the host's own page"


async def test_a_mounted_app_streams_under_its_prefix(mounted):
    got = await mounted.sse("/llm/stream/v2", params={"prompt": PROMPT, "model": "echo"})
    posted = await mounted.sse(
        "/llm/v1/stream", method="POST", json_body={"prompt": PROMPT, "model": "echo"}
    )

    assert got.status == 200
    assert got.names()[-1] == "done"
    assert text_of(got) == PROMPT
    assert posted.names()[0] == "stream_start" and posted.names()[-1] == "stream_end"
    assert text_of(posted) == PROMPT


async def test_a_mounted_app_resumes_and_reports_under_its_prefix(mounted):
    got = await mounted.sse("/llm/v1/stream", params={"prompt": PROMPT, "model": "echo"})
    stream_id = got.headers["X-Stream-ID"]
    replay = await mounted.sse(f"/llm/v1/streams/{stream_id}")
    health = await mounted.http.get("/llm/health")
    figures = (await mounted.http.get("/llm/v1/stream/metrics")).json()

    assert [e.id for e in replay.events] == [e.id for e in got.events]
    assert health.json() == {"status": "healthy", "active_streams": 0}
    assert figures["total_streams"] == 1


async def test_a_mounted_app_adds_nothing_outside_its_prefix(mounted):
    for path in ("/stream", "/v1/stream", "/health"):
        response = await mounted.http.get(path, params={"prompt": PROMPT})
        assert response.status_code == 404, path


async def test_setup_adds_the_routes_to_an_existing_app(serve: ServeFactory):
    app = host_app()
    config = streamserver.setup(app, base_config())
    client = await serve(app=app)

    got = await client.sse("/stream/v2", params={"prompt": PROMPT, "model": "echo"})
    own = await client.http.get("/about")

    assert isinstance(config, streamserver.Config)
    assert app[CONFIG] is config
    assert text_of(got) == PROMPT
    assert own.text == "the host's own page"
    assert (await client.http.get("/health")).json()["status"] == "healthy"


def config_in_form(form: str, tmp_path) -> Any:
    """``CONFIG_TOML`` as a path to a file, as a dict, or as a loaded ``Config``."""
    path = tmp_path / "streamserver.toml"
    path.write_text(CONFIG_TOML, encoding="utf-8")
    if form == "path":
        return str(path)
    if form == "pathlib":
        return path
    if form == "dict":
        return tomllib.loads(CONFIG_TOML)
    return streamserver.load_config(path)


@pytest.mark.parametrize("form", ["path", "pathlib", "dict", "loaded"])
@pytest.mark.parametrize("mount", ["add_subapp", "setup"])
async def test_a_config_may_be_a_path_a_dict_or_a_loaded_config(
    serve: ServeFactory, tmp_path, form, mount
):
    host = host_app()
    if mount == "add_subapp":
        host.add_subapp("/llm", streamserver.create_app(config_in_form(form, tmp_path)))
        prefix = "/llm"
    else:
        streamserver.setup(host, config_in_form(form, tmp_path))
        prefix = ""
    client = await serve(app=host)

    got = await client.sse(f"{prefix}/ask", params={"prompt": PROMPT})
    unconfigured = await client.http.get(f"{prefix}/stream", params={"prompt": PROMPT})

    assert got.status == 200
    assert got.names() == ["token"] * len(tokenize(PROMPT)) + ["done"]
    assert text_of(got) == PROMPT
    assert unconfigured.status_code == 404


@pytest.fixture
async def two_apps(serve: ServeFactory):
    """Two differently configured streamserver apps mounted in one host app."""
    echo = base_config(routes={"/ask": {"formatter": "events", "model": "echo"}})
    generated = base_config(
        providers={"simulated": {**FAST_SIMULATED, "seed": 3, "answer_tokens": 20}},
        routes={"/ask": {"formatter": "events"}, "/only-two": {"formatter": "simple"}},
    )
    host = host_app()
    host.add_subapp("/one", streamserver.create_app(echo))
    host.add_subapp("/two", streamserver.create_app(generated))
    return await serve(app=host)


async def test_two_apps_in_one_process_answer_by_their_own_config(two_apps):
    one, two = await asyncio.gather(
        two_apps.sse("/one/ask", params={"prompt": PROMPT}),
        two_apps.sse("/two/ask", params={"prompt": PROMPT}),
    )

    assert text_of(one) == PROMPT
    assert text_of(two) != PROMPT and len(two.events) > 20
    assert (await two_apps.sse("/two/only-two", params={"prompt": PROMPT})).status == 200
    assert (await two_apps.http.get("/one/only-two", params={"prompt": PROMPT})).status_code == 404


async def test_two_apps_in_one_process_keep_their_own_streams_and_metrics(two_apps):
    first, _, other = await asyncio.gather(
        two_apps.sse("/one/ask", params={"prompt": PROMPT}),
        two_apps.sse("/one/ask", params={"prompt": PROMPT}),
        two_apps.sse("/two/ask", params={"prompt": PROMPT}),
    )
    one = (await two_apps.http.get("/one/v1/stream/metrics")).json()
    two = (await two_apps.http.get("/two/v1/stream/metrics")).json()
    stream_id = first.headers["X-Stream-ID"]

    assert one["total_streams"] == 2
    assert two["total_streams"] == 1
    assert one["total_tokens"] == 2 * len(tokenize(PROMPT))
    assert two["total_tokens"] == len(other.events) - 1
    assert (await two_apps.http.get(f"/one/v1/streams/{stream_id}")).status_code == 200
    assert (await two_apps.http.get(f"/two/v1/streams/{stream_id}")).status_code == 404


def other_tasks() -> list[asyncio.Task[Any]]:
    current = asyncio.current_task()
    return [t for t in asyncio.all_tasks() if t is not current and not t.done()]


@pytest.mark.parametrize("mount", ["add_subapp", "setup"])
async def test_shutting_down_the_host_leaves_no_task_behind(mount):
    slow = {**FAST_SIMULATED, "type": "simulated", "ttft_ms": 10_000, "models": ["slow"]}
    config = base_config(
        providers={"simulated": FAST_SIMULATED, "slow": slow}, server={"shutdown_grace_s": 0.1}
    )
    host = host_app()
    if mount == "add_subapp":
        host.add_subapp("/llm", streamserver.create_app(config))
        prefix = "/llm"
    else:
        streamserver.setup(host, config)
        prefix = ""
    server = TestServer(host, host="127.0.0.1")
    await server.start_server()
    base_url = str(server.make_url("")).rstrip("/")
    async with httpx.AsyncClient(base_url=base_url, timeout=5) as http:
        done = await http.get(f"{prefix}/stream/v2", params={"prompt": PROMPT, "model": "echo"})
        assert done.status_code == 200
        params = {"prompt": PROMPT, "model": "slow"}
        async with http.stream("GET", f"{prefix}/v1/stream", params=params) as live:
            assert live.status_code == 200
            assert any(
                t.get_name() == f"stream {live.headers['X-Stream-ID']}" for t in other_tasks()
            )
            await server.close()
            rest = (await live.aread()).decode()

    assert "server_shutdown" in rest
    with contextlib.suppress(AssertionError):
        await wait_until(lambda: not other_tasks(), timeout=1.0)
    assert other_tasks() == []
