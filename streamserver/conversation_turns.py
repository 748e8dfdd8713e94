"""One turn of a conversation at a time, and where its reply streams: ``Turn`` holds a turn from
its prompt to its stored reply (the store's lock, renewed while the turn lasts); ``LocalTurns``
keeps turns and latest replies in this process (the SQLite store's, and the chat route's for a
store that keeps none). A networked store keeps them where every instance sees them.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import TYPE_CHECKING, TypeAlias

from .conversations import LatestReply

if TYPE_CHECKING:
    from .conversations import ConversationStore

log = logging.getLogger("streamserver.chat")

_SWEEP_AT = 256
"""``LocalTurns`` drops what expired once it holds this many entries (and twice as many after)."""


class LocalTurns:
    """Turn locks and latest replies of one process, each with its expiry (``ConversationStore``'s
    optional turn members). What expired goes when it is next read, or in a sweep as it grows."""

    def __init__(self) -> None:
        self._turns: dict[str, tuple[str, float]] = {}
        """Conversation id -> (holder, monotonic time its lease ends)."""
        self._replies: dict[str, tuple[LatestReply, float]] = {}
        """Conversation id -> (latest reply, monotonic time it is forgotten)."""
        self._sweep_at = _SWEEP_AT

    async def begin_turn(self, conversation_id: str, holder: str, ttl_s: float) -> bool:
        """See ``ConversationStore.begin_turn``."""
        now = time.monotonic()
        held = self._turns.get(conversation_id)
        if held is not None and held[0] != holder and held[1] > now:
            return False
        self._turns[conversation_id] = (holder, now + ttl_s)
        self._sweep(now)
        return True

    async def end_turn(self, conversation_id: str, holder: str) -> None:
        """See ``ConversationStore.end_turn``."""
        held = self._turns.get(conversation_id)
        if held is not None and held[0] == holder:
            del self._turns[conversation_id]

    async def note_reply(self, conversation_id: str, reply: LatestReply, keep_s: float) -> None:
        """See ``ConversationStore.note_reply``."""
        if keep_s <= 0:
            self._replies.pop(conversation_id, None)
            return
        now = time.monotonic()
        self._replies[conversation_id] = (reply, now + keep_s)
        self._sweep(now)

    async def latest_reply(self, conversation_id: str) -> LatestReply | None:
        """See ``ConversationStore.latest_reply``."""
        kept = self._replies.get(conversation_id)
        if kept is None:
            return None
        if kept[1] <= time.monotonic():
            del self._replies[conversation_id]
            return None
        return kept[0]

    def _sweep(self, now: float) -> None:
        if len(self._turns) + len(self._replies) < self._sweep_at:
            return
        self._turns = {k: v for k, v in self._turns.items() if v[1] > now}
        self._replies = {k: v for k, v in self._replies.items() if v[1] > now}
        self._sweep_at = max(_SWEEP_AT, 2 * (len(self._turns) + len(self._replies)))


Turns: TypeAlias = "ConversationStore | LocalTurns"
"""Whatever keeps the turns: the store, or the chat route's ``LocalTurns`` for one that cannot."""


class Turn:
    """One turn of a conversation, from its prompt to its stored reply.

    ``begin`` takes the conversation's turn for a holder of its own with a lease of ``ttl_s``,
    renewed every third of that while the turn lasts (with the reply's stream, once it has one):
    an instance that dies mid-turn holds it at most ``ttl_s`` longer. ``end`` (once; later calls do
    nothing) marks the reply stored, kept ``keep_s``, and gives the turn back. A store that fails
    here is logged and never fails the turn: its lease runs out by itself.
    """

    def __init__(self, turns: Turns, conversation_id: str, ttl_s: float) -> None:
        self.turns = turns
        self.conversation_id = conversation_id
        self.ttl_s = ttl_s
        self.holder = uuid.uuid4().hex
        self.stream_id: str | None = None
        self._renewal: asyncio.Task[None] | None = None
        self._ended = False

    async def begin(self) -> bool:
        """Take the turn (False: another holder has it). Raises what the store raises."""
        if not await self.turns.begin_turn(self.conversation_id, self.holder, self.ttl_s):
            return False
        self._renewal = asyncio.get_running_loop().create_task(self._renew())
        return True

    async def replying(self, stream_id: str) -> None:
        """The turn's reply streams as ``stream_id``: noted for every instance."""
        self.stream_id = stream_id
        await self._note(LatestReply(stream_id, done=False), self.ttl_s)

    async def end(self, keep_s: float) -> None:
        """The reply is stored (or there is none): note it kept ``keep_s``, give the turn back."""
        if self._ended:
            return
        self._ended = True
        if self._renewal is not None:
            self._renewal.cancel()  # and wait: a renewal sent after the end would take it again
            await asyncio.wait([self._renewal])
        if self.stream_id is not None:
            await self._note(LatestReply(self.stream_id, done=True), keep_s)
        try:
            await self.turns.end_turn(self.conversation_id, self.holder)
        except Exception as exc:
            log.warning(
                "ending the turn of conversation %s failed (its lease runs out): %s",
                self.conversation_id,
                exc,
            )

    async def _note(self, reply: LatestReply, keep_s: float) -> None:
        try:
            await self.turns.note_reply(self.conversation_id, reply, keep_s)
        except Exception as exc:  # only a resume elsewhere misses it: the turn goes on
            log.warning("noting the reply of conversation %s failed: %s", self.conversation_id, exc)

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(self.ttl_s / 3)
            try:
                if not await self.turns.begin_turn(self.conversation_id, self.holder, self.ttl_s):
                    log.warning(
                        "the turn of conversation %s outlived its lease (the store was away)",
                        self.conversation_id,
                    )
            except Exception as exc:  # the store is away: try again at the next third
                log.warning(
                    "renewing the turn of conversation %s failed: %s", self.conversation_id, exc
                )
                continue
            if self.stream_id is not None:
                await self._note(LatestReply(self.stream_id, done=False), self.ttl_s)
