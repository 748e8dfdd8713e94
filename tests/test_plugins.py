"""Plugins load from every source (built-ins, entry points, the plugins directory, ``plugins.modules``),
can be switched off by name, are validated by their own options, and belong to one registry."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
from conftest import SCRIPTED, base_config, script

import streamserver
from streamserver import ConfigError
from streamserver.plugins import DEFAULT_PLUGINS

FIXTURES = Path(__file__).resolve().parent / "plugin_fixtures"

RAW_BUFFER_PLUGIN = """\
from streamserver import hookimpl
from streamserver.builtins.buffers import RawBuffer

@hookimpl
def register_buffers(register):
    register({name!r}, RawBuffer)
"""


def plugin_dir(tmp_path: Path, **files: str) -> Path:
    """A plugins directory in ``tmp_path`` holding ``files`` (stem -> source)."""
    folder = tmp_path / "plugins"
    folder.mkdir(exist_ok=True)
    for stem, source in files.items():
        (folder / f"{stem}.py").write_text(source, encoding="utf-8")
    return folder


def raw_buffer_plugin(name: str) -> str:
    """Source of a plugin file that registers the raw buffer under ``name``."""
    return RAW_BUFFER_PLUGIN.format(name=name)


def load(folder: Path | None = None, **sections: object) -> streamserver.Config:
    """Load a test config whose plugins directory is ``folder`` (default: none)."""
    if folder is not None:
        sections["server"] = {"plugins_dir": str(folder)}
    return streamserver.load_config(base_config(**sections))


def config_error(**sections: object) -> str:
    with pytest.raises(ConfigError) as caught:
        streamserver.load_config(base_config(**sections))
    return str(caught.value)


# --- (a) built-ins ---------------------------------------------------------------------------


def test_every_builtin_plugin_is_loaded_as_a_builtin():
    sources = load().registry.sources
    for name in DEFAULT_PLUGINS:
        assert sources[name].origin == "built-in"


def test_builtins_register_the_contract_parts():
    config = load()
    assert {"simulated", "openai"} <= set(config.registry.names("providers"))
    assert {"raw", "word", "sentence", "delimiter"} <= set(config.buffers)
    assert {"simple", "events", "progress", "production", "openai"} <= set(config.formatters)
    assert "memory" in config.registry.names("metrics_sinks")


# --- (b) the plugins directory -----------------------------------------------------------------


def test_py_file_in_plugins_dir_registers_a_buffer(tmp_path):
    folder = plugin_dir(tmp_path, dir_buffer=raw_buffer_plugin("dir-buffer"))
    config = load(folder)
    assert "dir-buffer" in config.buffers
    assert config.registry.sources["dir_buffer"].origin == str(folder / "dir_buffer.py")


def test_buffer_from_plugins_dir_is_usable_in_a_route(tmp_path):
    folder = plugin_dir(tmp_path, dir_buffer=raw_buffer_plugin("dir-buffer"))
    config = load(folder, routes={"/s": {"formatter": "simple", "buffer": "dir-buffer"}})
    assert config.routes["/s"].buffer == "dir-buffer"


def test_underscore_files_in_plugins_dir_are_not_plugins(tmp_path):
    folder = plugin_dir(tmp_path, _helper="raise RuntimeError('must not be imported')\n")
    config = load(folder)
    assert "_helper" not in config.registry.sources


# --- (c) plugins.modules ---------------------------------------------------------------------


def test_module_named_in_plugins_modules_is_loaded():
    config = load(plugins={"modules": ["fixture_module_plugin"]})
    assert "fixture-module-buffer" in config.buffers
    assert config.registry.sources["fixture_module_plugin"].origin == "plugins.modules"


def test_module_that_cannot_be_imported_is_a_config_error_naming_it():
    message = config_error(plugins={"modules": ["no_such_streamserver_plugin"]})
    assert "plugins.modules[0]" in message
    assert "'no_such_streamserver_plugin'" in message


# --- (d) installed packages (entry points) -----------------------------------------------------


def install_entry_point(tmp_path: Path, module_source: str) -> Path:
    """A fake installed distribution with one ``streamserver`` entry point; returns its folder."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "ep_fixture_plugin.py").write_text(module_source, encoding="utf-8")
    dist = site / "ep_fixture_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: ep-fixture-plugin\nVersion: 0.1\n", encoding="utf-8"
    )
    (dist / "entry_points.txt").write_text(
        "[streamserver]\nmyplug = ep_fixture_plugin\n", encoding="utf-8"
    )
    return site


def test_installed_entry_point_is_loaded(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(install_entry_point(tmp_path, raw_buffer_plugin("ep-buffer"))))
    monkeypatch.delitem(sys.modules, "ep_fixture_plugin", raising=False)
    config = load()
    assert "ep-buffer" in config.buffers
    assert config.registry.sources["myplug"].origin == "entry point ep_fixture_plugin"


