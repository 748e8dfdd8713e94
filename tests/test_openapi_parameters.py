"""The request parameters in the OpenAPI document: each one documented where every provider a
route reaches honours it, a pin as its one value, and schemathesis finds each one accepted."""

from __future__ import annotations

import json
import shutil
import urllib.request

import pytest
from openapi_server import REPO, SHIPPED, schemathesis, start_server


@pytest.fixture(scope="module")
def recording_server(tmp_path_factory):
    """The shipped config whose one provider is the recording test provider, which honours
    every request parameter: the document then offers them all, and each is exercised."""
    tmp = tmp_path_factory.mktemp("openapi-recording")
    shutil.copy(REPO / "tests" / "plugin_fixtures" / "recording_provider.py", tmp)
    simulated = SHIPPED[SHIPPED.index("[providers.simulated]") : SHIPPED.index("# Buffers:")]
    yield from start_server(tmp, SHIPPED.replace(simulated, "[providers.recording]\n\n"))


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


@pytest.mark.timeout(300)  # a shared machine: well under it alone
def test_schemathesis_finds_every_documented_request_parameter_accepted(recording_server, tmp_path):
    # The stream routes only (the Messages API's too), with more examples: the parameters and
    # messages are what changed.
    result = schemathesis(
        recording_server, tmp_path, "not_a_server_error,positive_data_acceptance",
        "examples,fuzzing", paths="^/v1/(stream|chat/completions|responses|messages)$", examples=40,
    )  # fmt: skip

    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]


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
