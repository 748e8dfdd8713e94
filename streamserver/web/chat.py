"""Conversation routes: ``/ws/chat/{conversation_id}`` and ``/v1/conversations/{conversation_id}``.

Each ``{"message": ...}`` is appended to the conversation's history; the provider gets the history
window plus the new message; the reply streams as ``token`` messages, is stored (whole when it
completed; as far as it reached the client, marked ``cancelled`` or ``failed``, when it was cut
short), and ``{"type": "done", "message_count": n}`` closes the turn. After a dropped connection,
``{"type": "resume", "received": n}`` on a new socket picks the conversation's reply up again.
One turn of a conversation runs at a time (``Turn``, through the store: across instances with a
shared one): a prompt while another connection's turn runs is refused with ``conversation_busy``.

A message may offer ``tools``; a reply that calls them streams the calls and its ``done`` lists
``pending_tool_calls``. Each ``{"type": "tool_result", "tool_call_id", "content"}`` is stored as a
``tool`` message; the one that answers the last pending call continues the turn (a new reply
streams, with the same tools), the others are acknowledged with ``tool_result_stored``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable
from typing import Any, TypeVar

from aiohttp import web

from ..access import KEY_ID
from ..conversation_turns import LocalTurns, Turn, Turns
from ..conversations import (
    Conversation,
    ConversationStore,
    Status,
    StoredMessage,
    check_id,
    last_reply,
    openai_message,
    pending_calls,
    window,
)
from ..errors import StreamRejected
from ..request_input import parse_stream_params, valid_text
from ..settings import RouteSettings
from ..stores import StoreUnavailable
from ..streams import Stream
from ..transports import ws
from ..types import Event, StreamEnd
from .keys import SERVICE, Handler
from .sockets import serve_route_socket

log = logging.getLogger("streamserver.chat")
T = TypeVar("T")

_DRAIN_WAIT_S = 1.0
"""How long a reply's store waits for sockets to write what is logged (what reached the client)."""

_STATUS: dict[str, Status] = {
    "completed": "complete",
    "cancelled": "cancelled",
    "client_gone": "cancelled",
}


