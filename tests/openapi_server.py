"""The shipped server as a real process, and the schemathesis CLI against it: what the OpenAPI
tests share (they are split across files so that the test workers run them side by side)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHIPPED = (REPO / "config.toml").read_text(encoding="utf-8")
CONFORMANCE = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
"""The checks that the server answers only what the document says (no 5xx)."""
CHAT_BODIES = "^/v1/(stream|chat/completions)$"
VENDOR_BODIES = "^/v1/(responses|messages)$"
API_BODIES = f"{CHAT_BODIES}|{VENDOR_BODIES}"
"""The operations with the largest request bodies (most of the coverage phase's time)."""
CONFIG = Path(__file__).with_name("schemathesis.toml")
"""Per-operation settings of the schemathesis runs (the refusals that depend on state)."""


def start_server(tmp: Path, text: str):
    """Run ``streamserver serve`` on ``text`` (the shipped config, adapted) on a free port in a
    subprocess; yields its base URL, then stops it and checks its log holds no traceback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = tmp / "config.toml"
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


def schemathesis(
    server: str,
    cwd: Path,
    checks: str,
    phases: str,
    *,
    paths: str = "",
    skip: str = "",
    examples: int = 15,
) -> subprocess.CompletedProcess:
    """The schemathesis CLI (its pytest plugin does not support this pytest) over every HTTP
    operation (or those whose path matches ``paths``, and not ``skip``): bounded examples per
    operation, deterministic. The WebSocket routes are left out: a request valid by the document
    is a handshake, and what follows is not HTTP."""
    only = ["--include-path-regex", paths] if paths else []
    excluded = "^/ws/" + (f"|{skip}" if skip else "")
    return subprocess.run(
        [str(Path(sys.executable).with_name("schemathesis")), "--config-file", str(CONFIG),
         "run", f"{server}/openapi.json",
         "--checks", checks, "--phases", phases, "--exclude-path-regex", excluded, *only,
         "--max-examples", str(examples), "--generation-deterministic", "--request-timeout", "10",
         "--continue-on-failure", "--no-color", "--output-sanitize", "false"],
        capture_output=True, text=True, timeout=400, cwd=cwd,
    )  # fmt: skip


def assert_coverage(server: str, cwd: Path, paths: str, operations: int) -> None:
    """Schemathesis's coverage phase on the operations whose path matches ``paths`` (there are
    ``operations`` of them) finds no 5xx and no undocumented answer."""
    result = schemathesis(server, cwd, CONFORMANCE, "coverage", paths=paths)

    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert f"Tested: {operations}" in result.stdout
