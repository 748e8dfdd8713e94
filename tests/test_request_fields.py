"""The request parameters (tools, ``tool_choice``, ``parallel_tool_calls``, ``response_format``,
sampling) on ``/v1/stream`` and ``/ws/stream``: each forwarded exactly (the recording provider
keeps what it was sent), each refused with a 400 naming it when wrong, a route's ``allow`` and
``pin``, and a provider that cannot honour one refusing the request before it starts."""

from __future__ import annotations

import json
import math

import aiohttp
import pytest
from conftest import FAST_SIMULATED, REPO, base_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_cli import run_cli
from test_config import config_error, write_config
from test_request_messages import RECORDING

import streamserver
from streamserver.errors import StreamRejected
from streamserver.request_input import parse_stream_params
from streamserver.settings import RouteSettings
from streamserver.types import REQUEST_PARAMETERS
from streamserver.web.keys import SERVICE

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city.", "strict": True,
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}  # fmt: skip
EVERY_PARAMETER = {
    "tools": [WEATHER, {"type": "function", "function": {"name": "noop"}}],
    "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
    "parallel_tool_calls": False,
    "response_format": {"type": "json_schema", "json_schema": {
        "name": "answer", "description": "d", "schema": {"type": "object"}, "strict": None}},
    "temperature": 0.2,
    "top_p": 1,
    "stop": ["\n\n", "END"],
    "seed": -42,
    "presence_penalty": -2,
    "frequency_penalty": 1.5,
    "logit_bias": {"50256": -100, "13": 2.5},
    "user": "user-1234",
    "reasoning_effort": "low",
}  # fmt: skip
"""A value for every request parameter, each at or near a bound."""
SAMPLING = {k: v for k, v in EVERY_PARAMETER.items() if k not in
            ("tools", "tool_choice", "parallel_tool_calls", "response_format")}  # fmt: skip


def recording(**sections):
    """The recording provider's config, ``sections`` merged in (``providers`` replaces)."""
    return base_config(**{**RECORDING, **sections})


@pytest.fixture
async def recorded(serve):
    app = streamserver.create_app(recording())
    client = await serve(app=app)
    return client, app[SERVICE].providers["recording"]


async def start(client, **fields):
    """POST /v1/stream; the whole response."""
    response = await client.http.post(
        "/v1/stream", json={"prompt": "hi", "model": "recorder", **fields}
    )
    await response.aread()
    return response


def test_every_request_parameter_is_a_route_override():
    from typing import get_args

    from streamserver.settings import Override

    assert set(REQUEST_PARAMETERS) <= set(get_args(Override))
    assert set(EVERY_PARAMETER) == set(REQUEST_PARAMETERS)


async def test_every_parameter_reaches_the_provider_as_sent(recorded):
    client, provider = recorded

    response = await start(client, **EVERY_PARAMETER)

    assert response.status_code == 200
    request = provider.requests[-1]
    assert request.tools == tuple(EVERY_PARAMETER["tools"])
    assert request.tool_choice == EVERY_PARAMETER["tool_choice"]
    assert request.parallel_tool_calls is False
    assert request.response_format == EVERY_PARAMETER["response_format"]
    assert request.sampling == SAMPLING


async def test_parameters_left_out_or_null_are_not_sent(recorded):
    client, provider = recorded

    response = await start(client, temperature=None, tools=None, stop=None)

    assert response.status_code == 200
    request = provider.requests[-1]
    assert (request.tools, request.tool_choice, request.response_format, request.sampling) == (
        (),
        None,
        None,
        {},
    )


async def test_the_websocket_route_forwards_them_too(recorded):
    client, provider = recorded
    url = client.base_url.replace("http", "ws", 1) + "/ws/stream"
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as socket:
        await socket.send_json({"prompt": "hi", "model": "recorder", "temperature": 0, "stop": "x"})
        while (await socket.receive_json())["type"] != "done":
            pass

    assert provider.requests[-1].sampling == {"temperature": 0, "stop": "x"}


