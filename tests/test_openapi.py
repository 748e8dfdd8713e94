"""``GET /openapi.json`` describes the server, and schemathesis finds no 5xx and no undocumented error.

The server runs as a real process (schemathesis's client is synchronous); examples are bounded.
Schemathesis's coverage phase is in test_openapi_coverage.py, its acceptance check in
test_openapi_acceptance.py, the request parameters in test_openapi_parameters.py.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from openapi_server import CONFORMANCE, SHIPPED, schemathesis, start_server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from start_server(tmp_path_factory.mktemp("openapi"), SHIPPED)


def test_the_spec_lists_every_route_of_the_shipped_config(server):
    with urllib.request.urlopen(f"{server}/openapi.json") as response:
        spec = json.load(response)

    assert spec["openapi"].startswith("3.")
    for path in ("/stream", "/stream/v2", "/stream/safe", "/stream/progress", "/v1/stream",
                 "/v1/chat/completions", "/v1/responses", "/v1/messages", "/v1/models",
                 "/v1/streams/{stream_id}", "/health", "/v1/stream/metrics", "/ws/stream",
                 "/ws/chat/{conversation_id}", "/v1/conversations/{conversation_id}",
                 "/metrics", "/api/chat", "/api/chat/{chat_id}/stream"):  # fmt: skip
        assert path in spec["paths"], path
    assert set(spec["paths"]["/v1/stream"]) == {"get", "post"}


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


@pytest.mark.timeout(300)  # about 60 s alone; the suite's other worker shares the machine
def test_schemathesis_finds_no_server_error_and_no_undocumented_response(server, tmp_path):
    # The coverage phase runs in test_openapi_coverage.py, against a server of its own.
    result = schemathesis(server, tmp_path, CONFORMANCE, "examples,fuzzing")

    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "/api/chat/{chat_id}/stream" in result.stdout  # useChat's three operations were run


def test_a_websocket_route_documents_the_handshake_it_needs(server):
    with urllib.request.urlopen(f"{server}/openapi.json") as response:
        spec = json.load(response)

    for path in ("/ws/stream", "/ws/chat/{conversation_id}"):
        headers = {
            p["name"] for p in spec["paths"][path]["get"]["parameters"] if p["in"] == "header"
        }
        assert {"Upgrade", "Connection", "Sec-WebSocket-Key", "Sec-WebSocket-Version"} <= headers
