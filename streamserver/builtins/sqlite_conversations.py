"""The embedded default conversation store: SQLite in WAL mode, off the event loop; its turns
and latest replies are this process's (``LocalTurns``)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import sqlite3

from ..conversation_turns import LocalTurns
from ..conversations import Conversation, StoredMessage, message_extra, stored_message
from ..hookspecs import Register, hookimpl


@dataclass(frozen=True, slots=True)
class SQLiteOptions:
    """``[conversations.sqlite]`` options."""

    path: str = "conversations.sqlite3"
    """Database file (relative to the working directory); ``:memory:`` keeps nothing across restarts."""


class SQLiteConversationStore(LocalTurns):
    """SQLite in WAL mode, on one worker thread of its own so the event loop never waits on disk.
    One process uses the file, so its turns are serialised in that process (``LocalTurns``)."""

    def __init__(self, options: SQLiteOptions) -> None:
        super().__init__()
        self.path = options.path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="streamserver-sqlite")
        self._db: sqlite3.Connection | None = None

    async def _run(self, work: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, work, *args)

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            import sqlite3  # on first use: about 1 MiB a server without chat need not carry

            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(
                """
                CREATE TABLE IF NOT EXISTS conversations (
                    id TEXT PRIMARY KEY, owner TEXT, created REAL NOT NULL);
                CREATE TABLE IF NOT EXISTS messages (
                    conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
                    seq INTEGER NOT NULL, role TEXT NOT NULL, content TEXT NOT NULL,
                    status TEXT NOT NULL, created REAL NOT NULL, extra TEXT,
                    PRIMARY KEY (conversation_id, seq));
                """
            )
            columns = {row[1] for row in db.execute("PRAGMA table_info(messages)")}
            if "extra" not in columns:  # a database from before tool calls
                db.execute("ALTER TABLE messages ADD COLUMN extra TEXT")
            db.execute("PRAGMA foreign_keys=ON")
            self._db = db
        return self._db

    async def get(self, conversation_id: str) -> Conversation | None:
        """See ``ConversationStore.get``."""
        return await self._run(self._get, conversation_id)  # type: ignore[no-any-return]

    def _get(self, conversation_id: str) -> Conversation | None:
        db = self._connect()
        row = db.execute(
            "SELECT owner FROM conversations WHERE id = ?", (conversation_id,)
        ).fetchone()
        if row is None:
            return None
        messages = db.execute(
            "SELECT role, content, status, created, extra FROM messages WHERE conversation_id = ? ORDER BY seq",
            (conversation_id,),
        ).fetchall()
        return Conversation(
            conversation_id,
            row[0],
            tuple(stored_message(m[0], _text(m[1]), m[2], m[3], _extra(m[4])) for m in messages),
        )

    async def append(
        self, conversation_id: str, owner: str | None, messages: Sequence[StoredMessage]
    ) -> int:
        """See ``ConversationStore.append``."""
        return await self._run(self._append, conversation_id, owner, tuple(messages))  # type: ignore[no-any-return]

    def _append(
        self, conversation_id: str, owner: str | None, messages: tuple[StoredMessage, ...]
    ) -> int:
        db = self._connect()
        with db:
            db.execute("BEGIN IMMEDIATE")
            db.execute(
                "INSERT OR IGNORE INTO conversations (id, owner, created) VALUES (?, ?, ?)",
                (conversation_id, owner, time.time()),
            )
            (count,) = db.execute(
                "SELECT COUNT(*) FROM messages WHERE conversation_id = ?", (conversation_id,)
            ).fetchone()
            rows = [
                (conversation_id, count + i, m.role, _storable(m.content), m.status,
                 m.created or time.time(), _storable_extra(m))
                for i, m in enumerate(messages)
            ]  # fmt: skip
            db.executemany(
                "INSERT INTO messages (conversation_id, seq, role, content, status, created, extra)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
        return int(count) + len(messages)

    async def delete(self, conversation_id: str) -> bool:
        """See ``ConversationStore.delete``."""
        return await self._run(self._delete, conversation_id)  # type: ignore[no-any-return]

    def _delete(self, conversation_id: str) -> bool:
        db = self._connect()
        with db:
            db.execute("DELETE FROM messages WHERE conversation_id = ?", (conversation_id,))
            return (
                db.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,)).rowcount
                > 0
            )

    async def aclose(self) -> None:
        """Checkpoint and close the database, then stop the worker thread."""
        if self._db is not None:
            await self._run(self._close)
        self._executor.shutdown(wait=True)

    def _close(self) -> None:
        assert self._db is not None
        self._db.close()
        self._db = None


def _storable(text: str) -> str | bytes:
    """``text`` as SQLite can hold it: a reply from a broken upstream may carry half an emoji (a
    lone surrogate), which UTF-8 cannot encode. That text goes in as a BLOB of its UTF-8 with the
    surrogate kept (``surrogatepass``), so it is stored losslessly instead of failing the turn;
    valid text, all of it in practice, stays TEXT."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")
    return text


def _storable_extra(message: StoredMessage) -> str | None:
    """A message's tool calls, answered call id and offered tool fields as JSON (``None`` for a
    plain message)."""
    extra = message_extra(message)
    return json.dumps(extra) if extra else None  # ASCII: half an emoji is escaped, not lost


def _extra(extra: str | None) -> dict[str, Any]:
    """The fields ``_storable_extra`` stored."""
    return json.loads(extra) if extra else {}


def _text(content: str | bytes) -> str:
    """A stored message's text, whichever way ``_storable`` stored it."""
    return content.decode("utf-8", "surrogatepass") if isinstance(content, bytes) else content


@hookimpl
def register_conversation_stores(register: Register) -> None:
    """The embedded default store."""
    register(
        "sqlite",
        SQLiteConversationStore,
        options=SQLiteOptions,
        description="SQLite file in WAL mode",
    )