def socket_handler(path: str, route: RouteSettings) -> Handler:
    """The handler of one conversation route."""

    local = LocalTurns()
    """Turns and latest replies, for a store that keeps none (``ConversationStore.begin_turn``)."""

    async def handle(request: web.Request) -> web.StreamResponse:
        service = request.app[SERVICE]
        conversation_id = check_id(request.match_info["conversation_id"])
        store = service.conversations
        turns: Turns = store if hasattr(store, "begin_turn") else local
        settings = service.config.conversations
        identity = request[KEY_ID]
        owner = identity if service.access.enabled else None

        async def start(fields: dict[str, Any]) -> Stream | dict[str, Any]:
            # The turn is held from before the history is read until the reply is stored.
            turn = Turn(turns, conversation_id, service.config.redis.lease_s)
            if not await _stored(turn.begin()):
                _owned(await _stored(store.get(conversation_id)), owner)  # a stranger's: not found
                raise StreamRejected(
                    409,
                    "conversation_busy",
                    "another turn of this conversation is in progress; send this once its reply"
                    " is done, or resume that reply",
                )
            try:
                started = await take_turn(fields, turn)
            except BaseException:
                await turn.end(0)
                raise
            if isinstance(started, dict):  # answered without a stream: the turn is over
                await turn.end(0)
            return started

        async def take_turn(fields: dict[str, Any], turn: Turn) -> Stream | dict[str, Any]:
            conversation = _owned(await _stored(store.get(conversation_id)), owner)
            history = list(conversation.messages) if conversation else []
            if fields.pop("type", None) == "tool_result":
                user = _tool_result(fields, history)
                waiting = [c.id for c in pending_calls(history) if c.id != user.tool_call_id]
                reply = last_reply(history)
                fields = {**(reply.offered if reply is not None else {}), **fields}
                if waiting:  # stored; the turn goes on once every call has its result
                    count = await _stored(store.append(conversation_id, owner, [user]))
                    return {"type": "tool_result_stored", "tool_call_id": user.tool_call_id,
                            "pending_tool_calls": waiting, "message_count": count}  # fmt: skip
            else:
                message = fields.pop("message", None)
                if not isinstance(message, str) or not message.strip():
                    raise StreamRejected(400, "missing_prompt", "a non-empty 'message' is required")
                valid_text(message, "'message'")  # before anything is read or stored
                user = StoredMessage("user", message, created=time.time())
            messages = window([*history, user], settings.max_messages, settings.max_chars)
            params = parse_stream_params(
                {**fields, "messages": [openai_message(m) for m in messages]},
                route,
                service.config,
            )
            tool_fields = {k: fields[k] for k in _TOOL_FIELDS if k in fields}
            loop = asyncio.get_running_loop()
            user_stored: asyncio.Future[int | None] = loop.create_future()
            """The message count once the prompt is stored; None if storing it failed."""

            async def store_reply(stream: Stream, summary: StreamEnd) -> list[Event]:
                try:
                    count = await user_stored
                    if count is None:  # the prompt was not stored: neither is a reply to it
                        return []
                    return await _store_reply(stream, summary, count)
                finally:
                    await turn.end(service.streams.retain_s)

            async def _store_reply(stream: Stream, summary: StreamEnd, count: int) -> list[Event]:
                # A reply that completed is stored whole (a client that comes back gets the rest
                # by resuming); one cut short is stored as far as it reached the client: what
                # the sockets are still writing counts, but a stalled one is not waited for.
                if not service.draining:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(_DRAIN_WAIT_S):
                            await stream.log.drained()
                await asyncio.sleep(0)  # a tap's pending write (and its delivery) goes first
                record = stream.record
                assert record is not None  # started with keep_record
                whole = summary.outcome == "completed"
                text = record.text() if whole else record.text(below=stream.delivered)
                # Only a reply that completed keeps its calls: one cut short (or at max_tokens) may
                # hold half a call, which no tool can answer and no upstream would take back.
                calls = record.calls() if whole and summary.finish_reason != "length" else ()
                reply = StoredMessage(
                    "assistant", text, _STATUS.get(summary.outcome, "failed"), time.time(), calls,
                    offered=tool_fields if calls else {},
                )  # fmt: skip
                done: dict[str, Any] = {"type": "done", "message_count": count}
                if calls:
                    done["pending_tool_calls"] = [call.id for call in calls]
                try:
                    done["message_count"] = await _stored(
                        store.append(conversation_id, owner, [reply])
                    )
                except StreamRejected:  # logged
                    failed = ws.error_message("store_failed", "the reply could not be stored")
                    done["status"] = "failed"
                    return [Event(None, json.dumps(failed)), Event(None, json.dumps(done))]
                if reply.status != "complete":
                    done["status"] = reply.status
                return [Event(None, json.dumps(done))]

            stream = await service.start(
                path,
                route,
                params,
                "json",
                key_id=identity,
                epilogue=store_reply,
                keep_record=True,
                traceparent=request.headers.get("traceparent"),
            )
            try:
                user_count = await _stored(store.append(conversation_id, owner, [user]))
                await turn.replying(stream.id)  # before the epilogue can note the reply stored
            except BaseException:
                user_stored.set_result(None)
                stream.cancel("cancelled")
                raise
            # The epilogue goes on only after this returns: the socket attaches its reader first
            # (no await in between), so the reply's store waits for what that reader writes.
            user_stored.set_result(user_count)
            return stream

        async def resume(wanted: ws.ResumeRequest) -> Stream:
            # The reply in progress (or just finished and kept) of this conversation.
            latest = await _stored(turns.latest_reply(conversation_id))
            stream_id = latest.stream_id if latest is not None else None
            if stream_id is None or wanted.stream_id not in (None, stream_id):
                raise StreamRejected(
                    404, "stream_not_found", "this conversation has no reply in progress"
                )
            stream = await service.find_stream(stream_id, identity)
            if wanted.stream_id is None and wanted.received == 0 and stream.finished:
                # Nothing received and that reply over: it may be an earlier turn's (a new prompt
                # that never reached the server). The conversation's history has the answer.
                raise StreamRejected(
                    404,
                    "stream_not_found",
                    "this conversation has no reply in progress; its history has the last one",
                )
            if stream.route != path:
                raise StreamRejected(
                    400, "invalid_resume", f"that stream belongs to {stream.route}: resume it there"
                )
            await service.resume_point(stream, wanted.received, "invalid_resume")
            return stream

        return await serve_route_socket(request, route, start, resume, kinds=("tool_result",))

    handle.__name__ = f"chat {path}"
    return handle


