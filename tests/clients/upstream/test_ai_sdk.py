"""The Vercel AI SDK's own client code (``AbstractChat`` with ``DefaultChatTransport``, run by Node:
``../ai_sdk_chat.mjs``) gets exactly what the fake upstream sent, through streamserver's
``POST /v1/stream`` with ``format: "ai-sdk"`` and its ``openai`` or ``anthropic`` provider: the final
UIMessage's parts are the reasoning, the text and one tool part per call with its parsed input;
the request's ``tools`` reach the upstream unchanged."""

from __future__ import annotations

import json
from typing import Any

from conftest import FAST_SIMULATED, ServeFactory, base_config

import streamserver
from streamserver.devtools.fake_upstream import FakeUpstream, Plan

from ..conftest import CALLS, REASONING, TEXT, TOOLS, NodeAISDK
from .conftest import CALLED, CUT, TEXT_ONLY, Chain, anthropic_tools

QUESTION = "Weather in Paris, and look up 1, 2, 3?"


def chat_case(chain: Chain, **body: Any) -> dict[str, Any]:
    """One ``chat.sendMessage``; its text becomes the request's ``prompt``, ``body`` is merged in."""
    return {"api": chain.base_url + "/v1/stream",
            "body": {"model": chain.model, "format": "ai-sdk", **body}, "text": QUESTION}  # fmt: skip


def without_ids(parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The parts without the part ids our formatter chose (``reasoning-1``...)."""
    return [{key: value for key, value in part.items() if key != "id"} for part in parts]


def tool_part(index: int) -> dict[str, Any]:
    call_id, name, arguments = CALLS[index]
    return {"type": f"tool-{name}", "toolCallId": call_id, "state": "input-available",
            "input": json.loads(arguments)}  # fmt: skip


def finished(got: dict[str, Any], reason: str) -> None:
    assert (got["status"], got["error"]) == ("ready", None)
    assert got["finish"] == {"isAbort": False, "isError": False, "isDisconnect": False,
                             "finishReason": reason}  # fmt: skip


async def test_the_final_message_holds_the_reasoning_text_and_calls_the_upstream_sent(
    chain: Chain, ai_sdk: NodeAISDK
) -> None:
    chain.plan_tools()
    # Text on both sides of the calls: its own part after them.
    chain.plan_tools(tokens=[TEXT, "Both asked."], calls_after=1)
    got, split = await ai_sdk.chat(chat_case(chain, tools=TOOLS), chat_case(chain, tools=TOOLS))

    reasoning = {"type": "reasoning", "text": "".join(REASONING), "state": "done"}
    text = {"type": "text", "text": TEXT, "state": "done"}
    finished(got, "tool-calls")
    assert without_ids(got["parts"]) == [
        {"type": "step-start"}, reasoning, text, tool_part(0), tool_part(1),
    ]  # fmt: skip
    finished(split, "tool-calls")
    assert without_ids(split["parts"]) == [
        {"type": "step-start"}, reasoning, text, tool_part(0), tool_part(1),
        {"type": "text", "text": "Both asked.", "state": "done"},
    ]  # fmt: skip
    for body in chain.bodies():
        assert body["messages"] == [{"role": "user", "content": QUESTION}]
        assert body["tools"] == (anthropic_tools(TOOLS) if chain.anthropic else TOOLS)


async def test_a_text_only_answer_is_the_upstreams_text(chain: Chain, ai_sdk: NodeAISDK) -> None:
    chain.plan(tokens=TEXT_ONLY)
    [got] = await ai_sdk.chat(chat_case(chain))

    finished(got, "stop")
    assert without_ids(got["parts"]) == [
        {"type": "step-start"},
        {"type": "text", "text": "".join(TEXT_ONLY), "state": "done"},
    ]


async def test_the_ai_sdk_route_relays_the_upstreams_reasoning_text_and_calls_to_use_chats_transport(
    upstream: tuple[FakeUpstream, str], serve: ServeFactory, ai_sdk: NodeAISDK
) -> None:
    # useChat's own transport against a ``transport = "ai-sdk"`` route whose provider is the
    # ``openai`` provider relaying the fake upstream (not the offline models): the same parts.
    fake, url = upstream
    provider = {"type": "openai", "base_url": url, "api_key_env": "", "model": "fake-model",
                "max_retries": 0, "timeout_s": 5}  # fmt: skip
    config = base_config(providers={"simulated": dict(FAST_SIMULATED), "up": provider},
                         routes={"/api/chat": {"transport": "ai-sdk", "provider": "up"}})  # fmt: skip
    client = await serve(app=streamserver.create_app(config))
    fake.queue(Plan(reasoning=REASONING, tokens=[TEXT], tool_calls=CALLED, arguments_cut=CUT,
                    packed=True, reasoning_field="reasoning_content"))  # fmt: skip
    message = {"id": "u1", "role": "user", "parts": [{"type": "text", "text": QUESTION}]}
    [got] = await ai_sdk.transport(client.base_url + "/api/chat",
                                   {"do": "send", "chatId": "relayed", "messages": [message]})  # fmt: skip

    assert got["error"] is None
    assert without_ids(got["message"]["parts"]) == [
        {"type": "step-start"},
        {"type": "reasoning", "text": "".join(REASONING), "state": "done"},
        {"type": "text", "text": TEXT, "state": "done"},
        tool_part(0),
        tool_part(1),
    ]
    assert got["chunks"][-1] == {"type": "finish", "finishReason": "tool-calls"}
    [body] = [received.body for received in fake.requests]
    assert body["messages"] == [{"role": "user", "content": QUESTION}]