async def test_a_query_string_carries_the_scalar_parameters(recorded):
    client, provider = recorded
    query = ("prompt=hi&model=recorder&temperature=0.5&top_p=1e-1&seed=-7&stop=a&stop=b&user=u"
             "&presence_penalty=-2&frequency_penalty=%2B2&reasoning_effort=high")  # fmt: skip

    response = await client.http.get("/v1/stream?" + query)
    once = await client.http.get("/v1/stream?prompt=hi&model=recorder&stop=END&temperature=")

    assert response.status_code == once.status_code == 200
    assert provider.requests[0].sampling == {
        "temperature": 0.5, "top_p": 0.1, "seed": -7, "stop": ["a", "b"], "user": "u",
        "presence_penalty": -2.0, "frequency_penalty": 2.0, "reasoning_effort": "high"}  # fmt: skip
    assert provider.requests[1].sampling == {"stop": "END"}  # an empty value is no value


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("temperature=warm", "'temperature' must be a number from 0 to 2"),
        ("temperature=nan", "'temperature' must be a number"),
        ("temperature=1_0", "'temperature' must be a number"),
        ("temperature=%D9%A1", "'temperature' must be a number"),  # an Arabic-Indic one
        ("seed=1.5", "'seed' must be an integer"),
        ("seed=99999999999999999999", "'seed' must be an integer"),
        ("stop=a&stop=b&stop=c&stop=d&stop=e", "'stop' must be a string or a list of at most 4"),
        ("tools=%5B%5D", "'tools' is JSON: send it in a POST body"),
        ("logit_bias=%7B%7D", "'logit_bias' is JSON"),
    ],
)
async def test_a_query_value_that_is_not_one_is_a_400_naming_it(recorded, query, says):
    client, provider = recorded

    response = await client.http.get(f"/v1/stream?prompt=hi&model=recorder&{query}")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_field"
    assert says in response.json()["error"]["message"]
    assert provider.requests == []


def tools_with(**function):
    return [{"type": "function", "function": {"name": "f", **function}}]


