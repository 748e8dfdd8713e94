"""Conversation routes: ``/ws/chat/{conversation_id}`` and ``/v1/conversations/{conversation_id}``.

Each ``{"message": ...}`` is appended to the conversation's history; the provider gets the history
window plus the new message; the reply streams as ``token`` messages, is stored (whole when it
completed; as far as it reached the client, marked ``cancelled`` or ``failed``, when it was cut
short), and ``{"type": "done", "message_count": n}`` closes the turn. After a dropped connection,
``{"type": "resume", "received": n}`` on a new socket picks the conversation's reply up again.
"""

from __future__ import annotations

import asyncio
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
from .streams import Stream
from .transports import ws
from .types import Event, StreamEnd

_STATUS: dict[str, Status] = {
    "completed": "complete",
    "cancelled": "cancelled",
    "client_gone": "cancelled",
}


def socket_handler(path: str, route: RouteSettings, service_key: web.AppKey[StreamService]) -> Any:
    """The handler of one conversation route."""

    latest: dict[str, str] = {}
    """Conversation id -> the id of its latest reply's stream, while that stream is kept."""

    async def handle(request: web.Request) -> web.StreamResponse:
        service = request.app[service_key]
        conversation_id = check_id(request.match_info["conversation_id"])
        store = service.conversations
        settings = service.config.conversations
        identity = request[KEY_ID]
        owner = identity if service.access.enabled else None

        async def start(fields: dict[str, Any]) -> Stream:
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
            user_stored = asyncio.get_running_loop().create_future()

            async def store_reply(stream: Stream, summary: StreamEnd) -> list[Event]:
                # A reply that completed is stored whole (a client that comes back gets the rest
                # by resuming); one cut short is stored as far as it reached the client.
                await user_stored
                await stream.log.drained()  # what the sockets are still writing counts as sent
                items = list(stream.sent or ())
                if summary.outcome == "completed" and stream.log.available(len(items)):
                    items += stream.log.read(len(items))
                text = "".join(_token_text(item) for item in items)  # type: ignore[arg-type]
                reply = StoredMessage(
                    "assistant", text, _STATUS.get(summary.outcome, "failed"), time.time()
                )
                count = await store.append(conversation_id, owner, [reply])
                asyncio.get_running_loop().call_later(
                    service.streams.retain_s, _forget, conversation_id, stream.id
                )
                done: dict[str, Any] = {"type": "done", "message_count": count}
                if reply.status != "complete":
                    done["status"] = reply.status
                return [Event(None, json.dumps(done))]

            stream = service.start(path, route, params, "ws", key_id=identity, epilogue=store_reply)
            try:
                await store.append(conversation_id, owner, [user])
            except BaseException:
                stream.cancel("cancelled")
                raise
            finally:
                # The epilogue goes on only after this returns: the socket attaches its reader
                # first (no await in between), so the reply's store waits for what it writes.
                user_stored.set_result(None)
            latest[conversation_id] = stream.id
            return stream

        def resume(wanted: ws.ResumeRequest) -> Stream:
            # The reply in progress (or just finished and kept) of this conversation.
            stream_id = latest.get(conversation_id)
            if stream_id is None or wanted.stream_id not in (None, stream_id):
                raise StreamRejected(
                    404, "stream_not_found", "this conversation has no reply in progress"
                )
            stream = service.owned_stream(stream_id, identity)
            if stream.route != path:
                raise StreamRejected(
                    400, "invalid_resume", f"that stream belongs to {stream.route}: resume it there"
                )
            service.resume_point(stream, wanted.received)
            return stream

        server = service.config.server
        return await ws.serve_socket(
            request,
            start,
            resume,
            heartbeat_s=server.ws_heartbeat_s,
            max_message_bytes=server.ws_max_message_bytes,
            send_timeout_s=server.send_timeout_s,
            busy=route.busy,
        )

    def _forget(conversation_id: str, stream_id: str) -> None:
        if latest.get(conversation_id) == stream_id:
            del latest[conversation_id]

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
