"""``load_config``: a valid file becomes typed settings; every mistake is refused with a message that
names the file, the dotted key, what was expected and, for names, the choices."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from conftest import REPO, base_config

import streamserver
from streamserver import ConfigError

CONTRACT_ROUTES = ("/stream", "/stream/v2", "/stream/safe", "/stream/progress", "/v1/stream")


def write_config(tmp_path: Path, text: str, name: str = "config.toml") -> Path:
    """A TOML config file in ``tmp_path`` whose plugins directory is an empty folder."""
    empty = tmp_path / "empty-plugins"
    empty.mkdir(exist_ok=True)
    path = tmp_path / name
    path.write_text(f'[server]\nplugins_dir = "{empty}"\n' + text, encoding="utf-8")
    return path


def config_error(source: object) -> str:
    """The message of the ConfigError that loading ``source`` raises."""
    with pytest.raises(ConfigError) as caught:
        streamserver.load_config(source)  # type: ignore[arg-type]
    return str(caught.value)


# --- mistakes in the core's own sections -------------------------------------------------------


MISTAKES = [
    pytest.param(
        "[serve]\nport = 1\n",
        ["serve:", "a known section"],
        ["server", "plugins", "providers", "buffers", "formatters", "metrics", "routes"],
        id="unknown_top_level_section_names_file_section_and_choices",
    ),
    pytest.param(
        "prot = 8000\n",
        ["server.prot", "a known key"],
        ["port"],
        id="unknown_key_in_server_names_dotted_key_and_known_keys",
    ),
    pytest.param(
        'port = "80"\n',
        ["server.port", "an integer", "'80'"],
        [],
        id="string_where_integer_expected_is_refused",
    ),
    pytest.param(
        "port = true\n",
        ["server.port: expected an integer, got True"],
        [],
        id="boolean_where_integer_expected_is_refused",
    ),
    pytest.param(
        '[routes."/stream"]\ntransport = "carrier-pigeon"\n',
        [
            'routes."/stream".transport',
            "'carrier-pigeon'",
            "(choices: ai-sdk, anthropic, openai, responses, sse, ws)",
        ],
        [],
        id="literal_value_out_of_range_lists_the_choices",
    ),
    pytest.param(
        '[routes."/api/chat"]\ntransport = "ai-sdk"\nformatter = "events"\n',
        [
            'routes."/api/chat"',
            'formatter = "ai-sdk" and methods = ["POST"] for a transport = "ai-sdk" route',
        ],
        [],
        id="an_ai_sdk_route_speaks_only_the_ui_message_stream",
    ),
    pytest.param(
        '[routes."/v1/answers"]\ntransport = "responses"\nformatter = "openai"\n',
        [
            'routes."/v1/answers"',
            'formatter = "responses" and methods = ["POST"] for a transport = "responses" route',
        ],
        [],
        id="a_responses_route_keeps_the_responses_formatter",
    ),
    pytest.param(
        '[routes."stream"]\nformatter = "simple"\n',
        ["routes.stream", "a path starting with /"],
        [],
        id="route_path_without_leading_slash_is_refused",
    ),
    pytest.param(
        '[routes."/stream"]\nformatter = "fancy"\n',
        ['routes."/stream".formatter', "a configured formatter", "'fancy'"],
        ["simple", "events", "progress", "production"],
        id="unknown_formatter_in_route_lists_the_formatters",
    ),
    pytest.param(
        '[routes."/stream"]\nbuffer = "paragraph"\n',
        ['routes."/stream".buffer', "'paragraph'", "(choices: delimiter, raw, sentence, word)"],
        [],
        id="unknown_buffer_in_route_lists_the_buffers",
    ),
    pytest.param(
        '[providers.simulated]\n[routes."/stream"]\nprovider = "gpt"\n',
        ['routes."/stream".provider', "'gpt'", "(choices: simulated)"],
        [],
        id="unknown_provider_in_route_lists_the_configured_providers",
    ),
    pytest.param(
        '[providers.x]\ntype = "nope"\n',
        ["providers.x.type", "'nope'"],
        ["simulated", "openai"],
        id="unknown_provider_type_lists_the_registered_types",
    ),
    pytest.param(
        '[providers.x]\ntype = ["simulated"]\n',
        ["providers.x.type"],
        [],
        id="non_string_provider_type_is_a_config_error",
    ),
    pytest.param(
        "[providers.simulated]\nbogus = 1\n",
        ["providers.simulated.bogus", "a known key"],
        ["ttft_ms", "tokens_per_second"],
        id="unknown_option_in_plugin_section_lists_its_options",
    ),
    pytest.param(
        '[providers.simulated]\nttft_ms = "fast"\n',
        ["providers.simulated.ttft_ms: expected a number, got 'fast'"],
        [],
        id="wrong_type_in_plugin_option_is_refused",
    ),
    pytest.param(
        '[metrics]\nsinks = ["memory", "statsd"]\n',
        ["metrics.sinks[1]", "'statsd'"],
        ["memory"],
        id="unknown_metrics_sink_lists_the_sinks",
    ),
]
"""A mistake in a file, what its message must say, and the choices it must offer."""


@pytest.mark.parametrize(("toml", "says", "offers"), MISTAKES)
def test_a_mistake_is_refused_naming_the_file_the_key_and_the_choices(tmp_path, toml, says, offers):
    path = write_config(tmp_path, toml)
    message = config_error(path)
    assert str(path) in message
    for fragment in says:
        assert fragment in message
    for choice in offers:
        assert choice in message.split("choices:")[1]


def test_invalid_toml_names_the_file(tmp_path):
    path = write_config(tmp_path, "port = = 8000\n")
    message = config_error(path)
    assert message.startswith(f"{path}: ")
    assert "valid TOML" in message


def test_missing_file_is_a_config_error_naming_it(tmp_path):
    path = tmp_path / "nowhere.toml"
    message = config_error(path)
    assert str(path) in message
    assert "an existing config file" in message


def test_config_path_that_is_a_directory_is_a_config_error_naming_it(tmp_path):
    folder = tmp_path / "config.toml"
    folder.mkdir()
    message = config_error(folder)
    assert str(folder) in message


def test_config_file_that_is_not_utf8_is_a_config_error_naming_it(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes('[server]\nhost = "caf\xe9"\n'.encode("latin-1"))
    message = config_error(path)
    assert str(path) in message


# --- names of parts ------------------------------------------------------------------------------


def test_dict_config_error_has_no_file_but_names_the_key():
    message = config_error(base_config(limits={"max_tokens": 1.5}))
    assert message == "limits.max_tokens: expected an integer, got 1.5"


# --- what a valid configuration becomes ----------------------------------------------------------


@pytest.fixture(scope="module")
def shipped():
    return streamserver.load_config(REPO / "config.toml")


def test_shipped_config_has_the_contract_routes(shipped):
    for path in CONTRACT_ROUTES:
        assert path in shipped.routes
        assert shipped.routes[path].transport == "sse"


def test_shipped_config_serves_v1_stream_on_get_and_post(shipped):
    assert set(shipped.routes["/v1/stream"].methods) == {"GET", "POST"}


def test_every_shipped_route_allows_model(shipped):
    without_model = [path for path, route in shipped.routes.items() if "model" not in route.allow]
    # the openai route takes its model from the OpenAI request body, not from an override
    assert [p for p in without_model if shipped.routes[p].transport != "openai"] == []


def test_shipped_config_remembers_its_file(shipped):
    assert shipped.file == str(REPO / "config.toml")


def test_provider_instance_can_have_its_own_name_and_an_explicit_type(tmp_path):
    path = write_config(
        tmp_path,
        '[providers.fast]\ntype = "simulated"\nttft_ms = 0\n'
        '[routes."/stream"]\nformatter = "simple"\nprovider = "fast"\n',
    )
    config = streamserver.load_config(path)
    assert list(config.providers) == ["fast"]
    assert config.providers["fast"].registration.name == "simulated"
    assert config.providers["fast"].options.ttft_ms == 0.0
    assert config.routes["/stream"].provider == "fast"


def test_buffer_timing_keys_land_in_part_timing(tmp_path):
    path = write_config(
        tmp_path, "[buffers.word]\nmax_delay_ms = 40\nmax_chars = 12\nmin_words = 3\n"
    )
    word = streamserver.load_config(path).buffers["word"]
    assert word.timing.max_delay_ms == 40.0
    assert word.timing.max_chars == 12
    assert word.options.min_words == 3


def test_unconfigured_buffer_gets_default_timing(tmp_path):
    config = streamserver.load_config(write_config(tmp_path, ""))
    assert config.buffers["sentence"].timing == streamserver.config.BufferTiming()


def test_relative_plugins_dir_is_resolved_against_the_config_files_folder(tmp_path, monkeypatch):
    project = tmp_path / "project"
    (project / "my-plugins").mkdir(parents=True)
    (project / "my-plugins" / "shout_buffer.py").write_text(
        "from streamserver import hookimpl\n"
        "from streamserver.builtins.buffers import RawBuffer\n"
        "@hookimpl\n"
        "def register_buffers(register):\n"
        '    register("relative-dir-buffer", RawBuffer)\n',
        encoding="utf-8",
    )
    path = project / "config.toml"
    path.write_text('[server]\nplugins_dir = "my-plugins"\n', encoding="utf-8")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    config = streamserver.load_config(path)

    assert "relative-dir-buffer" in config.buffers
    assert config.registry.sources["shout_buffer"].origin == str(
        project.resolve() / "my-plugins" / "shout_buffer.py"
    )


# --- bounds on numbers, and checks that need more than one key --------------------------------


def test_a_negative_plugin_option_is_refused_with_the_file_key_and_bound(tmp_path):
    path = write_config(tmp_path, "[providers.simulated]\nttft_ms = -5\n")

    assert config_error(path) == (
        f"{path}: providers.simulated.ttft_ms: expected a number at least 0, got -5"
    )


def test_a_zero_size_limit_is_refused(tmp_path):
    path = write_config(tmp_path, "[limits]\nmax_body_bytes = 0\n")

    assert config_error(path) == (
        f"{path}: limits.max_body_bytes: expected an integer at least 1, got 0"
    )


def test_a_negative_buffer_timer_is_refused(tmp_path):
    path = write_config(tmp_path, "[buffers.sentence]\nmax_delay_ms = -250\n")

    assert config_error(path) == (
        f"{path}: buffers.sentence.max_delay_ms: expected a number at least 0, got -250"
    )


def test_zero_keeps_its_meaning_where_it_has_one():
    config = streamserver.load_config(
        base_config(providers={"simulated": {"ttft_ms": 0, "tokens_per_second": 0}})
    )

    assert config.providers["simulated"].options.tokens_per_second == 0.0


def test_a_public_host_without_an_auth_choice_is_refused_by_validation(tmp_path):
    path = write_config(tmp_path, 'host = "0.0.0.0"\n')

    message = config_error(path)

    assert message.startswith(f"{path}: auth.mode: expected a choice before listening on ")
    assert "server.host = 0.0.0.0" in message


def test_a_public_host_with_auth_mode_none_is_accepted(tmp_path):
    path = write_config(tmp_path, 'host = "0.0.0.0"\n[auth]\nmode = "none"\n')

    assert streamserver.load_config(path).server.host == "0.0.0.0"


def test_overrides_are_validated_as_if_the_file_held_them(tmp_path):
    path = write_config(tmp_path, "")

    with pytest.raises(ConfigError) as caught:
        streamserver.load_config(path, overrides={"server": {"port": 70000}})

    assert str(caught.value) == (
        f"{path}: server.port: expected an integer from 0 to 65535, got 70000"
    )


def test_a_plugins_dir_that_does_not_exist_is_warned_about(tmp_path, caplog):
    path = tmp_path / "config.toml"
    path.write_text('[server]\nplugins_dir = "plugns"\n', encoding="utf-8")

    with caplog.at_level(logging.WARNING, logger="streamserver.config"):
        streamserver.load_config(path)

    assert f"{path}: server.plugins_dir: {tmp_path / 'plugns'} is not a folder" in caplog.text


def test_the_default_plugins_dir_may_be_absent_without_a_warning(tmp_path, caplog):
    path = write_config(tmp_path, "").with_name("plain.toml")
    path.write_text("[limits]\nmax_tokens = 100\n", encoding="utf-8")

    with caplog.at_level(logging.WARNING, logger="streamserver.config"):
        streamserver.load_config(path)

    assert "plugins_dir" not in caplog.text


def test_the_shipped_config_shows_every_section_and_every_core_key():
    from dataclasses import fields

    from streamserver.config import _ALL_SECTIONS, _SECTIONS
    from streamserver.settings import BufferTiming

    text = (REPO / "config.toml").read_text(encoding="utf-8")
    shown = {line.lstrip("# ").split(" =")[0] for line in text.splitlines() if " = " in line}
    sections = {line.lstrip("# [").split("]")[0].split(".")[0] for line in text.splitlines()
                if line.lstrip("# ").startswith("[")}  # fmt: skip

    assert sections >= _ALL_SECTIONS
    for cls in [*_SECTIONS.values(), BufferTiming]:
        assert {f.name for f in fields(cls)} <= shown, cls.__name__
    assert "[metrics.memory]" in text and "[formatters.openai]" in text


def test_log_format_is_text_or_json(tmp_path):
    accepted = streamserver.load_config(write_config(tmp_path, 'log_format = "json"\n'))
    message = config_error(write_config(tmp_path, 'log_format = "xml"\n', name="bad.toml"))

    assert accepted.server.log_format == "json"
    assert "server.log_format" in message and "(choices: json, text)" in message
