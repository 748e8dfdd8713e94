"""Which stream answers a chat now: the AI SDK's "active stream id", kept by streamserver itself
so that ``useChat({resume: true})`` needs no server code of its user's.

``ChatStreams`` notes a chat's stream where the conversation store keeps its latest replies
(``ConversationStore.note_reply``: in Redis with ``[conversations] store = "redis"``, so every
instance finds it; in this process otherwise), under a key of its own per route and caller: a
``useChat`` chat id never meets a ``/ws/chat`` conversation, nor another caller's chat. The note
lives ``ttl_s`` and is renewed every third of that while the stream generates, so a dead
instance's notes run out by themselves; once the stream has ended its note just expires (a
resume finds the stream finished and answers 204). A renewal that finds a newer stream noted
stops: the chat has moved on.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging

from .conversation_turns import Turns
from .conversations import LatestReply
from .errors import StreamRejected
from .streams import Stream

log = logging.getLogger("streamserver.chat")


class ChatStreams:
    """The active stream of each chat of one route, kept in ``turns`` (the conversation store,
    or a ``LocalTurns`` for a store that keeps no replies)."""

    def __init__(self, turns: Turns, path: str, ttl_s: float) -> None:
        self.turns = turns
        self.path = path
        self.ttl_s = ttl_s

    def key(self, owner: str, chat_id: str) -> str:
        """The store's key of a caller's chat on this route (letters, digits and ``_`` only)."""
        scope = hashlib.sha256(f"{self.path}\n{owner}".encode()).hexdigest()[:16]
        return f"aisdk_{scope}_{chat_id}"

    async def active(self, owner: str, chat_id: str) -> str | None:
        """The id of the stream last noted for the chat, while its note lasts; a 503 when the
        store does not answer."""
        try:
            latest = await self.turns.latest_reply(self.key(owner, chat_id))
        except Exception as exc:
            log.warning("reading the active stream of a chat failed: %s", exc)
            raise StreamRejected(
                503,
                "store_unavailable",
                "the chat's stream could not be looked up; retry shortly",
                headers={"Retry-After": "2"},
            ) from None
        return None if latest is None else latest.stream_id

    async def remember(self, owner: str, chat_id: str, stream: Stream) -> None:
        """Note ``stream`` as the chat's active stream, renewed until its generation ends. A
        store that fails is logged and fails nothing: the stream goes on, a resume misses it."""
        key = self.key(owner, chat_id)
        try:
            await self.turns.note_reply(key, LatestReply(stream.id, done=False), self.ttl_s)
        except Exception as exc:
            log.warning("noting the active stream of chat key %s failed: %s", key, exc)
        task = stream.task
        if task is None or task.done():
            return
        renewal = asyncio.get_running_loop().create_task(self._renew(key, stream.id))
        task.add_done_callback(lambda _: renewal.cancel())

    async def _renew(self, key: str, stream_id: str) -> None:
        while True:
            await asyncio.sleep(self.ttl_s / 3)
            try:
                latest = await self.turns.latest_reply(key)
                if latest is not None and latest.stream_id != stream_id:
                    return  # a newer stream answers the chat
                await self.turns.note_reply(key, LatestReply(stream_id, done=False), self.ttl_s)
            except Exception as exc:  # the store is away: try again at the next third
                log.warning("renewing the active stream of chat key %s failed: %s", key, exc)