_TOOL_FIELDS = ("tools", "tool_choice", "parallel_tool_calls", "model", "provider")
"""What a tool result's continuation reuses from the turn that made the calls."""


def _tool_result(fields: dict[str, Any], history: list[StoredMessage]) -> StoredMessage:
    """A ``tool_result`` message checked against the calls awaiting results, as a ``tool`` message."""
    call_id, content = fields.pop("tool_call_id", None), fields.pop("content", None)
    if not isinstance(call_id, str):
        raise StreamRejected(400, "invalid_tool_result", "'tool_call_id' must be a string")
    pending = pending_calls(history)
    if call_id not in {call.id for call in pending}:
        waiting = ", ".join(call.id for call in pending) or "none"
        raise StreamRejected(
            400,
            "unknown_tool_call",
            f"no call {call_id!r} awaits a result in this conversation (awaiting: {waiting})",
        )
    if content is None:
        raise StreamRejected(400, "invalid_tool_result", "'content' is required")
    text = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
    valid_text(text, "'content'")
    return StoredMessage("tool", text, created=time.time(), tool_call_id=call_id)


async def _stored(work: Awaitable[T]) -> T:
    """The result of a conversation store call; its failure is a refusal the socket survives."""
    try:
        return await work
    except StoreUnavailable as exc:  # Redis away or late: a line, not a traceback
        log.warning("the conversation store is unavailable: %s", exc)
        raise StreamRejected(
            503, "store_failed", "the conversation could not be read or stored; try again"
        ) from None
    except Exception:
        log.exception("the conversation store failed")
        raise StreamRejected(
            503, "store_failed", "the conversation could not be read or stored; try again"
        ) from None


def _owned(conversation: Conversation | None, owner: str | None) -> Conversation | None:
    """The conversation if ``owner`` may use it (with auth on, only the key that created it)."""
    if conversation is not None and conversation.owner != owner:
        raise StreamRejected(404, "conversation_not_found", "no conversation has that id")
    return conversation


def history_handlers() -> tuple[Handler, Handler]:
    """``GET`` and ``DELETE /v1/conversations/{conversation_id}``."""

    async def get(request: web.Request) -> web.Response:
        service = request.app[SERVICE]
        conversation_id = check_id(request.match_info["conversation_id"])
        owner = request[KEY_ID] if service.access.enabled else None
        store: ConversationStore = service.conversations
        conversation = _owned(await _stored(store.get(conversation_id)), owner)
        if conversation is None:
            raise StreamRejected(404, "conversation_not_found", "no conversation has that id")
        shown: dict[str, Any] = {
            "id": conversation.id,
            "message_count": len(conversation.messages),
            "messages": [_shown(m) for m in conversation.messages],
        }
        if hasattr(store, "latest_reply"):  # the reply being generated, on whichever instance
            latest = await _stored(store.latest_reply(conversation_id))
            if latest is not None and not latest.done:
                shown["reply_in_progress"] = latest.stream_id
        return web.json_response(shown)

    async def delete(request: web.Request) -> web.Response:
        service = request.app[SERVICE]
        conversation_id = check_id(request.match_info["conversation_id"])
        owner = request[KEY_ID] if service.access.enabled else None
        store: ConversationStore = service.conversations
        if _owned(await _stored(store.get(conversation_id)), owner) is None or not await _stored(
            store.delete(conversation_id)
        ):
            raise StreamRejected(404, "conversation_not_found", "no conversation has that id")
        return web.json_response({"id": conversation_id, "deleted": True})

    return get, delete


def _shown(message: StoredMessage) -> dict[str, Any]:
    """One stored message as ``GET /v1/conversations/{id}`` shows it."""
    shown: dict[str, Any] = {"role": message.role, "content": message.content,
                             "status": message.status, "created": message.created}  # fmt: skip
    if message.tool_calls:
        shown["tool_calls"] = [call.openai() for call in message.tool_calls]
    if message.tool_call_id is not None:
        shown["tool_call_id"] = message.tool_call_id
    return shown
