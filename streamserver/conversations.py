"""Conversation history: the store interface and the window sent to a provider (the SQLite store
is a built-in plugin, ``builtins/sqlite_conversations.py``).

A conversation is a list of messages. A reply that was cancelled or failed is stored as the text the
user actually received, marked as such, so the history never claims what the user did not see.
The store sits behind ``ConversationStore`` (a plugin can register another with
``register_conversation_stores``); what crosses it is plain data, ready for a networked store.
The embedded default is ``builtins/sqlite_conversations.py``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, TypeAlias

from .errors import StreamRejected
from .types import Message

Status: TypeAlias = Literal["complete", "cancelled", "failed"]
CONVERSATION_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
"""What a conversation id is (the OpenAPI document says the same)."""


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """One message of a conversation as stored."""

    role: Literal["system", "user", "assistant"]
    content: str
    status: Status = "complete"
    created: float = 0.0


@dataclass(frozen=True, slots=True)
class Conversation:
    """A conversation's owner (the API key id that created it, if auth is on) and messages."""

    id: str
    owner: str | None
    messages: tuple[StoredMessage, ...]


class ConversationStore(Protocol):
    """Where conversations live. Every method may be called concurrently from the event loop."""

    async def get(self, conversation_id: str) -> Conversation | None:
        """The conversation, or ``None`` if it does not exist."""
        ...

    async def append(
        self, conversation_id: str, owner: str | None, messages: Sequence[StoredMessage]
    ) -> int:
        """Add messages (creating the conversation, owned by ``owner``); returns the new message count."""
        ...

    async def delete(self, conversation_id: str) -> bool:
        """Remove a conversation; ``False`` if it did not exist."""
        ...

    async def aclose(self) -> None:
        """Flush and close (called at shutdown)."""
        ...


def check_id(conversation_id: str) -> str:
    """A conversation id is 1-64 characters of ``A-Z a-z 0-9 _ -``; anything else is a 400."""
    if not CONVERSATION_ID.fullmatch(conversation_id):
        raise StreamRejected(
            400,
            "invalid_conversation_id",
            "a conversation id is 1 to 64 characters of letters, digits, _ and -",
        )
    return conversation_id


def window(
    history: Sequence[StoredMessage], max_messages: int, max_chars: int
) -> tuple[Message, ...]:
    """The most recent messages that fit ``max_messages`` and ``max_chars`` (the newest always goes).

    Older messages stay stored; they are only left out of what the provider is sent.
    """
    kept: list[Message] = []
    chars = 0
    for stored in reversed(history):
        if kept and (len(kept) >= max_messages or chars + len(stored.content) > max_chars):
            break
        if not stored.content and stored.role == "assistant":
            continue  # a reply cancelled before any text: nothing the user saw
        kept.append(Message(stored.role, stored.content))
        chars += len(stored.content)
    return tuple(reversed(kept))
