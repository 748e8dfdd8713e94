"""``streamserver new-plugin``: for every kind, the package it writes passes its own tests at once
(pytest in a subprocess, the package on the path as its pyproject says), is ruff-clean, and its
entry point names a module that loads as a plugin; a bad name or an existing folder is refused
with exit status 2."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from conftest import REPO, base_config

import streamserver
from streamserver.cli import main
from streamserver.devtools.new_plugin import KINDS

BIN = Path(sys.executable).parent
PART_KIND = {"buffer": "buffers", "formatter": "formatters", "provider": "providers",
             "sink": "metrics_sinks"}  # fmt: skip


def run(*command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}  # this checkout's streamserver
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_the_written_package_passes_its_own_tests_at_once(kind, tmp_path):
    assert main(["new-plugin", f"kit_{kind}", "--kind", kind, "--dir", str(tmp_path)]) == 0
    package = tmp_path / f"kit_{kind}"

    tests = run(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=package)

    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert " passed" in tests.stdout and "skipped" not in tests.stdout


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_the_written_package_is_lint_clean_even_with_a_long_name(kind, tmp_path):
    name = f"a_rather_long_plugin_name_for_a_{kind}"
    main(["new-plugin", name, "--kind", kind, "--dir", str(tmp_path)])
    package = tmp_path / name

    for command in (["check", "."], ["format", "--check", "."]):
        result = run(str(BIN / "ruff"), *command, "--no-cache", cwd=package)
        assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_its_entry_point_names_a_module_that_registers_the_part(kind, tmp_path, monkeypatch):
    name = f"ep_{kind}"
    main(["new-plugin", name, "--kind", kind, "--dir", str(tmp_path)])
    project = tomllib.loads((tmp_path / name / "pyproject.toml").read_text())["project"]
    (entry_point,) = project["entry-points"]["streamserver"].items()
    monkeypatch.syspath_prepend(str(tmp_path / name))

    config = streamserver.load_config(base_config(plugins={"modules": [entry_point[1]]}))

    assert entry_point[0] == name
    assert config.registry.parts[PART_KIND[kind]][name].plugin == entry_point[1]


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("3d_buffer", "not a valid plugin name"),
        ("my-buffer", "not a valid plugin name"),
        ("class", "not a valid plugin name"),
        ("json", "already the name of an importable module"),
    ],
)
def test_a_bad_name_is_refused_with_status_2(name, says, tmp_path, capsys):
    assert main(["new-plugin", name, "--kind", "buffer", "--dir", str(tmp_path)]) == 2
    assert says in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_an_existing_folder_is_refused_with_status_2_and_left_alone(tmp_path, capsys):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")

    assert main(["new-plugin", "mine", "--kind", "sink", "--dir", str(tmp_path)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]
