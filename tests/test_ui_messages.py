"""What ``useChat``'s default transport posts, read into the request messages every route takes
(``ui_messages``): steps, tool results, what only the page shows, and what is refused."""

from __future__ import annotations

from typing import Any

import pytest

from streamserver.errors import StreamRejected
from streamserver.ui_messages import parse_chat_request


def body(*messages: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"id": "chat1", "messages": list(messages), "trigger": "submit-message", **fields}


def text(role: str, *texts: str, message_id: str = "m") -> dict[str, Any]:
    parts = [{"type": "text", "text": piece} for piece in texts]
    return {"id": message_id, "role": role, "parts": parts}


def weather(state: str, **fields: Any) -> dict[str, Any]:
    return {"type": "tool-get_weather", "toolCallId": "c1", "state": state,
            "input": {"city": "Paris"}, **fields}  # fmt: skip


def call(arguments: str = '{"city": "Paris"}') -> dict[str, Any]:
    return {"id": "c1", "type": "function",
            "function": {"name": "get_weather", "arguments": arguments}}  # fmt: skip


def test_text_parts_become_the_messages_content_and_the_body_fields_pass_on() -> None:
    chat = parse_chat_request(
        body(text("system", "Be brief."), text("user", "Hi ", "there"), model="sim-tools")
    )

    assert chat.messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi there"},
    ]
    assert (chat.chat_id, chat.trigger, chat.fields, chat.continues) == (
        "chat1", "submit-message", {"model": "sim-tools"}, "",
    )  # fmt: skip


def test_each_step_of_a_reply_is_its_call_then_its_result_and_reasoning_stays_on_the_page() -> None:
    reply = {"id": "a1", "role": "assistant", "parts": [
        {"type": "step-start"},
        {"type": "reasoning", "text": "hmm"},
        {"type": "text", "text": "Looking."},
        weather("output-available", output={"t": 21}),
        {"type": "step-start"},
        {"type": "source-url", "sourceId": "s", "url": "https://example.org"},
        {"type": "data-weather", "data": {}},
        {"type": "text", "text": "21."},
    ]}  # fmt: skip
    chat = parse_chat_request(body(text("user", "weather?"), reply))

    assert chat.messages[1:] == [
        {"role": "assistant", "content": "Looking.", "tool_calls": [call()]},
        {"role": "tool", "tool_call_id": "c1", "content": '{"t": 21}'},
        {"role": "assistant", "content": "21."},
    ]
    assert chat.continues == "a1"  # the chat ends with the reply: the answer goes on in it


def test_a_failed_or_denied_call_is_answered_with_why_and_a_call_without_result_is_left_out() -> (
    None
):
    failed = weather("output-error", input=None, rawInput='{"city": ', errorText="bad input")
    for part, content, arguments in [
        (failed, "bad input", '{"city": '),
        (weather("output-denied", approval={"id": "x", "approved": False, "reason": "no"}),
         "the user denied this call: no", '{"city": "Paris"}'),
    ]:  # fmt: skip
        reply = {"id": "a1", "role": "assistant", "parts": [part]}
        assert parse_chat_request(body(text("user", "go"), reply)).messages[1:] == [
            {"role": "assistant", "content": "", "tool_calls": [call(arguments)]},
            {"role": "tool", "tool_call_id": "c1", "content": content},
        ]
    pending = {"id": "a1", "role": "assistant",
               "parts": [{"type": "text", "text": "Let me see."}, weather("input-available")]}  # fmt: skip
    assert parse_chat_request(body(text("user", "go"), pending)).messages[1:] == [
        {"role": "assistant", "content": "Let me see."}
    ]


def test_a_users_image_file_is_an_image_url_content_part() -> None:
    image = {"type": "file", "mediaType": "image/png", "url": "data:image/png;base64,AAAA"}
    message = {"id": "u", "role": "user", "parts": [{"type": "text", "text": "What is it?"}, image]}

    assert parse_chat_request(body(message)).messages == [{"role": "user", "content": [
        {"type": "text", "text": "What is it?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
    ]}]  # fmt: skip


@pytest.mark.parametrize(
    ("request_body", "code", "says"),
    [
        ({**body(text("user", "hi")), "id": "a/b"}, "invalid_chat_id", "'id'"),
        (body(text("user", "hi"), trigger="resume-stream"), "invalid_trigger", "'trigger'"),
        (body(), "invalid_messages", "non-empty"),
        (body({"id": "m", "role": "tool", "parts": []}), "invalid_messages", "messages[0].role"),
        (body({"id": "m", "role": "user", "parts": [{"type": "audio"}]}), "invalid_messages",
         "messages[0].parts[0] is a 'audio' part"),
        (body({"id": "m", "role": "user", "parts": [{"type": "file", "mediaType": "text/plain",
                                                       "url": "data:,x"}]}),
         "invalid_messages", "only image files"),
        (body({"id": "m", "role": "assistant", "parts": [{"type": "tool-f", "state": "done"}]}),
         "invalid_messages", "toolCallId"),
        (body({"id": "m", "role": "user", "parts": [{"type": "reasoning", "text": "x"}]}),
         "invalid_messages", "no text"),
    ],
)  # fmt: skip
def test_what_is_not_a_chat_request_is_a_400_naming_it(
    request_body: dict[str, Any], code: str, says: str
) -> None:
    with pytest.raises(StreamRejected) as refused:
        parse_chat_request(request_body)

    assert (refused.value.status, refused.value.code) == (400, code)
    assert says in refused.value.message
