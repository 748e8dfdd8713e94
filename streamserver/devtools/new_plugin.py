"""``streamserver new-plugin NAME --kind KIND``: write a plugin package that works at once.

The package (``NAME/`` in the chosen directory) holds a ``pyproject.toml`` with the
``streamserver`` entry point (so installing it is all it takes to load it), the plugin module
(``NAME/plugin.py``: a small real plugin of that kind), its tests on the kit
(``streamserver.testing``), a ``conftest.py`` that loads the plugin into the kit's apps, and a
README. ``pytest`` passes in it as written.
"""

from __future__ import annotations

import importlib.util
import keyword
from pathlib import Path
from string import Template

from ..version import __version__
from .plugin_templates import BUFFER, FORMATTER, PluginKind
from .plugin_templates_provider_sink import PROVIDER, SINK

KINDS: dict[str, PluginKind] = {
    "buffer": BUFFER,
    "formatter": FORMATTER,
    "provider": PROVIDER,
    "sink": SINK,
}


class PluginNameError(ValueError):
    """A name or place ``new-plugin`` cannot write a package under: the message says why."""


PYPROJECT = Template("""[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "$distribution"
version = "0.1.0"
description = "A streamserver $kind plugin: $summary"
readme = "README.md"
requires-python = ">=3.11"
dependencies = ["streamserver>=$version"]

[project.optional-dependencies]
test = ["streamserver[testing]>=$version"]

# What makes it a plugin: streamserver loads every module named in this group.
[project.entry-points.streamserver]
$name = "$name.plugin"

[tool.setuptools]
packages = ["$name"]

[tool.pytest.ini_options]
testpaths = ["tests"]
pythonpath = ["."]
asyncio_mode = "auto"
asyncio_default_fixture_loop_scope = "function"

[tool.ruff]
line-length = 100

[tool.ruff.lint]
select = ["E", "F", "W", "I", "B", "UP"]
isort.known-first-party = ["$name"]
""")

CONFTEST = Template('''"""The kit's fixtures (``streamserver.testing``), with this package's plugin in every app."""

import pytest

pytest_plugins = ["streamserver.testing"]


@pytest.fixture
def streamserver_plugins() -> list[str]:
    """The modules the kit's apps load beside the built-ins (an installed one only once)."""
    return ["$name.plugin"]
''')

README = Template("""# $name

A streamserver $kind plugin: $summary.

## Install and use

```
pip install -e .
```

The `streamserver` entry point in `pyproject.toml` loads it into every streamserver in the same
environment; `streamserver check-config` lists it under `plugins:`. Without installing it, name
the module in `config.toml` instead: `[plugins] modules = ["$name.plugin"]`.

$usage

## Test

```
pip install -e ".[test]"
pytest
```

The tests use streamserver's kit (`streamserver.testing`, loaded by `conftest.py`): real apps on
127.0.0.1 with this plugin loaded, the fake upstream, and the ready property tests.
""")

USAGE = {
    "buffer": 'Choose it on a route (`buffer = "$name"`) or per request (`?buffer=$name`); its '
    "options go in `[buffers.$name]` (`min_lines = 2`).",
    "formatter": 'Choose it on a route (`formatter = "$name"`) or per request (`?format=$name`).',
    "provider": "Configure an instance: `[providers.$name]` with `base_url`, `model` and "
    "`api_key_env` (the variable that holds the key), then ask for its model.",
    "sink": 'Turn it on with `[metrics] sinks = ["memory", "$name"]`; its counts show in '
    "`GET /v1/stream/metrics`.",
}


def check_name(name: str) -> None:
    """Refuse a name that cannot be a package and a part's name (``PluginNameError``)."""
    if not name.isidentifier() or keyword.iskeyword(name):
        raise PluginNameError(
            f"{name!r} is not a valid plugin name: it names the package and the part, so it "
            "must be a Python identifier (letters, digits and underscores, not starting with a "
            "digit, not a keyword), e.g. my_buffer"
        )


def check_importable(name: str) -> None:
    """Refuse a name an importable module already has (``PluginNameError``)."""
    if importlib.util.find_spec(name) is not None:
        raise PluginNameError(
            f"{name!r} is already the name of an importable module: the plugin's package would "
            "shadow it (or be shadowed); choose another name"
        )


def write_plugin(name: str, kind: str, directory: Path) -> Path:
    """Write the package ``directory/name`` for a plugin of ``kind``; return its path."""
    check_name(name)
    target = directory / name
    if target.exists():
        raise PluginNameError(f"{target} already exists: new-plugin writes a new folder only")
    check_importable(name)
    template = KINDS[kind]
    words = {
        "name": name,
        "kind": kind,
        "summary": template.summary,
        "distribution": "streamserver-" + name.replace("_", "-"),
        "version": __version__,
    }
    usage = Template(USAGE[kind]).substitute(words)
    files = {
        "pyproject.toml": PYPROJECT.substitute(words),
        "README.md": README.substitute(words, usage=usage),
        "conftest.py": CONFTEST.substitute(words),
        f"{name}/__init__.py": f'"""{name}: a streamserver {kind} plugin (``plugin.py``)."""\n',
        f"{name}/plugin.py": template.module.substitute(words),
        "tests/test_plugin.py": template.tests.substitute(words),
    }
    for relative, text in files.items():
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return target
