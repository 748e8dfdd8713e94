"""The ``streamserver`` command, run for real in a subprocess: ``--version``, ``check-config`` and
``serve`` (start, answer, stop cleanly on SIGTERM and Ctrl-C)."""

from __future__ import annotations

import json
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import REPO

import streamserver

SHUTDOWN_NOISE = ("Traceback", "Task was destroyed", "Unclosed")


def run_cli(*args: str, cwd: Path, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamserver", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve_config(tmp_path: Path) -> Path:
    """A config file for ``serve``: fast simulated provider, empty plugins dir, store in tmp_path."""
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    path = tmp_path / "serve.toml"
    path.write_text(
        f'[server]\nplugins_dir = "{plugins}"\nshutdown_grace_s = 1\n'
        "[providers.simulated]\nttft_ms = 0\ntokens_per_second = 0\n"
        '[providers.slow]\ntype = "simulated"\nttft_ms = 0\ntokens_per_second = 20\n'
        "answer_tokens = 10000\n"
        f'[conversations.sqlite]\npath = "{tmp_path / "conversations.sqlite3"}"\n',
        encoding="utf-8",
    )
    return path


def wait_for_health(port: int, process: subprocess.Popen[str], timeout: float = 10.0) -> dict:
    """Poll ``GET /health`` until it answers 200 (bounded); returns its JSON body."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"serve exited early: {process.communicate()[1]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as response:
                if response.status == 200:
                    return json.loads(response.read())
        except (urllib.error.URLError, ConnectionError):
            pass
        time.sleep(0.05)
    raise AssertionError("serve did not answer /health in time")


def serve_then_signal(
    tmp_path: Path, sig: signal.Signals, *, open_stream: bool = False
) -> tuple[int, str, dict, bytes]:
    """Start ``serve``, wait until it is healthy (and, with ``open_stream``, a slow stream has
    begun), send ``sig``; returns the exit status, stderr, the health body and the stream's bytes."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "streamserver", "serve", "--config", str(serve_config(tmp_path)),
         "--port", str(port)],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        health = wait_for_health(port, process)
        streamed = b""
        if open_stream:
            url = f"http://127.0.0.1:{port}/v1/stream?prompt=hi&provider=slow"
            with urllib.request.urlopen(url, timeout=10) as response:
                streamed = response.readline()  # the stream has started
                process.send_signal(sig)
                streamed += response.read()  # until the server ends it
        else:
            process.send_signal(sig)
        _, stderr = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return process.returncode, stderr, health, streamed


