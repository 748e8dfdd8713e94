"""Every Python snippet of the README runs as written, against a live server where it needs one.

The only change made to a snippet is the address: ``http://127.0.0.1:8000`` becomes the test
server's, and a snippet that serves gets a free port instead of its own.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import sys
import tomllib
from typing import Any

import pytest
from conftest import REPO, Client

import streamserver

README = (REPO / "README.md").read_text(encoding="utf-8")
SNIPPET = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)
SERVES = "web.run_app("


def snippets(*, serving: bool) -> list[Any]:
    """The README's Python snippets that serve (or not), each named by its line in the README."""
    return [
        pytest.param(match.group(1), id=f"line-{README.count(chr(10), 0, match.start()) + 1}")
        for match in SNIPPET.finditer(README)
        if (SERVES in match.group(1)) == serving
    ]


def shipped_config(tmp_path: Any) -> dict[str, Any]:
    """The shipped config.toml, with its relative paths made absolute (the plugins) or temporary
    (the conversation store)."""
    config = tomllib.loads((REPO / "config.toml").read_text(encoding="utf-8"))
    config["server"]["plugins_dir"] = str(REPO / config["server"]["plugins_dir"])
    config.setdefault("conversations", {}).setdefault("sqlite", {})["path"] = str(tmp_path / "c.db")
    return config


async def run_python(code: str, **kwargs: Any) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, cwd=REPO, env=dict(os.environ),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, **kwargs,
    )  # fmt: skip


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize("snippet", snippets(serving=False))
async def test_a_python_snippet_of_the_readme_runs_as_written(snippet, serve, tmp_path):
    server: Client = await serve(app=streamserver.create_app(shipped_config(tmp_path)))
    process = await run_python(snippet.replace("http://127.0.0.1:8000", server.base_url))
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=120)

    assert process.returncode == 0, stderr.decode()


@pytest.mark.parametrize("snippet", snippets(serving=True))
async def test_the_readme_embedding_example_serves_on_loopback_only(snippet):
    port = free_port()
    served = re.sub(r"\bport=\d+", f"port={port}", snippet)
    process = await run_python(served)
    try:
        assert process.stdout is not None
        banner = await asyncio.wait_for(process.stdout.readline(), timeout=60)
        assert banner.decode().strip() == f"======== Running on http://127.0.0.1:{port} ========"
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /llm/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        status = await asyncio.wait_for(reader.readline(), timeout=10)
        writer.close()
    finally:
        process.terminate()
        await asyncio.wait_for(process.communicate(), timeout=30)

    assert status.startswith(b"HTTP/1.1 200")
