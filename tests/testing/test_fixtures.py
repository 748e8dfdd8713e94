"""The kit's fixtures: apps with the author's plugins loaded, over real HTTP on 127.0.0.1."""

from __future__ import annotations

from typing import Any

import pytest

from streamserver.testing import DEFAULT_SECTIONS, plugin_config, script


@pytest.fixture
def streamserver_plugins() -> list[str]:
    return ["chunk_buffer"]  # tests/plugin_fixtures/chunk_buffer.py


@pytest.fixture
def streamserver_config() -> dict[str, Any]:
    return {**DEFAULT_SECTIONS, "buffers": {"chunks": {"size": 3}}}


async def test_the_client_streams_from_an_app_with_the_plugin_and_its_options(
    streamserver_client,
):
    params = {"prompt": script(["abcd", "efg"]), "model": "scripted", "buffer": "chunks"}
    got = await streamserver_client.sse("/v1/stream", params=params)

    assert [e["content"] for e in got.json() if "content" in e] == ["abc", "def", "g"]


async def test_the_fake_upstream_answers_over_http(upstream, streamserver_client):
    _, base_url = upstream
    answer = await streamserver_client.http.get(f"{base_url}/models")

    assert answer.status_code == 200


def test_a_module_an_installed_entry_point_names_is_loaded_once(tmp_path, monkeypatch):
    # An installed distribution (its metadata on sys.path) whose entry point names the module.
    info = tmp_path / "chunks_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: chunks-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[streamserver]\nchunks_installed = chunk_buffer\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    config = plugin_config(["chunk_buffer"])

    assert config.registry.sources["chunks_installed"].origin == "entry point chunk_buffer"
    assert "chunk_buffer" not in config.registry.sources
    assert "chunks" in config.buffers
