"""The ``redis`` conversation store: history, turns and the reply in progress shared by every
instance (``[conversations] store = "redis"``, with ``[redis]``).

The keys of one conversation share a hash tag (one Redis Cluster slot)::

    <prefix>:{conv_<id>}:meta       hash: owner (JSON: a key id or null), created
    <prefix>:{conv_<id>}:messages   list: one JSON object per message, oldest first
    <prefix>:{conv_<id>}:turn       the holder of the turn in progress (expires with its lease)
    <prefix>:{conv_<id>}:reply      the latest reply's stream (JSON; expires)

A message keeps what the SQLite store keeps (role, content, status, created, tool calls, the call
it answers, the tool fields offered), JSON with its non-ASCII escaped, so half an emoji from a
broken upstream is kept too. An append is one Lua script (the conversation created with its
first owner, then the messages pushed): atomic, and it returns the new count. Every call goes
through the app's shared connection (``redis_connection``), so each is bounded by
``[redis] timeout_s`` and a failure is ``StoreUnavailable``. History never expires: run Redis with
AOF (``appendonly yes``) when conversations must outlive a Redis restart.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..conversations import (
    Conversation,
    LatestReply,
    StoredMessage,
    message_extra,
    stored_message,
)
from ..errors import ConfigError
from ..hookspecs import Register, hookimpl
from .redis_extra import require_redis

if TYPE_CHECKING:
    from redis.commands.core import AsyncScript

    from ..config import Config
    from .redis_connection import RedisConnection

_APPEND = """
redis.call('HSETNX', KEYS[1], 'owner', ARGV[1])
redis.call('HSETNX', KEYS[1], 'created', ARGV[2])
local count = redis.call('LLEN', KEYS[2])
for i = 3, #ARGV do
    count = redis.call('RPUSH', KEYS[2], ARGV[i])
end
return count
"""
"""KEYS: meta, messages; ARGV: owner (JSON), created, then each message: the new count."""

_BEGIN_TURN = """
local held = redis.call('GET', KEYS[1])
if held and held ~= ARGV[1] then
    return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""
"""KEYS: turn; ARGV: holder, lease (ms): 1 when the holder has (or renewed) the turn."""

_END_TURN = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""
"""KEYS: turn; ARGV: holder: the turn is freed only by its holder."""


