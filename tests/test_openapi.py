"""``GET /openapi.json`` describes the server, and schemathesis finds no 5xx and no undocumented error.

The server runs as a real process (schemathesis's client is synchronous); examples are bounded.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("openapi")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = tmp / "config.toml"
    text = (REPO / "config.toml").read_text(encoding="utf-8")
    text = text.replace("port = 8000", f"port = {port}").replace(
        'plugins_dir = "plugins"', f'plugins_dir = "{tmp}"'
    )
    text = text.replace("ttft_ms = 300", "ttft_ms = 0").replace(
        "tokens_per_second = 40", "tokens_per_second = 0"
    )
    text = text.replace("answer_tokens = 160", "answer_tokens = 20")
    text = text.replace('path = "conversations.sqlite3"', f'path = "{tmp / "c.sqlite3"}"')
    config.write_text(text + "\n", encoding="utf-8")
    # The server's log goes to a file: it writes an access line per request, and a pipe nobody
    # reads until the end fills up (64 KiB) and stalls the server mid-run.
    log = tmp / "server.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "streamserver", "serve", "--config", str(config)],
        stdout=subprocess.DEVNULL, stderr=log.open("w", encoding="utf-8"), text=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            urllib.request.urlopen(base + "/health", timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise RuntimeError(f"server did not start: {log.read_text()}") from None
            time.sleep(0.1)
    yield base
    process.terminate()
    process.wait(timeout=30)
    stderr = log.read_text(encoding="utf-8")
    assert "Traceback" not in stderr, stderr


def test_the_spec_lists_every_route_of_the_shipped_config(server):
    with urllib.request.urlopen(f"{server}/openapi.json") as response:
        spec = json.load(response)

    assert spec["openapi"].startswith("3.")
    for path in ("/stream", "/stream/v2", "/stream/safe", "/stream/progress", "/v1/stream", "/v1/chat/completions",
                 "/v1/models", "/v1/streams/{stream_id}", "/health", "/v1/stream/metrics", "/ws/stream",
                 "/ws/chat/{conversation_id}", "/v1/conversations/{conversation_id}", "/metrics"):  # fmt: skip
        assert path in spec["paths"], path
    assert set(spec["paths"]["/v1/stream"]) == {"get", "post"}


def schemathesis(server: str, cwd: Path, checks: str, phases: str) -> subprocess.CompletedProcess:
    """The schemathesis CLI (its pytest plugin does not support this pytest) over every HTTP
    operation: bounded examples per operation, deterministic. The WebSocket routes are left out:
    a request valid by the document is a handshake, and what follows is not HTTP."""
    return subprocess.run(
        [str(Path(sys.executable).with_name("schemathesis")), "run", f"{server}/openapi.json",
         "--checks", checks, "--phases", phases, "--exclude-path-regex", "^/ws/",
         "--max-examples", "15", "--generation-deterministic", "--request-timeout", "10",
         "--continue-on-failure", "--no-color", "--output-sanitize", "false"],
        capture_output=True, text=True, timeout=400, cwd=cwd,
    )  # fmt: skip


def test_schemathesis_finds_no_server_error_and_no_undocumented_response(server, tmp_path):
    checks = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
    result = schemathesis(server, tmp_path, checks, "examples,coverage,fuzzing")

    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]


def test_schemathesis_finds_no_request_valid_by_the_document_refused(server, tmp_path):
    # Not the coverage phase: for a header whose pattern has a character outside A-Z a-z 0-9
    # (Last-Event-ID's ':'), schemathesis 4.32 sends "0" as a valid value.
    result = schemathesis(server, tmp_path, "positive_data_acceptance", "examples,fuzzing")

    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]


def test_a_websocket_route_documents_the_handshake_it_needs(server):
    with urllib.request.urlopen(f"{server}/openapi.json") as response:
        spec = json.load(response)

    for path in ("/ws/stream", "/ws/chat/{conversation_id}"):
        headers = {
            p["name"] for p in spec["paths"][path]["get"]["parameters"] if p["in"] == "header"
        }
        assert {"Upgrade", "Connection", "Sec-WebSocket-Key", "Sec-WebSocket-Version"} <= headers
