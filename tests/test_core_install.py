"""``pip install streamserver`` without extras is enough to serve: the shipped config (what
``make run`` serves) starts and streams on a Python that sees only streamserver's install
requirements, and a config that asks for an extra's store says which extra to install, exit 2.

The suite's own environment has every extra (and every test tool) installed, so a top-level
import of one in a built-in plugin would pass every other test and still break ``make run`` on a
fresh machine."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import urllib.request
from importlib import metadata
from pathlib import Path

import pytest
from conftest import REPO
from packaging.requirements import Requirement
from test_cli import free_port, wait_for_health


def core_distributions() -> set[str]:
    """streamserver's install requirements and theirs, without extras (normalised names)."""
    found: set[str] = set()
    todo = ["streamserver"]
    while todo:
        name = _normal(todo.pop())
        if name in found:
            continue
        found.add(name)
        for line in metadata.requires(name) or ():
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return found - {"streamserver"}  # the repository itself goes on PYTHONPATH


def without_extras(tmp_path: Path) -> dict[str, str]:
    """The environment of a Python that sees only what ``pip install streamserver`` installs: a
    folder of links to those packages of this venv (their modules, metadata and bundled
    libraries), on ``PYTHONPATH`` with the repository (``-S``: no site-packages of its own)."""
    core = core_distributions()
    modules = {
        top for top, names in metadata.packages_distributions().items()
        if any(_normal(name) in core for name in names)
    }  # fmt: skip
    site = Path(next(p for p in sys.path if p.endswith("site-packages")))
    view = tmp_path / "site-packages"
    view.mkdir()
    for entry in site.iterdir():
        stem = entry.name.split(".")[0]
        dist = entry.name.split("-")[0] if entry.name.endswith(".dist-info") else stem
        if stem in modules or _normal(dist) in core:
            (view / entry.name).symlink_to(entry)
    return {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{view}"}


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def streamserver(*args: str) -> list[str]:
    return [sys.executable, "-S", "-m", "streamserver", *args]


def test_the_shipped_config_serves_a_stream_without_any_extra(tmp_path):
    port = free_port()
    command = streamserver("serve", "--config", str(REPO / "config.toml"), "--port", str(port))
    process = subprocess.Popen(
        command, cwd=tmp_path, env=without_extras(tmp_path), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_for_health(port, process, timeout=20)
        url = f"http://127.0.0.1:{port}/v1/stream?prompt=hi&max_tokens=3"
        with urllib.request.urlopen(url, timeout=20) as response:
            assert b"event: stream_end" in response.read()
        process.terminate()
        _, stderr = process.communicate(timeout=15)
        assert process.returncode == 0, stderr
        assert "Traceback" not in stderr
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


@pytest.mark.parametrize("section", ["resume", "conversations", "limits"])
def test_a_store_whose_extra_is_missing_names_the_extra_and_exits_2(tmp_path, section):
    config = tmp_path / "redis.toml"
    config.write_text(
        '[server]\nplugins_dir = "none"\n[redis]\nurl = "redis://127.0.0.1:1/0"\n'
        f'[{section}]\nstore = "redis"\n',
        encoding="utf-8",
    )
    result = subprocess.run(
        streamserver("check-config", str(config)), env=without_extras(tmp_path),
        cwd=tmp_path, capture_output=True, text=True, timeout=30,
    )  # fmt: skip

    assert result.returncode == 2, result.stderr
    assert "pip install 'streamserver[redis]'" in result.stderr
    assert f"{section}.redis" in result.stderr
    assert "Traceback" not in result.stderr


def test_workers_on_stores_whose_extra_is_missing_name_the_section_and_exit_2(tmp_path):
    config = tmp_path / "workers.toml"
    config.write_text(
        f'[server]\nplugins_dir = "none"\nport = {free_port()}\n'
        '[redis]\nurl = "redis://127.0.0.1:1/0"\n[resume]\nstore = "redis"\n'
        '[conversations]\nstore = "redis"\n[limits]\nstore = "redis"\n',
        encoding="utf-8",
    )
    result = subprocess.run(
        streamserver("serve", "--workers", "2", "--config", str(config)),
        env=without_extras(tmp_path), cwd=tmp_path, capture_output=True, text=True, timeout=30,
    )  # fmt: skip

    assert result.returncode == 2, result.stderr
    assert "workers.toml: resume.redis: expected an installed Redis client" in result.stderr
    assert "Traceback" not in result.stderr


AT_REST = """
import asyncio, sys
import aiohttp
from aiohttp import web
import streamserver

async def main():
    runner = web.AppRunner(streamserver.create_app(sys.argv[1]))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}/v1/stream?prompt=hi&max_tokens=3") as r:
            assert b"event: stream_end" in await r.read()
    await runner.cleanup()
    print(" ".join(sorted({name.partition(".")[0] for name in sys.modules})))

asyncio.run(main())
"""


def test_a_text_stream_loads_neither_redis_py_nor_the_json_schema_validators(tmp_path):
    # Each is several MB resident in every worker: loaded by the first stream (or store) that
    # needs it, not at start-up.
    result = subprocess.run(
        [sys.executable, "-c", AT_REST, str(REPO / "config.toml")],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    loaded = set(result.stdout.split())

    assert "streamserver" in loaded
    assert not loaded & {"redis", "opentelemetry", "jsonschema", "jsonschema_rs"}