def test_version_prints_the_version_and_exits_0(tmp_path):
    result = run_cli("--version", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.strip() == f"streamserver {streamserver.__version__}"


def test_check_config_accepts_the_shipped_config_and_prints_its_routes(tmp_path):
    result = run_cli("check-config", str(REPO / "config.toml"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"{REPO / 'config.toml'}: OK" in result.stdout
    routes = result.stdout.split("routes:")[1]
    for path in ("/stream ", "/stream/v2", "/stream/safe", "/stream/progress", "/v1/stream "):
        assert path in routes
    assert "GET POST" in routes


def test_check_config_on_a_bad_file_prints_one_line_and_exits_2(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[server]\nport = "80"\n', encoding="utf-8")
    result = run_cli("check-config", str(bad), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert str(bad) in lines[0]
    assert "server.port" in lines[0]
    assert "Traceback" not in result.stderr


def test_check_config_names_a_plugins_missing_required_option_and_exits_2(tmp_path):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    shutil.copy(REPO / "tests" / "plugin_fixtures" / "required_option_provider.py", plugins)
    path = tmp_path / "greeter.toml"
    path.write_text(
        '[server]\nplugins_dir = "plugins"\n[providers.greeter]\ntimes = 2\n', encoding="utf-8"
    )
    result = run_cli("check-config", str(path), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip() == (
        f"streamserver: config error: {path}: "
        "providers.greeter.greeting: expected a value for this required key (a string)"
    )


def test_check_config_on_a_missing_file_exits_2_without_traceback(tmp_path):
    result = run_cli("check-config", str(tmp_path / "nowhere.toml"), cwd=tmp_path)
    assert result.returncode == 2
    assert str(tmp_path / "nowhere.toml") in result.stderr
    assert "Traceback" not in result.stderr


def test_check_config_on_a_directory_exits_2_without_traceback(tmp_path):
    folder = tmp_path / "config.toml"
    folder.mkdir()
    result = run_cli("check-config", str(folder), cwd=tmp_path)
    assert result.returncode == 2
    assert str(folder) in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_refuses_a_public_host_without_an_auth_choice_with_exit_2(tmp_path):
    result = run_cli(
        "serve", "--config", str(serve_config(tmp_path)), "--host", "0.0.0.0",
        "--port", str(free_port()), cwd=tmp_path, timeout=15,
    )  # fmt: skip
    assert result.returncode == 2
    assert "auth.mode" in result.stderr
    assert "server.host = 0.0.0.0" in result.stderr
    assert '"api_key"' in result.stderr and '"none"' in result.stderr
    assert "Traceback" not in result.stderr


def test_check_config_refuses_a_public_host_without_an_auth_choice_as_serve_does(tmp_path):
    path = serve_config(tmp_path)
    path.write_text(
        path.read_text(encoding="utf-8").replace("[server]\n", '[server]\nhost = "0.0.0.0"\n'),
        encoding="utf-8",
    )

    result = run_cli("check-config", str(path), cwd=tmp_path)

    assert result.returncode == 2
    assert result.stdout == ""
    assert f"{path}: auth.mode: expected a choice" in result.stderr
    assert "server.host = 0.0.0.0" in result.stderr


def test_check_config_refuses_a_negative_ttft_ms_with_exit_2(tmp_path):
    path = serve_config(tmp_path)
    path.write_text(
        path.read_text(encoding="utf-8").replace(
            "ttft_ms = 0\ntokens_per_second = 0", "ttft_ms = -300\ntokens_per_second = 0"
        ),
        encoding="utf-8",
    )

    result = run_cli("check-config", str(path), cwd=tmp_path)

    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"streamserver: config error: {path}: "
        "providers.simulated.ttft_ms: expected a number at least 0, got -300"
    )


def test_check_config_names_the_file_when_the_api_keys_variable_is_missing(tmp_path):
    path = serve_config(tmp_path)
    with path.open("a", encoding="utf-8") as file:
        file.write('[auth]\nmode = "api_key"\napi_keys_env = "STREAMSERVER_TEST_UNSET_KEYS"\n')

    result = run_cli("check-config", str(path), cwd=tmp_path)

    assert result.returncode == 2
    assert result.stderr.startswith(
        f"streamserver: config error: {path}: auth.api_keys_env: expected the environment "
        "variable STREAMSERVER_TEST_UNSET_KEYS"
    )


def test_serve_answers_health_while_running(tmp_path):
    _, _, health, _ = serve_then_signal(tmp_path, signal.SIGTERM)
    assert health == {"status": "healthy", "active_streams": 0}


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serve_stops_cleanly_on_signal(tmp_path, sig):
    status, stderr, _, _ = serve_then_signal(tmp_path, sig)
    assert status == 0, stderr
    for noise in SHUTDOWN_NOISE:
        assert noise not in stderr


def test_serve_ends_an_open_stream_and_exits_cleanly_on_sigterm(tmp_path):
    status, stderr, _, streamed = serve_then_signal(tmp_path, signal.SIGTERM, open_stream=True)
    assert status == 0, stderr
    assert b"event: error" in streamed
    assert b"server_shutdown" in streamed
    for noise in SHUTDOWN_NOISE:
        assert noise not in stderr


def test_serve_on_a_port_in_use_says_so_in_one_line_and_exits_1(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli(
            "serve", "--config", str(serve_config(tmp_path)), "--port", str(port),
            cwd=tmp_path, timeout=15,
        )  # fmt: skip
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_raises_its_open_file_soft_limit_to_the_hard_limit(tmp_path):
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard <= 256:
        pytest.skip("the hard limit leaves nothing to raise")
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "streamserver", "serve", "--config", str(serve_config(tmp_path)),
         "--port", str(port)],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard)),
    )  # fmt: skip
    try:
        wait_for_health(port, process)
        limits = Path(f"/proc/{process.pid}/limits").read_text()
        soft_now = next(line for line in limits.splitlines() if line.startswith("Max open files"))
        assert soft_now.split()[3] == soft_now.split()[4], soft_now  # soft == hard
    finally:
        process.terminate()
        process.communicate(timeout=15)


@pytest.mark.parametrize("loop", ["asyncio", "uvloop", None], ids=["asyncio", "uvloop", "default"])
def test_serve_runs_on_the_event_loop_it_is_given(tmp_path, loop):
    pytest.importorskip("uvloop")
    port = free_port()
    choice = [] if loop is None else ["--loop", loop]
    process = subprocess.Popen(
        [sys.executable, "-m", "streamserver", "serve", "--config", str(serve_config(tmp_path)),
         "--port", str(port), *choice],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_for_health(port, process)
        url = f"http://127.0.0.1:{port}/v1/stream?prompt=hi"
        with urllib.request.urlopen(url, timeout=10) as response:
            assert b"event: stream_end" in response.read()
        maps = Path(f"/proc/{process.pid}/maps").read_text()
        assert ("uvloop" in maps) is (loop == "uvloop")  # the standard loop stays the default
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=15)
        assert process.returncode == 0, stderr
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


async def test_serve_freezes_what_start_up_loaded_and_keeps_young_collections_small():
    import gc

    from streamserver.cli import GC_THRESHOLDS, _tune_gc

    before = gc.get_threshold()
    try:
        await _tune_gc(None)  # type: ignore[arg-type]  # the app is not looked at
        assert gc.get_threshold() == GC_THRESHOLDS
        assert GC_THRESHOLDS[0] <= 1_000  # a young collection walks every live stream's frames
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
