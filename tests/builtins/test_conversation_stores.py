"""The conversation stores, each test run against both: ``sqlite`` (the reference) and ``redis``
(a real redis-server). What one keeps, the other keeps the same way."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from conftest import base_config

from streamserver.builtins.redis_conversations import RedisConversationStore
from streamserver.builtins.sqlite_conversations import SQLiteConversationStore, SQLiteOptions
from streamserver.config import load_config
from streamserver.conversations import ConversationStore, LatestReply, StoredMessage
from streamserver.types import ToolCall


@pytest.fixture(params=["sqlite", "redis"])
async def store(request, tmp_path) -> AsyncIterator[ConversationStore]:
    made: ConversationStore
    if request.param == "sqlite":
        made = SQLiteConversationStore(SQLiteOptions(str(tmp_path / "c.sqlite3")))
    else:
        url = request.getfixturevalue("redis_url")
        made = RedisConversationStore()
        await made.open(load_config(base_config(redis={"url": url})))
    yield made
    await made.aclose()


async def until(check, timeout_s: float = 5.0) -> None:
    """Await ``check()`` until it is true (bounded): for what happens once a lease runs out."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "not reached in time"
        await asyncio.sleep(0.02)


async def test_a_conversation_never_written_is_none(store):
    assert await store.get("nobody") is None


async def test_every_field_of_every_message_comes_back_as_it_was_stored(store):
    call = ToolCall("call_1", "weather", '{"city": "Paris"}', 0)
    messages = [
        StoredMessage("user", "what is the weather? \U0001f326", created=1.5),
        StoredMessage("assistant", "", created=2.0, tool_calls=(call,),
                      offered={"tools": [{"type": "function"}], "tool_choice": "auto"}),
        StoredMessage("tool", '{"temp": 21}', created=3.0, tool_call_id="call_1"),
        StoredMessage("assistant", "half an emoji \ud83d", "cancelled", 4.0),
        StoredMessage("system", "be brief", "failed", 5.0),
    ]  # fmt: skip

    count = await store.append("c1", "alice", messages)
    conversation = await store.get("c1")

    assert count == 5
    assert conversation is not None
    assert (conversation.id, conversation.owner) == ("c1", "alice")
    assert conversation.messages == tuple(messages)


async def test_a_message_without_a_time_is_stamped_when_stored(store):
    await store.append("c1", None, [StoredMessage("user", "now")])
    conversation = await store.get("c1")

    assert conversation is not None
    assert conversation.messages[0].created > 1_000_000_000


async def test_the_first_append_sets_the_owner_and_later_ones_keep_it(store):
    await store.append("mine", "alice", [StoredMessage("user", "one", created=1.0)])
    count = await store.append("mine", "bob", [StoredMessage("user", "two", created=2.0)])
    await store.append("open", None, [StoredMessage("user", "anyone", created=1.0)])

    mine, shared = await store.get("mine"), await store.get("open")
    assert count == 2
    assert mine is not None and mine.owner == "alice"
    assert shared is not None and shared.owner is None  # a conversation without auth exists too


async def test_appends_at_once_each_get_their_own_count_and_none_is_lost(store):
    counts = await asyncio.gather(
        *(
            store.append("c1", None, [StoredMessage("user", f"m{i}", created=1.0)])
            for i in range(20)
        )
    )
    conversation = await store.get("c1")

    assert sorted(counts) == list(range(1, 21))
    assert conversation is not None
    assert sorted(m.content for m in conversation.messages) == sorted(f"m{i}" for i in range(20))


async def test_delete_removes_a_conversation_once(store):
    await store.append("gone", None, [StoredMessage("user", "bye", created=1.0)])

    assert await store.delete("gone") is True
    assert await store.delete("gone") is False
    assert await store.get("gone") is None
    assert await store.append("gone", None, [StoredMessage("user", "again", created=1.0)]) == 1


async def test_a_turn_has_one_holder_until_that_holder_ends_it(store):
    assert await store.begin_turn("c1", "first", 60) is True
    assert await store.begin_turn("c1", "second", 60) is False
    await store.end_turn("c1", "second")  # not its turn: nothing happens
    assert await store.begin_turn("c1", "second", 60) is False
    assert await store.begin_turn("c1", "first", 60) is True  # its holder renews it
    assert await store.begin_turn("other", "second", 60) is True  # turns are per conversation

    await store.end_turn("c1", "first")
    assert await store.begin_turn("c1", "second", 60) is True


async def test_a_turn_its_holder_never_ends_is_free_once_its_lease_runs_out(store):
    # The holder's instance died mid-turn: it neither renews nor ends it.
    assert await store.begin_turn("c1", "crashed", 0.3) is True
    assert await store.begin_turn("c1", "next", 60) is False

    await until(lambda: store.begin_turn("c1", "next", 60))
    assert await store.begin_turn("c1", "crashed", 0.3) is False  # and it is the new holder's


async def test_renewing_a_turn_extends_its_lease(store):
    assert await store.begin_turn("c1", "holder", 0.05) is True
    assert await store.begin_turn("c1", "holder", 60) is True
    await asyncio.sleep(0.1)  # past the first lease

    assert await store.begin_turn("c1", "other", 60) is False


async def test_the_latest_reply_is_kept_for_its_time_then_forgotten(store):
    assert await store.latest_reply("c1") is None
    await store.note_reply("c1", LatestReply("st_1", done=False), 60)
    assert await store.latest_reply("c1") == LatestReply("st_1", done=False)
    await store.note_reply("c1", LatestReply("st_1", done=True), 60)
    assert await store.latest_reply("c1") == LatestReply("st_1", done=True)

    await store.note_reply("c1", LatestReply("st_2", done=True), 0.2)
    await until(lambda: _forgotten(store, "c1"))
    await store.note_reply("c2", LatestReply("st_3", done=True), 60)
    await store.note_reply("c2", LatestReply("st_3", done=True), 0)
    assert await store.latest_reply("c2") is None


async def _forgotten(store, conversation_id: str) -> bool:
    return await store.latest_reply(conversation_id) is None
