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
from ..ui_messages import TRIGGERS, parse_chat_request
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
_UI_MESSAGE = {
    "type": "object",
    "required": ["role", "parts"],
    "properties": {
        "id": {"type": "string"},
        "role": {"enum": ["system", "user", "assistant"]},
        "parts": {"type": "array", "items": {"type": "object", "required": ["type"]}},
    },
}


def openapi_paths(path: str) -> dict[str, Any]:
    """The OpenAPI description of one ``ai-sdk`` route's three operations, by path."""
    chat_id = {
        "name": "chat_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": f"^{CONVERSATION_ID.pattern}$"},
    }
    body = {
        "type": "object",
        "required": ["id", "messages", "trigger"],
        "properties": {
            "id": chat_id["schema"],
            "messages": {"type": "array", "minItems": 1, "items": _UI_MESSAGE},
            "trigger": {"enum": list(TRIGGERS)},
            "messageId": {"type": "string"},
        },
        "description": "DefaultChatTransport's body; other fields: the route's allowed overrides",
    }
    errors = {
        str(status): {"description": "Refused", **_ERROR} for status in (400, 401, 413, 429, 503)
    }
    stream = {"200": {"description": "The UI message stream (SSE)",
                      "content": {"text/event-stream": {"schema": {"type": "string"}}}}}  # fmt: skip
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
