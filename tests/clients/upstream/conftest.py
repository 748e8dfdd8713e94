"""Fixtures for the whole chain: the fake upstream (``streamserver.devtools.fake_upstream``, a real
aiohttp server on 127.0.0.1) -> streamserver's ``openai`` provider (``up``, model ``fake-model``) or
``anthropic`` provider (``claude``, model ``claude-fake``) -> streamserver's routes -> the client.

``chain`` runs each test three times: an OpenAI-compatible upstream sending reasoning as
``delta.reasoning_content`` (DeepSeek, vLLM), one sending ``delta.reasoning`` (OpenRouter, Ollama),
and Anthropic's Messages API (a ``thinking`` block). The plan is what the upstream is told to send;
every client must give back exactly that."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

import pytest
from conftest import FAST_SIMULATED, ServeFactory, base_config

import streamserver
from streamserver.devtools.fake_upstream import FakeUpstream, Plan, PlannedCall

from ..conftest import CALLS, REASONING, TEXT, WEATHER_FRAGMENTS

KEY_ENV = "STREAMSERVER_TEST_ANTHROPIC_KEY"
"""The variable the ``claude`` provider reads its key from (the fake accepts any key)."""

CALLED = [PlannedCall(*call) for call in CALLS]
"""The two parallel calls the upstream makes (indexes 0 and 1)."""
CUT = tuple(len("".join(WEATHER_FRAGMENTS[:i])) for i in range(1, len(WEATHER_FRAGMENTS)))
"""Where the arguments are cut: for get_weather inside a string, between a backslash and the quote
it escapes and inside a ``\\u`` escape; the lookup call's arguments at the same places."""
USAGE = (7, 42)
"""The upstream's usage report: (prompt, completion) tokens, unlike anything counted here."""
TEXT_ONLY = ["Bonjour ", "à ", "tous", " — ", "😀", " fin."]
"""A plain text answer (no reasoning, no calls), with characters beyond ASCII."""

Variant = Literal["openai:reasoning_content", "openai:reasoning", "anthropic"]
VARIANTS: tuple[Variant, ...] = ("openai:reasoning_content", "openai:reasoning", "anthropic")


@dataclass
class Chain:
    """streamserver in front of the fake upstream, as one variant of the upstream."""

    base_url: str
    """streamserver's root URL."""
    fake: FakeUpstream
    variant: Variant

    @property
    def model(self) -> str:
        """The model a client asks streamserver for: it picks the provider."""
        return "claude-fake" if self.variant == "anthropic" else "fake-model"

    @property
    def anthropic(self) -> bool:
        return self.variant == "anthropic"

    def plan(self, **fields: Any) -> Plan:
        """Queue the upstream's next answer (reasoning under this variant's field name)."""
        field = "reasoning" if self.variant == "openai:reasoning" else "reasoning_content"
        plan = Plan(reasoning_field=field, **fields)
        self.fake.queue(plan)
        return plan

    def plan_tools(self, **fields: Any) -> Plan:
        """Reasoning, text, then the two parallel calls, cut mid-JSON and packed several events
        per network write, with the upstream's own usage."""
        defaults = {"reasoning": REASONING, "tokens": [TEXT], "tool_calls": CALLED,
                    "arguments_cut": CUT, "packed": True, "usage": USAGE}  # fmt: skip
        return self.plan(**{**defaults, **fields})

    def bodies(self) -> list[dict[str, Any]]:
        """Every request body the upstream received, in order."""
        return [received.body for received in self.fake.requests]


@pytest.fixture(params=VARIANTS)
async def chain(
    request: pytest.FixtureRequest,
    upstream: tuple[FakeUpstream, str],
    serve: ServeFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> Chain:
    """streamserver with an ``openai`` provider and an ``anthropic`` provider, both pointed at one
    fake upstream (no retries: a failure shows at once)."""
    fake, url = upstream
    monkeypatch.setenv(KEY_ENV, "sk-ant-test")
    common = {"max_retries": 0, "timeout_s": 5}
    providers = {
        "simulated": dict(FAST_SIMULATED),
        "up": {"type": "openai", "base_url": url, "api_key_env": "", "model": "fake-model",
               **common},
        "claude": {"type": "anthropic", "base_url": url.removesuffix("/v1"),
                   "api_key_env": KEY_ENV, "model": "claude-fake", **common},
    }  # fmt: skip
    client = await serve(app=streamserver.create_app(base_config(providers=providers)))
    return Chain(client.base_url, fake, request.param)


# --- what the upstream must have received --------------------------------------------------------


def openai_conversation(first_user: str, results: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """The tool-result turn as an OpenAI-compatible upstream must receive it: the user's message,
    the assistant's text and calls exactly as the upstream sent them, one ``tool`` message per call."""
    calls = [
        {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
        for call_id, name, arguments in CALLS
    ]
    return [
        {"role": "user", "content": first_user},
        {"role": "assistant", "content": TEXT, "tool_calls": calls},
        *({"role": "tool", "tool_call_id": call_id, "content": content}
          for call_id, content in results),
    ]  # fmt: skip


def anthropic_conversation(
    first_user: str, results: list[tuple[str, str]], thinking: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """The same turn in Messages API words: the calls as ``tool_use`` blocks (their parsed input),
    the results as ``tool_result`` blocks of one user message; ``thinking``: the signed thinking
    block the reply began with."""
    uses = [
        {"type": "tool_use", "id": call_id, "name": name, "input": json.loads(arguments)}
        for call_id, name, arguments in CALLS
    ]
    return [
        {"role": "user", "content": first_user},
        {"role": "assistant",
         "content": [*([thinking] if thinking else []), {"type": "text", "text": TEXT}, *uses]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": call_id, "content": content}
            for call_id, content in results
        ]},
    ]  # fmt: skip


def anthropic_tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI's function tools as the Messages API takes them."""
    return [
        {"name": f["name"], "description": f["description"], "input_schema": f["parameters"]}
        for f in (tool["function"] for tool in tools)
    ]


def received_conversation(
    chain: Chain,
    first_user: str,
    results: list[tuple[str, str]],
    thinking: dict[str, Any] | None = None,
) -> Any:
    """What this variant's upstream must receive as ``messages`` (``thinking``: the signed
    thinking block an Anthropic upstream gets back)."""
    if chain.anthropic:
        return anthropic_conversation(first_user, results, thinking)
    return openai_conversation(first_user, results)
