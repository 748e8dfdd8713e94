"""How the project is installed: what setuptools builds from setup.cfg, and what the Makefile runs."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

STATIC_FILES = sorted(path.name for path in (REPO / "streamserver" / "static").iterdir())


def build_package(tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run setuptools' build_py on a copy of the project (with a stray __pycache__, as a checkout
    that has run has), into ``tmp_path/lib``; build_py is where package discovery and package data
    are decided, for a wheel and an editable install alike."""
    pytest.importorskip("setuptools")
    source = tmp_path / "source"
    source.mkdir()
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "streamserver", source / "streamserver",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    (source / "streamserver" / "__pycache__").mkdir()
    (source / "streamserver" / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"")
    return subprocess.run(
        [sys.executable, "-W", "always", "-c", "import setuptools; setuptools.setup()",
         "--quiet", "build_py", "--build-lib", str(tmp_path / "lib")],
        cwd=source, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_building_the_package_gives_no_setuptools_warning(tmp_path):
    built = build_package(tmp_path)

    assert built.returncode == 0, built.stderr
    assert "Warning:" not in built.stderr


def test_the_built_package_ships_the_demo_page_and_no_bytecode(tmp_path):
    build_package(tmp_path)
    package = tmp_path / "lib" / "streamserver"

    assert sorted(path.name for path in (package / "static").iterdir()) == STATIC_FILES
    assert (package / "py.typed").exists()
    assert (package / "testing" / "fixtures.py").exists()  # the plugin authors' kit
    assert not list(package.rglob("__pycache__"))


def make(*args: str) -> str:
    """What ``make`` would run (``-n``: nothing is run; ``-B``: every step, as in a fresh clone)."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    done = subprocess.run(["make", "-n", "-B", "--no-print-directory", "-C", str(REPO), *args],
                          capture_output=True, text=True, timeout=30, check=True)  # fmt: skip
    return done.stdout


def test_make_run_serves_on_the_port_and_host_given():
    commands = make("run", "PORT=9000", "HOST=127.0.0.2").splitlines()

    assert commands[-1].endswith(
        "streamserver serve --config config.toml --host 127.0.0.2 --port 9000"
    )


def test_make_run_without_a_port_leaves_it_to_the_config():
    commands = make("run").splitlines()

    assert commands[-1].endswith("streamserver serve --config config.toml")


@pytest.mark.parametrize("target", ["run", "test"])
def test_make_says_what_it_installs_before_each_install(target):
    commands = make(target).splitlines()
    installs = [i for i, line in enumerate(commands) if " -m pip install" in line]

    assert installs
    assert all(commands[i - 1].startswith('echo "make: ') for i in installs)
