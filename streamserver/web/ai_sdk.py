"""A route ``useChat`` talks to unchanged: ``transport = "ai-sdk"``.

- ``POST <path>``: what the AI SDK's ``DefaultChatTransport`` sends (``{id, messages: UIMessage[],
  trigger, messageId}`` and the page's ``body`` fields), answered with the UI message stream
  (``x-vercel-ai-ui-message-stream: v1``). The stream becomes the chat's active stream; a
  stream the chat had still generating is cancelled (a new message or a regenerate replaces it).
- ``GET <path>/{chat_id}/stream``: the AI SDK's resume (``useChat({resume: true})`` on page load
  calls it): the chat's active stream replayed from its start, then followed live; 204 when the
  chat has none (it ended, or never was).
- ``DELETE <path>/{chat_id}/stream``: cancel the chat's generation. ``stop()`` only aborts the
  page's fetch, which, with ``resume.grace_s`` above 0 (what a resume across a reload needs),
  leaves the stream generating for the grace period; the page calls this on stop.

With the Redis stores (``[resume]`` and ``[conversations]``) any instance serves all three.
"""

from __future__ import annotations

import contextlib
from typing import Any

from aiohttp import web

from ..access import KEY_ID
from ..chat_streams import ChatStreams
from ..conversation_turns import LocalTurns, Turns
from ..conversations import CONVERSATION_ID, check_id
from ..errors import StreamRejected
from ..request_input import parse_stream_params
from ..service import StreamService
from ..settings import RouteSettings
from ..streams import Stream
from ..transports import sse
from ..ui_messages import (
    CALL_STATES,
    PAGE_ONLY_PARTS,
    RESULT_STATES,
    TRIGGERS,
    parse_chat_request,
)
from .keys import CONNECTIONS, SERVICE, Handler
from .request import read_json_body


def chat_handlers(path: str, route: RouteSettings) -> dict[tuple[str, str], Handler]:
    """The handlers of one ``ai-sdk`` route, by (method, path)."""
    local = LocalTurns()
    """Active streams, for a conversation store that keeps no replies (this process only)."""
    chats: dict[StreamService, ChatStreams] = {}

    def chat_streams(service: StreamService) -> ChatStreams:
        if service not in chats:
            store = service.conversations
            turns: Turns = store if hasattr(store, "note_reply") else local
            chats[service] = ChatStreams(turns, path, service.config.redis.lease_s)
        return chats[service]

    def owner(request: web.Request) -> str:
        # With auth, chats are the key's; without it, one chat id is one chat for every caller.
        return request[KEY_ID] if request.app[SERVICE].access.enabled else ""

    async def active(request: web.Request, chat_id: str) -> Stream | None:
        """The chat's stream while it generates (``None`` once it ended or was forgotten)."""
        service = request.app[SERVICE]
        stream_id = await chat_streams(service).active(owner(request), chat_id)
        if stream_id is None:
            return None
        try:
            stream = await service.find_stream(stream_id, request[KEY_ID])
        except StreamRejected:  # no longer kept
            return None
        return None if stream.finished else stream

    async def send(request: web.Request) -> web.StreamResponse:
        service = request.app[SERVICE]
        body = await read_json_body(request, service.config.limits.max_body_bytes)
        chat = parse_chat_request(body)
        params = parse_stream_params(
            {**chat.fields, "messages": chat.messages}, route, service.config
        )
        earlier = await active(request, chat.chat_id)
        stream = await service.start(
            path,
            route,
            params,
            "sse",
            key_id=request[KEY_ID],
            formatter_options={"message_id": chat.continues} if chat.continues else None,
            traceparent=request.headers.get("traceparent"),
        )
        await chat_streams(service).remember(owner(request), chat.chat_id, stream)
        if earlier is not None:
            with contextlib.suppress(StreamRejected):  # it finished meanwhile
                await service.cancel(earlier)
        return await sse.send_stream(request, stream, 0, request.app[CONNECTIONS].writers)

    async def resume(request: web.Request) -> web.StreamResponse:
        stream = await active(request, check_id(request.match_info["chat_id"]))
        if stream is None:
            return web.Response(status=204)  # the AI SDK's "no active stream"
        return await sse.send_stream(request, stream, 0, request.app[CONNECTIONS].writers)

    async def stop(request: web.Request) -> web.Response:
        chat_id = check_id(request.match_info["chat_id"])
        stream = await active(request, chat_id)
        if stream is None:
            raise StreamRejected(404, "stream_not_found", "this chat has no stream generating")
        await request.app[SERVICE].cancel(stream)  # 409 if it finished meanwhile
        return web.json_response({"id": stream.id, "chat_id": chat_id, "cancelled": True})

    send.__name__ = f"ai-sdk chat {path}"
    resume.__name__ = f"ai-sdk resume {path}"
    stop.__name__ = f"ai-sdk stop {path}"
    streams_path = path.rstrip("/") + "/{chat_id}/stream"
    return {("POST", path): send, ("GET", streams_path): resume, ("DELETE", streams_path): stop}


