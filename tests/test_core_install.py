"""``pip install streamserver`` without extras is enough to serve: the shipped config (what
``make run`` serves) starts and streams with every optional package hidden from import, and a
config that asks for one says which extra to install, with exit 2.

The suite's own environment has every extra installed, so a top-level import of one in a
built-in plugin would pass every other test and still break ``make run`` on a fresh machine."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from conftest import REPO
from test_cli import free_port, wait_for_health

EXTRAS = ("redis", "hiredis", "anthropic", "opentelemetry", "uvloop", "pytest", "hypothesis",
          "httpx", "httpx_sse", "langchain_openai", "langchain_core")  # fmt: skip
"""Top-level packages of the extras (``redis``, ``anthropic``, ``otel``, ``uvloop``, ``testing``)."""


def without_extras(tmp_path: Path) -> dict[str, str]:
    """The environment of a Python that sees this venv's site-packages minus the extras: a folder
    of links to every other entry, on ``PYTHONPATH`` with the repository (``-S``: no site)."""
    site = Path(next(p for p in sys.path if p.endswith("site-packages")))
    view = tmp_path / "site-packages"
    view.mkdir()
    for entry in site.iterdir():
        top = entry.name.split("-")[0].split(".")[0].lower()
        if top not in EXTRAS and not entry.name.endswith(".pth"):
            (view / entry.name).symlink_to(entry)
    return {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{view}"}


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
