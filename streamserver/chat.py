"""Conversation routes: ``/ws/chat/{conversation_id}`` and ``/v1/conversations/{conversation_id}``.

Each ``{"message": ...}`` is appended to the conversation's history; the provider gets the history
window plus the new message; the reply streams as ``token`` messages, is stored as what was actually
delivered (marked ``cancelled`` or ``failed`` when it was), and ``{"type": "done", "message_count": n}``
closes the turn.
"""

from __future__ import annotations

import json
import time
from typing import Any

from aiohttp import web

from .config import RouteSettings
from .conversations import Conversation, ConversationStore, Status, StoredMessage, check_id, window
from .errors import StreamRejected
from .http_errors import json_errors
from .security import KEY_ID
from .service import StreamService
from .stream_request import parse_stream_params
from .transports import ws

_STATUS: dict[str, Status] = {
    "completed": "complete",
    "cancelled": "cancelled",
    "client_gone": "cancelled",
}


def socket_handler(path: str, route: RouteSettings, service_key: web.AppKey[StreamService]) -> Any:
    """The handler of one conversation route."""

    async def handle(request: web.Request) -> web.StreamResponse:
        service = request.app[service_key]
        conversation_id = check_id(request.match_info["conversation_id"])
        store = service.conversations
        settings = service.config.conversations
        identity = request[KEY_ID]
        owner = identity if service.access.enabled else None

        async def start(fields: dict[str, Any]) -> ws.Started:
            message = fields.pop("message", None)
            if not isinstance(message, str) or not message.strip():
                raise StreamRejected(400, "missing_prompt", "a non-empty 'message' is required")
            conversation = _owned(await store.get(conversation_id), owner)
            history = list(conversation.messages) if conversation else []
            user = StoredMessage("user", message, created=time.time())
            messages = window([*history, user], settings.max_messages, settings.max_chars)
            params = parse_stream_params(
                {**fields, "messages": [{"role": m.role, "content": m.content} for m in messages]},
                route,
                service.config,
            )
            stream = service.start(path, route, params, "ws", key_id=identity)
            await store.append(conversation_id, owner, [user])

            async def after(delivered: list[str], socket_open: bool) -> list[dict[str, Any]]:
                text = "".join(_token_text(item) for item in delivered)
                outcome = stream.summary.outcome if stream.summary else "error"
                reply = StoredMessage(
                    "assistant", text, _STATUS.get(outcome, "failed"), time.time()
                )
                count = await store.append(conversation_id, owner, [reply])
                done: dict[str, Any] = {"type": "done", "message_count": count}
                if reply.status != "complete":
                    done["status"] = reply.status
                return [done]

            return ws.Started(stream, after)

        server = service.config.server
        return await ws.serve_socket(
            request,
            start,
            heartbeat_s=server.ws_heartbeat_s,
            max_message_bytes=server.ws_max_message_bytes,
            send_timeout_s=server.send_timeout_s,
            busy=route.busy,
        )

    handle.__name__ = f"chat {path}"
    return json_errors(handle)


def _owned(conversation: Conversation | None, owner: str | None) -> Conversation | None:
    """The conversation if ``owner`` may use it (with auth on, only the key that created it)."""
    if conversation is not None and conversation.owner != owner:
        raise StreamRejected(404, "conversation_not_found", "no conversation has that id")
    return conversation


def _token_text(item: str) -> str:
    message = json.loads(item)
    return message.get("content", "") if message.get("type") == "token" else ""


def history_handlers(service_key: web.AppKey[StreamService]) -> tuple[Any, Any]:
    """``GET`` and ``DELETE /v1/conversations/{conversation_id}``."""

    async def get(request: web.Request) -> web.Response:
        service = request.app[service_key]
        conversation_id = check_id(request.match_info["conversation_id"])
        owner = request[KEY_ID] if service.access.enabled else None
        conversation = _owned(await service.conversations.get(conversation_id), owner)
        if conversation is None:
            raise StreamRejected(404, "conversation_not_found", "no conversation has that id")
        return web.json_response({
            "id": conversation.id,
            "message_count": len(conversation.messages),
            "messages": [
                {"role": m.role, "content": m.content, "status": m.status, "created": m.created}
                for m in conversation.messages
            ],
        })  # fmt: skip

    async def delete(request: web.Request) -> web.Response:
        service = request.app[service_key]
        conversation_id = check_id(request.match_info["conversation_id"])
        owner = request[KEY_ID] if service.access.enabled else None
        store: ConversationStore = service.conversations
        if _owned(await store.get(conversation_id), owner) is None or not await store.delete(
            conversation_id
        ):
            raise StreamRejected(404, "conversation_not_found", "no conversation has that id")
        return web.json_response({"id": conversation_id, "deleted": True})

    return json_errors(get), json_errors(delete)