WRONG = [
    ("tools", {"type": "function"}, "'tools' must be a list"),
    (
        "tools",
        [{"type": "custom", "custom": {"name": "f"}}],
        "'tools[0].type' must be \"function\"",
    ),
    ("tools", [{"type": "function"}], "'tools[0].function' must be given"),
    (
        "tools",
        [{"type": "function", "function": {"name": "f"}, "x": 1}],
        "'tools[0].x' must be left out",
    ),
    ("tools", [{"type": "function", "function": {}}], "'tools[0].function.name' must be given"),
    ("tools", tools_with(name="wéather"), "'tools[0].function.name' must be a name of 1 to 64"),
    ("tools", tools_with(name="f\n"), "'tools[0].function.name' must be a name"),
    ("tools", tools_with(name="a" * 65), "'tools[0].function.name' must be a name"),
    ("tools", tools_with(name="\u202eevil"), "'tools[0].function.name' must be a name"),
    ("tools", tools_with(name="٣"), "'tools[0].function.name' must be a name"),
    ("tools", tools_with(description=7), "'tools[0].function.description' must be a string"),
    ("tools", tools_with(parameters=[]), "'tools[0].function.parameters' must be an object"),
    ("tools", tools_with(strict="yes"), "'tools[0].function.strict' must be true or false"),
    ("tools", tools_with(examples=[]), "'tools[0].function.examples' must be left out"),
    ("tool_choice", "sometimes", "'tool_choice' must be one of none, auto, required"),
    ("tool_choice", {"type": "function"}, "'tool_choice.function' must be given"),
    (
        "tool_choice",
        {"type": "function", "function": {"name": "other"}},
        "'tool_choice.function.name' must be the name of one of 'tools' (f)",
    ),
    (
        "tool_choice",
        {"type": "allowed_tools", "allowed_tools": {}},
        "'tool_choice.type' must be \"function\"",
    ),
    ("parallel_tool_calls", "yes", "'parallel_tool_calls' must be true or false"),
    ("response_format", {"type": "xml"}, "'response_format' must be an object with \"type\""),
    ("response_format", "json_object", "'response_format' must be an object"),
    ("response_format", {"type": "json_schema"}, "'response_format.json_schema' must be given"),
    (
        "response_format",
        {"type": "json_object", "json_schema": {"name": "a"}},
        "'response_format.json_schema' must be left out",
    ),
    (
        "response_format",
        {"type": "json_schema", "json_schema": {"name": "a b"}},
        "'response_format.json_schema.name' must be a name",
    ),
    (
        "response_format",
        {"type": "json_schema", "json_schema": {"name": "a", "schema": True}},
        "'response_format.json_schema.schema' must be an object",
    ),
    ("temperature", 2.01, "'temperature' must be a number from 0 to 2"),
    ("temperature", -0.1, "'temperature' must be a number from 0 to 2"),
    ("temperature", "0.5", "'temperature' must be a number"),
    ("temperature", True, "'temperature' must be a number"),
    ("top_p", 1.5, "'top_p' must be a number from 0 to 1"),
    ("presence_penalty", -3, "'presence_penalty' must be a number from -2 to 2"),
    ("frequency_penalty", [1], "'frequency_penalty' must be a number from -2 to 2"),
    ("stop", ["a", "b", "c", "d", "e"], "'stop' must be a string or a list of at most 4 strings"),
    ("stop", [1], "'stop[0]' must be a string"),
    ("stop", {"a": 1}, "'stop' must be a string or a list"),
    ("seed", 1.5, "'seed' must be an integer that fits in 64 bits"),
    ("seed", 2**63, "'seed' must be an integer that fits in 64 bits"),
    ("seed", False, "'seed' must be an integer"),
    ("logit_bias", [1], "'logit_bias' must be an object of token ids"),
    ("logit_bias", {"hello": 1}, "'logit_bias (a key)' must be a token id"),
    ("logit_bias", {"٣": 1}, "'logit_bias (a key)' must be a token id"),
    ("logit_bias", {"1": 101}, "'logit_bias.1' must be a number from -100 to 100"),
    ("user", 5, "'user' must be a string"),
    (
        "reasoning_effort",
        "extreme",
        "'reasoning_effort' must be one of none, minimal, low, medium, high, xhigh, max",
    ),
]


@pytest.mark.parametrize(("name", "value", "says"), WRONG)
async def test_a_wrong_parameter_is_a_400_invalid_field_naming_it(recorded, name, value, says):
    client, provider = recorded
    fields = {name: value}
    if name in ("tool_choice", "parallel_tool_calls"):
        fields["tools"] = tools_with()

    response = await start(client, **fields)

    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": "invalid_field",
        "message": response.json()["error"]["message"],
    }
    assert says in response.json()["error"]["message"]
    assert provider.requests == []


@pytest.mark.parametrize("name", ["tool_choice", "parallel_tool_calls"])
@pytest.mark.parametrize("tools", [None, []])
async def test_tool_choice_and_parallel_tool_calls_need_tools(recorded, name, tools):
    client, _ = recorded

    response = await start(client, **{name: "auto" if name == "tool_choice" else True}, tools=tools)

    assert response.status_code == 400
    assert (
        f"{name!r} must be sent together with a non-empty 'tools'"
        in response.json()["error"]["message"]
    )


