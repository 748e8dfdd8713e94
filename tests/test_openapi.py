"""``GET /openapi.json`` describes the server, and schemathesis finds no 5xx and no undocumented error.

The server runs as a real process (schemathesis's client is synchronous); examples are bounded.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


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


SHIPPED = (REPO / "config.toml").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from start_server(tmp_path_factory.mktemp("openapi"), SHIPPED)


@pytest.fixture(scope="module")
def recording_server(tmp_path_factory):
    """The shipped config whose one provider is the recording test provider, which honours
    every request parameter: the document then offers them all, and each is exercised."""
    tmp = tmp_path_factory.mktemp("openapi-recording")
    shutil.copy(REPO / "tests" / "plugin_fixtures" / "recording_provider.py", tmp)
    simulated = SHIPPED[SHIPPED.index("[providers.simulated]") : SHIPPED.index("# Buffers:")]
    yield from start_server(tmp, SHIPPED.replace(simulated, "[providers.recording]\n\n"))


def test_the_spec_lists_every_route_of_the_shipped_config(server):
    with urllib.request.urlopen(f"{server}/openapi.json") as response:
        spec = json.load(response)

    assert spec["openapi"].startswith("3.")
    for path in ("/stream", "/stream/v2", "/stream/safe", "/stream/progress", "/v1/stream",
                 "/v1/chat/completions", "/v1/responses", "/v1/messages", "/v1/models",
                 "/v1/streams/{stream_id}", "/health", "/v1/stream/metrics", "/ws/stream",
                 "/ws/chat/{conversation_id}", "/v1/conversations/{conversation_id}",
                 "/metrics"):  # fmt: skip
        assert path in spec["paths"], path
    assert set(spec["paths"]["/v1/stream"]) == {"get", "post"}


def schemathesis(
    server: str, cwd: Path, checks: str, phases: str, *, paths: str = "", examples: int = 15
) -> subprocess.CompletedProcess:
    """The schemathesis CLI (its pytest plugin does not support this pytest) over every HTTP
    operation (or those whose path matches ``paths``): bounded examples per operation,
    deterministic. The WebSocket routes are left out: a request valid by the document is a
    handshake, and what follows is not HTTP."""
    only = ["--include-path-regex", paths] if paths else []
    return subprocess.run(
        [str(Path(sys.executable).with_name("schemathesis")), "run", f"{server}/openapi.json",
         "--checks", checks, "--phases", phases, "--exclude-path-regex", "^/ws/", *only,
         "--max-examples", str(examples), "--generation-deterministic", "--request-timeout", "10",
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


AI_SDK_ROUTE = '\n[routes."/api/chat"]\ntransport = "ai-sdk"\n'


@pytest.fixture(scope="module")
def ai_sdk_server(tmp_path_factory):
    """The shipped config with an ``ai-sdk`` route at ``/api/chat``."""
    yield from start_server(tmp_path_factory.mktemp("openapi-ai-sdk"), SHIPPED + AI_SDK_ROUTE)


def test_schemathesis_finds_no_server_error_on_an_ai_sdk_route(ai_sdk_server, tmp_path):
    checks = "not_a_server_error,status_code_conformance,content_type_conformance"
    result = schemathesis(ai_sdk_server, tmp_path, checks, "examples,coverage,fuzzing",
                          paths="^/api/chat")  # fmt: skip

    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "/api/chat/{chat_id}/stream" in result.stdout  # its three operations were run


def test_a_websocket_route_documents_the_handshake_it_needs(server):
    with urllib.request.urlopen(f"{server}/openapi.json") as response:
        spec = json.load(response)

    for path in ("/ws/stream", "/ws/chat/{conversation_id}"):
        headers = {
            p["name"] for p in spec["paths"][path]["get"]["parameters"] if p["in"] == "header"
        }
        assert {"Upgrade", "Connection", "Sec-WebSocket-Key", "Sec-WebSocket-Version"} <= headers


def test_every_request_parameter_is_documented_where_the_providers_honour_it(recording_server):
    with urllib.request.urlopen(f"{recording_server}/openapi.json") as response:
        spec = json.load(response)

    from streamserver.types import REQUEST_PARAMETERS

    post = spec["paths"]["/v1/stream"]["post"]["requestBody"]["content"]["application/json"]
    completion = spec["paths"]["/v1/chat/completions"]["post"]["requestBody"]["content"]
    query = {p["name"] for p in spec["paths"]["/v1/stream"]["get"]["parameters"]}
    for properties in (
        post["schema"]["properties"],
        completion["application/json"]["schema"]["properties"],
    ):
        assert set(REQUEST_PARAMETERS) <= set(properties)
    assert {"temperature", "top_p", "stop", "seed", "user", "reasoning_effort"} <= query
    assert "tools" not in query
    responses = spec["paths"]["/v1/responses"]["post"]["requestBody"]["content"]
    offered = responses["application/json"]["schema"]["properties"]
    assert {"input", "instructions", "tools", "tool_choice", "parallel_tool_calls",
            "max_output_tokens", "temperature", "top_p", "user", "text", "reasoning"} <= set(offered)  # fmt: skip
    formats = offered["text"]["anyOf"][0]["properties"]["format"]["anyOf"][0]["anyOf"]
    assert [f["properties"]["type"] for f in formats] == [
        {"enum": ["text", "json_object"]}, {"const": "json_schema"}
    ]  # fmt: skip


def test_schemathesis_finds_every_documented_request_parameter_accepted(recording_server, tmp_path):
    # The stream routes only (the Messages API's too), with more examples: the parameters and
    # messages are what changed.
    result = schemathesis(
        recording_server, tmp_path, "not_a_server_error,positive_data_acceptance",
        "examples,fuzzing", paths="^/v1/(stream|chat/completions|responses|messages)$", examples=40,
    )  # fmt: skip

    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]


@pytest.mark.parametrize("path", ["/v1/stream", "/v1/chat/completions", "/v1/responses"])
def test_a_forced_call_is_documented_only_for_a_model_that_calls_tools(server, path):
    # Provider.tool_models: the simulated models but sim-tools call none, so a forced call on
    # them is a 400 invalid_tool_choice, and the document must not offer it (schemathesis found
    # tool_choice "required" with sim-reasoner, valid by the document and refused).
    import jsonschema

    with urllib.request.urlopen(f"{server}/openapi.json") as response:
        spec = json.load(response)
    body_schema = spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]
    validator = jsonschema.Draft202012Validator(
        {**body_schema["schema"], "components": spec["components"]}
    )
    function = {"name": "f", "parameters": {"type": "object"}}
    tools = [{"type": "function", "function": function}]
    asked = {"messages": [{"role": "user", "content": "hi"}], "tools": tools}
    if path == "/v1/responses":  # its own words: input, and flat tools
        asked = {"input": "hi", "tools": [{"type": "function", **function}]}

    def post(model: str, choice: str) -> tuple[bool, int, str]:
        body = {"model": model, **asked, "tool_choice": choice}
        request = urllib.request.Request(
            server + path, json.dumps(body).encode(), {"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                response.read()
                status, code = response.status, ""
        except urllib.error.HTTPError as refused:
            status, code = refused.code, json.load(refused)["error"]["code"]
        return validator.is_valid(body), status, code

    assert post("sim-reasoner", "required") == (False, 400, "invalid_tool_choice")
    assert post("simulated", "required") == (False, 400, "invalid_tool_choice")
    assert post("sim-reasoner", "auto") == (True, 200, "")
    assert post("sim-tools", "required") == (True, 200, "")


def test_a_route_documents_its_pins_and_only_what_all_its_providers_honour():
    from conftest import base_config

    import streamserver
    from streamserver.web.openapi import build_spec

    route = {"methods": ["POST"], "allow": ["model", "temperature", "top_p", "tools", "tool_choice"],
             "pin": {"seed": 3}}  # fmt: skip
    config = streamserver.load_config(base_config(
        plugins={"modules": ["recording_provider"]}, routes={"/v1/stream": route},
        providers={"a": {"type": "recording", "models": ["m1"]}, "b": {"type": "recording", "models": ["m2"]}},
    ))  # fmt: skip
    honoured = {"a": ["temperature", "seed", "tools", "tool_choice"], "b": ["temperature", "seed"]}

    operation = build_spec(config, {"a": ["m1"], "b": ["m2"]}, (), honoured)["paths"]["/v1/stream"][
        "post"
    ]
    body = operation["requestBody"]["content"]["application/json"]["schema"]

    assert set(body["properties"]) == {"prompt", "messages", "model", "temperature", "seed"}
    assert body["properties"]["seed"] == {"anyOf": [{"const": 3}, {"type": "null"}]}
    assert "tools (a); tool_choice (a)" in operation["description"]
    assert (
        "no provider here honours them (400 unsupported_parameter): top_p"
        in operation["description"]
    )
    assert "dependentRequired" not in body  # tool_choice is not offered

    without_b = build_spec(
        config, {"a": ["m1"], "b": ["m2"]}, (), {**honoured, "b": ["temperature"]}
    )
    model = without_b["paths"]["/v1/stream"]["post"]["requestBody"]["content"]["application/json"]
    assert model["schema"]["properties"]["model"] == {"enum": ["m1"]}  # b cannot honour the pin
    assert set(model["schema"]["properties"]) >= {"tools", "tool_choice"}
    assert model["schema"]["dependentRequired"] == {"tool_choice": ["tools"]}
