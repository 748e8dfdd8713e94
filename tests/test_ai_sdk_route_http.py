"""The ``ai-sdk`` route as HTTP: its headers, its refusals before a stream, and whose chats a
caller reaches (the AI SDK's own client runs against it in ``tests/clients/test_ai_sdk_route.py``)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from conftest import SCRIPTED, Client, ServeFactory, base_config, script

KEYS = "alice:sk-alice-0123456789,bob:sk-bob-9876543210"
ALICE = {"Authorization": "Bearer sk-alice-0123456789"}
BOB = {"Authorization": "Bearer sk-bob-9876543210"}


def chat(chat_id: str, deltas: list[str], **options: Any) -> dict[str, Any]:
    """useChat's body for one user message, the scripted provider's script."""
    message = {
        "id": "u1",
        "role": "user",
        "parts": [{"type": "text", "text": script(deltas, **options)}],
    }
    return {"id": chat_id, "messages": [message], "trigger": "submit-message", "messageId": None}


def ai_sdk_config(**sections: Any) -> dict[str, Any]:
    return base_config(
        resume={"grace_s": 5},
        routes={"/api/chat": {"transport": "ai-sdk", "provider": "scripted"}},
        **SCRIPTED,
        **sections,
    )


async def test_the_answer_is_the_ui_message_stream_with_its_header(serve: ServeFactory) -> None:
    client = await serve(ai_sdk_config())
    response = await client.http.post("/api/chat", json=chat("c1", ["Hi"]))

    assert response.headers["x-vercel-ai-ui-message-stream"] == "v1"
    assert response.headers["content-type"].startswith("text/event-stream")
    data = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    assert [json.loads(item)["type"] for item in data[:-1]] == [
        "start", "start-step", "text-start", "text-delta", "text-end", "finish-step", "finish",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"id": "c1", "messages": [], "trigger": "submit-message"}, "invalid_messages"),
        ({**chat("c1", ["x"]), "trigger": "resume-stream"}, "invalid_trigger"),
        ({**chat("c1", ["x"]), "format": "openai"}, "override_not_allowed"),
        ({**chat("c1", ["x"]), "prompt": "hi"}, "invalid_field"),
    ],
)
async def test_a_bad_request_is_a_json_400_before_any_stream(
    serve: ServeFactory, body: dict[str, Any], code: str
) -> None:
    client = await serve(ai_sdk_config())
    response = await client.http.post("/api/chat", json=body)

    assert (response.status_code, response.json()["error"]["code"]) == (400, code)


async def test_a_chat_id_that_is_not_one_is_a_400_on_resume_and_stop(serve: ServeFactory) -> None:
    client = await serve(ai_sdk_config())
    for method in ("GET", "DELETE"):
        response = await client.http.request(method, "/api/chat/a.b/stream")
        assert (response.status_code, response.json()["error"]["code"]) == (
            400,
            "invalid_conversation_id",
        )


async def test_with_auth_a_chat_is_its_keys_alone(serve: ServeFactory, monkeypatch) -> None:
    monkeypatch.setenv("STREAMSERVER_API_KEYS", KEYS)
    client: Client = await serve(ai_sdk_config(auth={"mode": "api_key"}))
    async with client.http.stream(
        "POST", "/api/chat", json=chat("shared", ["a "], then="hang"), headers=ALICE
    ) as response:
        async for line in response.aiter_lines():
            if '"text-delta"' in line:
                break
        # Bob's chat of the same id is another chat: he can neither resume nor stop Alice's.
        assert (await client.http.get("/api/chat/shared/stream", headers=BOB)).status_code == 204
        stopped = await client.http.delete("/api/chat/shared/stream", headers=BOB)
        assert stopped.status_code == 404
        stopped = await client.http.delete("/api/chat/shared/stream", headers=ALICE)
        assert stopped.json()["cancelled"] is True


async def test_the_chats_stream_is_found_long_after_its_note_would_have_lapsed(
    serve: ServeFactory,
) -> None:
    # The note lives [redis] lease_s (1 s here) and is renewed while the stream generates.
    client = await serve(ai_sdk_config(redis={"lease_s": 1}))
    async with client.http.stream(
        "POST", "/api/chat", json=chat("long", ["a "], then="hang")
    ) as response:
        async for line in response.aiter_lines():
            if '"text-delta"' in line:
                break
    await asyncio.sleep(2.5)  # past two lifetimes of one note

    async with client.http.stream("GET", "/api/chat/long/stream") as resumed:
        assert resumed.status_code == 200
        async for line in resumed.aiter_lines():
            if '"text-delta"' in line:
                assert json.loads(line[6:])["delta"] == "a "
                break
    assert (await client.http.delete("/api/chat/long/stream")).json()["cancelled"] is True