async def test_json_nan_and_infinity_are_not_numbers(recorded):
    client, _ = recorded
    for body in ('{"prompt": "x", "model": "recorder", "temperature": NaN}',
                 '{"prompt": "x", "model": "recorder", "logit_bias": {"1": -Infinity}}'):  # fmt: skip
        response = await client.http.post(
            "/v1/stream", content=body, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 400, body
        assert response.json()["error"]["code"] == "invalid_field"


async def test_a_tool_schema_nested_absurdly_deep_is_a_400_not_a_crash(recorded):
    client, _ = recorded
    deep: object = {"type": "string"}
    for _ in range(300):  # 600 levels: under the JSON decoder's own limit
        deep = {"type": "object", "properties": {"x": deep}}

    response = await start(client, tools=tools_with(parameters=deep))

    assert response.status_code == 400
    assert "nested at most 32 levels" in response.json()["error"]["message"]


async def test_half_an_emoji_in_a_parameter_is_a_400_invalid_text(recorded):
    client, _ = recorded
    body = json.dumps(
        {"prompt": "x", "model": "recorder", "tools": tools_with(description="\ud83d")}
    )

    response = await client.http.post(
        "/v1/stream", content=body, headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_text"
    assert "tools[0].function.description" in response.json()["error"]["message"]


CONFIG = streamserver.load_config(base_config())
OPEN_ROUTE = RouteSettings(allow=REQUEST_PARAMETERS)  # type: ignore[arg-type]
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(name=st.sampled_from(REQUEST_PARAMETERS), value=JSON, tools=st.none() | JSON)
def test_any_json_value_of_any_parameter_is_accepted_or_a_400(name, value, tools):
    try:
        parse_stream_params({"prompt": "x", name: value, "tools": tools}, OPEN_ROUTE, CONFIG)
    except StreamRejected as exc:
        assert exc.status == 400 and exc.code in ("invalid_field", "invalid_text"), exc.code


# --- what a route allows, pins, and what its provider honours -----------------------------------


async def test_a_parameter_the_route_does_not_allow_is_override_not_allowed(serve):
    client = await serve(
        recording(routes={"/v1/stream": {"methods": ["POST"], "allow": ["model", "temperature"]}})
    )

    allowed = await start(client, temperature=1)
    refused = await start(client, top_p=1)

    assert allowed.status_code == 200
    assert refused.status_code == 400
    assert refused.json()["error"] == {
        "code": "override_not_allowed",
        "message": "this route does not accept 'top_p'",
    }


PINNED = {"/v1/stream": {"methods": ["POST"], "allow": ["model", "tools"], "provider": "recording",
                         "pin": {"temperature": 0.2, "stop": ["END"], "parallel_tool_calls": False}}}  # fmt: skip


async def test_a_pinned_value_is_always_sent_and_another_value_refused(serve):
    app = streamserver.create_app(recording(routes=PINNED))
    client = await serve(app=app)
    provider = app[SERVICE].providers["recording"]

    unset = await start(client)
    same = await start(client, temperature=0.2, stop=["END"], tools=tools_with())
    other = await start(client, temperature=0.3)

    assert unset.status_code == same.status_code == 200
    assert provider.requests[0].sampling == {"temperature": 0.2, "stop": ["END"]}
    assert provider.requests[0].parallel_tool_calls is None  # it means nothing without tools
    assert provider.requests[1].parallel_tool_calls is False
    assert other.status_code == 400
    assert other.json()["error"] == {
        "code": "parameter_pinned",
        "message": "this route pins 'temperature' to 0.2",
    }
    assert len(provider.requests) == 2


async def test_a_parameter_the_provider_cannot_honour_is_refused_never_dropped(serve):
    providers = {
        "simulated": dict(FAST_SIMULATED),
        "recording": {"parameters": ["temperature", "tools"]},
    }
    app = streamserver.create_app(recording(providers=providers))
    client = await serve(app=app)

    honoured = await start(client, temperature=1, tools=tools_with())
    refused = await start(client, temperature=1, logit_bias={"1": 1})
    body = {"prompt": "x", "model": "echo", "top_p": 0.5}
    by_the_simulated = await client.http.post("/v1/stream", json=body)

    assert honoured.status_code == 200
    assert refused.status_code == by_the_simulated.status_code == 400
    assert refused.json()["error"] == {
        "code": "unsupported_parameter",
        "message": "the provider 'recording' cannot honour 'logit_bias' (it honours: temperature, tools)",
    }
    assert by_the_simulated.json()["error"]["code"] == "unsupported_parameter"
    assert len(app[SERVICE].providers["recording"].requests) == 1


# --- pins in the config file --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pin", "key", "expected"),
    [
        (
            "temperature = 3",
            'routes."/v1/stream".pin.temperature',
            "expected a number from 0 to 2, got 3",
        ),
        (
            'temperature = "hot"',
            'routes."/v1/stream".pin.temperature',
            "expected a number from 0 to 2",
        ),
        ("warmth = 1", 'routes."/v1/stream".pin.warmth', "expected a request parameter (choices: "),
        ("stop = [1]", 'routes."/v1/stream".pin.stop[0]', "expected a string"),
        ("seed = 1979-05-27", 'routes."/v1/stream".pin.seed', "expected an integer"),
        (
            'tool_choice = "maybe"',
            'routes."/v1/stream".pin.tool_choice',
            "expected one of none, auto, required",
        ),
        (
            '[[routes."/v1/stream".pin.tools]]\ntype = "function"\nfunction = {name = "bad name"}',
            'routes."/v1/stream".pin.tools[0].function.name',
            "expected a name of 1 to 64 characters",
        ),
        (
            'tool_choice = {type = "function", function = {name = "g"}}\n[[routes."/v1/stream".pin.tools]]\n'
            'type = "function"\nfunction = {name = "f"}',
            'routes."/v1/stream".pin.tool_choice.function.name',
            "expected the name of one of 'tools' (f)",
        ),
    ],
)
def test_a_bad_pin_is_a_config_error_naming_the_file_the_key_and_what_was_expected(
    tmp_path, pin, key, expected
):
    path = write_config(
        tmp_path, f'[routes."/v1/stream"]\nallow = ["model"]\n[routes."/v1/stream".pin]\n{pin}\n'
    )

    message = config_error(path)

    assert message.startswith(f"{path}: {key}: ")
    assert expected in message


def test_pins_are_loaded_checked_and_kept(tmp_path):
    path = write_config(
        tmp_path,
        '[routes."/v1/stream"]\n[routes."/v1/stream".pin]\ntemperature = 0.2\nseed = 7.0\n',
    )

    assert streamserver.load_config(path).routes["/v1/stream"].pin == {
        "temperature": 0.2,
        "seed": 7,
    }


def test_check_config_refuses_a_pin_the_routes_provider_cannot_honour_with_exit_2(tmp_path):
    path = write_config(
        tmp_path, '[routes."/v1/stream"]\n[routes."/v1/stream".pin]\nlogit_bias = {"1" = 5}\n'
    )

    result = run_cli("check-config", str(path), cwd=tmp_path)

    assert result.returncode == 2, result.stdout
    assert result.stderr.strip() == (
        f'streamserver: config error: {path}: routes."/v1/stream".pin.logit_bias: '
        "expected a parameter that provider 'simulated' honours" + _choices()
    )


def _choices() -> str:
    """What the simulated provider honours, as the error lists it (none: no choices shown)."""
    from streamserver.builtins.simulated import SimulatedProvider

    honoured = sorted(getattr(SimulatedProvider, "parameters", ()))
    return f" (choices: {', '.join(honoured)})" if honoured else ""


def test_the_shipped_config_lets_v1_stream_and_ws_stream_set_every_parameter():
    config = streamserver.load_config(REPO / "config.toml")

    for path in ("/v1/stream", "/ws/stream", "/v1/chat/completions"):
        assert set(REQUEST_PARAMETERS) <= set(config.routes[path].allow), path
    assert config.routes["/v1/chat/completions"].allow == streamserver.load_config(base_config()).routes[
        "/v1/chat/completions"].allow  # fmt: skip


def test_an_openai_route_must_allow_the_model(tmp_path):
    path = write_config(
        tmp_path, '[routes."/v1/chat/completions"]\ntransport = "openai"\nallow = ["temperature"]\n'
    )

    assert 'routes."/v1/chat/completions".allow: expected a list with "model"' in config_error(path)


def test_numbers_are_finite_in_every_check():
    # math.inf passes "<=" comparisons with nothing; NaN fails them all: both refused by name.
    config = streamserver.load_config(base_config())
    route = RouteSettings(allow=("temperature", "logit_bias"))
    for fields in ({"temperature": math.nan}, {"logit_bias": {"1": math.inf}}):
        with pytest.raises(StreamRejected) as caught:
            parse_stream_params({"prompt": "x", **fields}, route, config)
        assert caught.value.code == "invalid_field"