def test_entry_point_can_be_disabled_by_its_name(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(install_entry_point(tmp_path, raw_buffer_plugin("ep-buffer"))))
    config = load(plugins={"disabled": ["myplug"]})
    assert "myplug" not in config.registry.sources
    assert "ep-buffer" not in config.buffers


def test_entry_point_that_fails_to_load_is_a_config_error_naming_it(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(install_entry_point(tmp_path, "raise RuntimeError('boom')\n")))
    monkeypatch.delitem(sys.modules, "ep_fixture_plugin", raising=False)
    message = config_error()
    assert "entry point myplug" in message
    assert "boom" in message


# --- (e) plugins.disabled --------------------------------------------------------------------


def test_disabled_builtin_plugin_registers_nothing():
    config = load(
        plugins={"disabled": ["streamserver.builtins.formatters"]},
        routes={"/s": {"formatter": "text"}},
    )
    assert "streamserver.builtins.formatters" not in config.registry.sources
    assert "simple" not in config.formatters
    assert "text" in config.formatters


def test_route_using_a_disabled_plugins_formatter_is_refused():
    message = config_error(
        plugins={"disabled": ["streamserver.builtins.formatters"]},
        routes={"/s": {"formatter": "simple"}},
    )
    assert 'routes."/s".formatter' in message
    assert "'simple'" in message
    assert "simple" not in message.split("choices:")[1]


def test_plugins_dir_file_can_be_disabled_by_its_stem(tmp_path):
    folder = plugin_dir(tmp_path, dir_buffer=raw_buffer_plugin("dir-buffer"))
    config = load(folder, plugins={"disabled": ["dir_buffer"]})
    assert "dir-buffer" not in config.buffers


def test_disabling_an_unknown_plugin_lists_the_plugins(tmp_path):
    folder = plugin_dir(tmp_path, dir_buffer=raw_buffer_plugin("dir-buffer"))
    message = config_error(
        server={"plugins_dir": str(folder)}, plugins={"disabled": ["streamserver.builtins.nope"]}
    )
    assert "plugins.disabled[0]" in message
    assert "'streamserver.builtins.nope'" in message
    choices = message.split("choices:")[1]
    assert "streamserver.builtins.formatters" in choices
    assert "dir_buffer" in choices


# --- (f) one name, two plugins -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("files", "named"),
    [
        pytest.param(
            {"first_dup": "twice", "second_dup": "twice"},
            ["'twice'", "first_dup", "second_dup"],
            id="two_plugins_registering_one_buffer_name_are_both_named",
        ),
        pytest.param(
            {"my_word": "word"},
            ["'word'", "streamserver.builtins.buffers", "my_word"],
            id="a_plugin_registering_a_builtin_name_names_the_builtin_too",
        ),
    ],
)
def test_a_buffer_name_registered_twice_names_both_plugins(tmp_path, files, named):
    plugins = {name: raw_buffer_plugin(buffer) for name, buffer in files.items()}
    message = config_error(server={"plugins_dir": str(plugin_dir(tmp_path, **plugins))})
    for fragment in named:
        assert fragment in message


def test_one_plugin_name_from_two_sources_names_both_origins(tmp_path):
    folder = plugin_dir(tmp_path, fixture_module_plugin=raw_buffer_plugin("other"))
    message = config_error(
        server={"plugins_dir": str(folder)}, plugins={"modules": ["fixture_module_plugin"]}
    )
    assert "'fixture_module_plugin'" in message
    assert str(folder / "fixture_module_plugin.py") in message
    assert "plugins.modules" in message


# --- (g) a plugin that fails ----------------------------------------------------------------


def test_plugin_file_that_raises_on_import_is_a_config_error_naming_the_file(tmp_path):
    folder = plugin_dir(tmp_path, broken="raise RuntimeError('plugin exploded')\n")
    message = config_error(server={"plugins_dir": str(folder)})
    assert str(folder / "broken.py") in message
    assert "plugin exploded" in message


def test_plugin_whose_options_are_not_a_dataclass_is_refused_naming_it(tmp_path):
    source = (
        "from streamserver import hookimpl\n"
        "from streamserver.builtins.buffers import RawBuffer\n"
        "@hookimpl\n"
        "def register_buffers(register):\n"
        "    register('undeclared', RawBuffer, options=dict)\n"
    )
    message = config_error(server={"plugins_dir": str(plugin_dir(tmp_path, odd_options=source))})
    assert "odd_options" in message
    assert "dataclass" in message


# --- (h) a plugin's declared options ----------------------------------------------------------