class RedisConversationStore:
    """Conversations in Redis: every instance reads and appends the same history, and takes
    turns through the same lock."""

    distributed = True
    """Shared by every instance (``serve --workers`` accepts it)."""

    def __init__(self, options: object = None) -> None:
        require_redis()  # an extra: say so at start-up
        self._connection: RedisConnection | None = None
        self._loop_id = 0
        self._scripts: dict[str, AsyncScript] = {}

    async def open(self, config: Config) -> None:
        """Take the app's shared connection to ``config.redis`` (nothing is sent yet)."""
        from . import redis_connection  # redis-py is an extra: imported by the store that needs it

        self._loop_id = id(asyncio.get_running_loop())
        try:
            connection = redis_connection.acquire(config.redis, self._loop_id)
        except ConfigError as exc:  # url_env names a variable that is not set
            raise exc.in_file(config.file) from None
        self._scripts = {
            name: connection.client.register_script(source)
            for name, source in (("append", _APPEND), ("begin", _BEGIN_TURN), ("end", _END_TURN))
        }
        self._connection = connection

    @property
    def connection(self) -> RedisConnection:
        if self._connection is None:
            raise RuntimeError("the redis conversation store is used before open()")
        return self._connection

    def _key(self, conversation_id: str, suffix: str) -> str:
        return self.connection.tagged(f"conv_{conversation_id}", suffix)

    async def get(self, conversation_id: str) -> Conversation | None:
        """See ``ConversationStore.get``."""
        meta, messages = self._key(conversation_id, "meta"), self._key(conversation_id, "messages")

        async def read() -> list[Any]:
            async with self.connection.client.pipeline(transaction=True) as pipe:
                pipe.hget(meta, "owner")
                pipe.lrange(messages, 0, -1)
                return await pipe.execute()

        owner, items = await self.connection.call(read)
        if owner is None:
            return None
        return Conversation(conversation_id, json.loads(owner), tuple(map(_message, items)))

    async def append(
        self, conversation_id: str, owner: str | None, messages: Sequence[StoredMessage]
    ) -> int:
        """See ``ConversationStore.append``: the first append's ``owner`` stays the owner."""
        keys = [self._key(conversation_id, "meta"), self._key(conversation_id, "messages")]
        now = time.time()
        args = [json.dumps(owner), repr(now), *(_stored(m, now) for m in messages)]
        append = self._scripts["append"]
        count = await self.connection.call(lambda: append(keys=keys, args=args))
        return int(count)

    async def delete(self, conversation_id: str) -> bool:
        """See ``ConversationStore.delete`` (the history only: a reply in progress goes on)."""
        meta, messages = self._key(conversation_id, "meta"), self._key(conversation_id, "messages")

        async def remove() -> list[Any]:
            async with self.connection.client.pipeline(transaction=True) as pipe:
                pipe.delete(meta)
                pipe.delete(messages)
                return await pipe.execute()

        removed, _ = await self.connection.call(remove)
        return bool(removed)

    async def begin_turn(self, conversation_id: str, holder: str, ttl_s: float) -> bool:
        """See ``ConversationStore.begin_turn``: a key holding the holder, expiring with the lease."""
        keys, args = [self._key(conversation_id, "turn")], [holder, str(_ms(ttl_s))]
        begin = self._scripts["begin"]
        return bool(await self.connection.call(lambda: begin(keys=keys, args=args)))

    async def end_turn(self, conversation_id: str, holder: str) -> None:
        """See ``ConversationStore.end_turn``."""
        keys, args = [self._key(conversation_id, "turn")], [holder]
        end = self._scripts["end"]
        await self.connection.call(lambda: end(keys=keys, args=args))

    async def note_reply(self, conversation_id: str, reply: LatestReply, keep_s: float) -> None:
        """See ``ConversationStore.note_reply``: a key that expires after ``keep_s``."""
        key, client = self._key(conversation_id, "reply"), self.connection.client
        if keep_s <= 0:
            await self.connection.call(lambda: client.delete(key))
            return
        value = json.dumps({"stream_id": reply.stream_id, "done": reply.done})
        await self.connection.call(lambda: client.set(key, value, px=_ms(keep_s)))

    async def latest_reply(self, conversation_id: str) -> LatestReply | None:
        """See ``ConversationStore.latest_reply``."""
        key, client = self._key(conversation_id, "reply"), self.connection.client
        value = await self.connection.call(lambda: client.get(key))
        if value is None:
            return None
        fields = json.loads(value)
        return LatestReply(fields["stream_id"], bool(fields["done"]))

    async def health(self) -> str | None:
        """``None`` when Redis answers; else why not (``/health``)."""
        return None if self._connection is None else await self._connection.health()

    async def aclose(self) -> None:
        """Give the shared connection back (the last store that holds it closes it)."""
        if self._connection is not None:
            from .redis_connection import release

            connection, self._connection = self._connection, None
            await release(connection, self._loop_id)


def _stored(message: StoredMessage, now: float) -> str:
    """One message as the list holds it."""
    fields = {"role": message.role, "content": message.content, "status": message.status,
              "created": message.created or now, **message_extra(message)}  # fmt: skip
    return json.dumps(fields)  # ASCII: a lone surrogate is escaped, and read back whole


def _message(item: bytes) -> StoredMessage:
    fields = json.loads(item)
    return stored_message(
        fields.pop("role"), fields.pop("content"), fields.pop("status"), fields.pop("created"),
        fields,
    )  # fmt: skip


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


@hookimpl
def register_conversation_stores(register: Register) -> None:
    """The store several instances share."""
    register(
        "redis",
        RedisConversationStore,
        description="Redis (or Valkey), shared by every instance; needs [redis]",
    )