_ERROR = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def chat_body(max_chars: int) -> dict[str, Any]:
    """The JSON Schema of ``DefaultChatTransport``'s body: no more than ``parse_chat_request``
    takes. The route's allowed overrides are added beside it (``openapi``)."""
    return {
        "type": "object",
        "required": ["id", "messages", "trigger"],
        "properties": {
            "id": _CHAT_ID,
            "messages": {
                "type": "array",
                "minItems": 1,
                "items": ui_message_schema(max_chars),
                # What the model is sent must hold a message: a chat of only empty replies is none
                # (stricter than the code, which takes a chat of replies with text: no client
                # sends one).
                "contains": {"properties": {"role": {"enum": ["system", "user"]}}},
            },
            "trigger": {"enum": list(TRIGGERS)},
            "messageId": {"type": ["string", "null"]},
        },
        "description": "DefaultChatTransport's body; other fields: the route's allowed overrides",
    }


def ui_message_schema(max_chars: int) -> dict[str, Any]:
    """One ``UIMessage``, with the parts each role may send (``ui_messages``): any other key of a
    message or a part (``metadata``, ``providerMetadata``...) is ignored."""
    text = _part("text", {"text": {"type": "string", "maxLength": max_chars}})
    image = _part("file", {"mediaType": {"type": "string", "pattern": "^image/"},
                           "url": {"type": "string"}})  # fmt: skip
    page_only = {
        "type": "object",
        "required": ["type"],
        "properties": {"type": {"anyOf": [{"enum": list(PAGE_ONLY_PARTS)},
                                          {"type": "string", "pattern": "^data-"}]}},
        "description": "shown by the page, not sent to the model again",
    }  # fmt: skip
    results = [
        {"properties": {"state": {"enum": [s for s in CALL_STATES if s not in RESULT_STATES]}}},
        {"properties": {"state": {"const": "output-available"}}},
        {"required": ["errorText"],
         "properties": {"state": {"const": "output-error"}, "errorText": {"type": "string"}}},
        {"properties": {"state": {"const": "output-denied"}}},
    ]  # fmt: skip
    call = {"toolCallId": {"type": "string", "minLength": 1}, "state": {"enum": list(CALL_STATES)}}
    tool = {**_part({"type": "string", "pattern": "^tool-."}, call), "anyOf": results}
    dynamic = _part("dynamic-tool", {**call, "toolName": {"type": "string", "minLength": 1}})
    dynamic["anyOf"] = results

    def message(role: str, parts: list[dict[str, Any]], sent: list[dict[str, Any]]) -> Any:
        listed: dict[str, Any] = {"type": "array", "items": {"anyOf": parts}}
        if sent:  # a user's or system message needs something to send
            listed["contains"] = {"anyOf": sent}
        return {
            "type": "object",
            "required": ["role", "parts"],
            "properties": {"id": {"type": "string"}, "role": {"const": role}, "parts": listed},
        }

    return {
        "oneOf": [
            message("system", [text, page_only], [text]),
            message("user", [text, image, page_only], [text, image]),
            message("assistant", [text, tool, dynamic, page_only], []),
        ]
    }


def _part(kind: str | dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
    """A part of type ``kind`` (a name, or the schema of its names) whose ``fields`` are required."""
    return {
        "type": "object",
        "required": ["type", *fields],
        "properties": {"type": {"const": kind} if isinstance(kind, str) else kind, **fields},
    }


_CHAT_ID = {"type": "string", "pattern": f"^{CONVERSATION_ID.pattern}$"}


def openapi_paths(path: str, body: dict[str, Any], sse: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI description of one ``ai-sdk`` route's three operations, by path, whose POST
    takes ``body`` (``chat_body`` with the route's overrides) and which answer ``sse`` (the
    ``text/event-stream`` content every stream route has)."""
    chat_id = {"name": "chat_id", "in": "path", "required": True, "schema": _CHAT_ID}
    errors = {
        str(status): {"description": "Refused", **_ERROR} for status in (400, 401, 413, 429, 503)
    }
    stream = {"200": {"description": "The UI message stream (SSE)", "content": sse}}
    return {
        path: {
            "post": {
                "summary": "The AI SDK's useChat: UI messages in, the UI message stream out",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": body}},
                },
                "responses": {**stream, **errors},
            }
        },
        path.rstrip("/") + "/{chat_id}/stream": {
            "get": {
                "summary": "Resume the chat's active stream from its start (204: none)",
                "parameters": [chat_id],
                "responses": {**stream, "204": {"description": "No active stream"}, **errors},
            },
            "delete": {
                "summary": "Cancel the chat's generation",
                "parameters": [chat_id],
                "responses": {
                    "200": {"description": "Cancelled", "content": {"application/json": {}}},
                    "404": {"description": "No stream generating", **_ERROR},
                    "409": {"description": "It had just finished", **_ERROR},
                    **errors,
                },
            },
        },
    }