def chunk_config(tmp_path: Path, **buffer_options: object) -> dict:
    folder = plugin_dir(tmp_path)
    shutil.copy(FIXTURES / "chunk_buffer.py", folder / "chunk_buffer.py")
    config = base_config(
        **SCRIPTED,
        buffers={"chunks": buffer_options},
        routes={"/chunked": {"formatter": "simple", "buffer": "chunks", "provider": "scripted"}},
    )
    config["server"]["plugins_dir"] = str(folder)
    return config


def test_plugin_section_is_validated_into_its_options_dataclass(tmp_path):
    config = streamserver.load_config(chunk_config(tmp_path, size=3))
    assert config.buffers["chunks"].options.size == 3


def test_plugin_section_with_a_wrong_type_is_refused(tmp_path):
    with pytest.raises(ConfigError) as caught:
        streamserver.load_config(chunk_config(tmp_path, size="three"))
    assert str(caught.value) == "buffers.chunks.size: expected an integer, got 'three'"


def test_plugin_section_with_an_unknown_key_lists_its_options(tmp_path):
    with pytest.raises(ConfigError) as caught:
        streamserver.load_config(chunk_config(tmp_path, length=3))
    assert str(caught.value) == "buffers.chunks.length: expected a known key (choices: size)"


async def test_plugin_options_reach_the_factory_of_a_running_stream(tmp_path, serve):
    client = await serve(chunk_config(tmp_path, size=3))
    got = await client.sse("/chunked", params={"prompt": script(["abcd", "efgh"])})
    assert got.status == 200
    assert [event["token"] for event in got.json() if "token" in event] == ["abc", "def", "gh"]


MISSING_GREETING = "providers.greeter.greeting: expected a value for this required key (a string)"


def greeter_file(tmp_path: Path, greeter_section: str) -> Path:
    """A config file whose plugins directory (relative to it) holds the provider plugin with a
    required option (``tests/plugin_fixtures/required_option_provider.py``)."""
    shutil.copy(FIXTURES / "required_option_provider.py", plugin_dir(tmp_path))
    path = tmp_path / "greeter.toml"
    path.write_text(
        f'[server]\nplugins_dir = "plugins"\n[providers.greeter]\n{greeter_section}',
        encoding="utf-8",
    )
    return path


def test_plugin_option_without_a_default_must_be_configured():
    message = config_error(
        plugins={"modules": ["required_option_provider"]}, providers={"greeter": {"times": 2}}
    )
    assert message == MISSING_GREETING


def test_missing_required_plugin_option_stops_create_app_naming_file_and_key(tmp_path):
    path = greeter_file(tmp_path, "times = 2\n")
    with pytest.raises(ConfigError) as caught:
        streamserver.create_app(path)
    assert str(caught.value) == f"{path}: {MISSING_GREETING}"


async def test_required_plugin_option_when_given_reaches_the_provider(tmp_path, serve):
    client = await serve(greeter_file(tmp_path, 'greeting = "hello there"\ntimes = 2\n'))
    got = await client.sse("/v1/stream", params={"prompt": "hi"})
    assert got.status == 200
    text = "".join(event["content"] for event in got.json() if "content" in event)
    assert text == "hello there hello there"


async def test_a_buffer_with_a_required_option_is_offered_once_configured(serve):
    plugins = {"modules": ["required_option_provider"]}
    route = {"/cut": {"formatter": "simple", "allow": ["buffer", "model"]}}
    unconfigured = await serve(base_config(plugins=plugins, routes=route))
    configured = await serve(
        base_config(plugins=plugins, routes=route, buffers={"needy": {"size": 3}})
    )
    params = {"prompt": "abcdefgh", "model": "echo", "buffer": "needy"}

    refused = await unconfigured.http.get("/cut", params=params)
    got = await configured.sse("/cut", params=params)

    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "unknown_buffer"
    assert [e["token"] for e in got.json() if "token" in e] == ["abc", "def", "gh"]


# --- (i) one registry per config ------------------------------------------------------------


def test_plugins_dir_of_one_config_does_not_leak_into_another(tmp_path):
    folder = plugin_dir(tmp_path, dir_buffer=raw_buffer_plugin("dir-buffer"))
    with_dir = load(folder)
    without_dir = load()
    assert "dir-buffer" in with_dir.buffers
    assert "dir-buffer" not in without_dir.buffers
    assert "dir_buffer" not in without_dir.registry.sources


def test_plugin_registered_by_hand_stays_in_its_own_registry(tmp_path):
    first, second = load(), load()

    class HandPlugin:
        @streamserver.hookimpl
        def register_buffers(self, register):
            from streamserver.builtins.buffers import RawBuffer

            register("by-hand", RawBuffer)

    first.registry.register(HandPlugin(), name="hand")
    assert "by-hand" in first.registry.parts["buffers"]
    assert "by-hand" not in second.registry.parts["buffers"]
