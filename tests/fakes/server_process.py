"""A real ``streamserver serve`` process for the tests that need several instances (behind nginx):
its own config file and free port, its output in files, killed or stopped like a real one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .redis_server import free_port

TESTS = Path(__file__).resolve().parent.parent


def toml_text(config: Mapping[str, Any]) -> str:
    """``config`` (tables of strings, numbers, booleans and lists of them) as TOML."""
    lines: list[str] = []

    def table(name: str, values: Mapping[str, Any]) -> None:
        scalars = {key: value for key, value in values.items() if not isinstance(value, Mapping)}
        if name and (scalars or not values):
            lines.append(f"[{name}]")
        # JSON writes TOML's strings, numbers, booleans and arrays the same way.
        lines.extend(f"{json.dumps(key)} = {json.dumps(value)}" for key, value in scalars.items())
        for key, value in values.items():
            if isinstance(value, Mapping):
                table(f"{name}.{json.dumps(key)}" if name else json.dumps(key), value)

    table("", config)
    return "\n".join(lines) + "\n"


class ServerProcess:
    """``python -m streamserver serve --config <folder>/config.toml`` on a free 127.0.0.1 port,
    run in ``folder`` (its plugins folder and conversation database too, unless ``config`` says
    otherwise); ``address`` is its ``host:port`` (an nginx upstream)."""

    def __init__(self, config: Mapping[str, Any], folder: Path) -> None:
        self.port = free_port()
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        # Nothing of the checkout's: no plugins from its plugins/ folder, no database in it.
        server = {"plugins_dir": str(folder), **config.get("server", {})}
        server.update(host="127.0.0.1", port=self.port)
        conversations = dict(config.get("conversations", {}))
        if conversations.get("store", "sqlite") == "sqlite":  # its database in the folder
            conversations.setdefault("sqlite", {"path": str(folder / "conversations.sqlite3")})
        self.config_path = folder / "config.toml"
        full = {**config, "server": server, "conversations": conversations}
        self.config_path.write_text(toml_text(full), encoding="utf-8")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"http://{self.address}"

    def start(self, timeout_s: float = 30) -> ServerProcess:
        """Start it and return once it listens (or raise with what it printed)."""
        self.launch()
        return self.wait_listening(timeout_s)

    def launch(self) -> None:
        """Start the process without waiting (``wait_listening`` waits), so several start at once."""
        # tests/plugin_fixtures on the path, so a config may name a test plugin in plugins.modules.
        paths = [str(TESTS / "plugin_fixtures"), os.environ.get("PYTHONPATH", "")]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(path for path in paths if path)}
        with (
            (self.folder / "stdout.log").open("wb") as stdout,
            (self.folder / "stderr.log").open("wb") as stderr,
        ):  # the child keeps its own copies
            self.process = subprocess.Popen(
                [sys.executable, "-m", "streamserver", "serve", "--config", str(self.config_path)],
                stdout=stdout,
                stderr=stderr,
                env=env,
                cwd=self.folder,
            )

    def wait_listening(self, timeout_s: float = 30) -> ServerProcess:
        """Return once the launched process says it listens (or raise with what it printed)."""
        assert self.process is not None, "launch() first"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if "listening on" in self.output("stdout"):
                return self
            if self.process.poll() is not None:
                raise RuntimeError(f"streamserver exited at start:\n{self.output('stderr')}")
            time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"streamserver did not listen within {timeout_s} s:\n{self.output()}")

    def output(self, name: str = "stderr") -> str:
        """What it has written to ``stdout`` or ``stderr`` (its log) so far."""
        path = self.folder / f"{name}.log"
        return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""

    def kill(self) -> None:
        """SIGKILL, as when its machine is lost: no drain, its connections just end."""
        self._end(signal.SIGKILL)

    def stop(self) -> None:
        """SIGTERM: the graceful shutdown (a drain of up to ``server.shutdown_grace_s``)."""
        self._end(signal.SIGTERM)

    def _end(self, sig: signal.Signals) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None
