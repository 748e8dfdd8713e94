"""Conversation history: the store interface and the window sent to a provider (the SQLite store
is a built-in plugin, ``builtins/sqlite_conversations.py``).

A conversation is a list of messages. A reply that was cancelled or failed is stored as the text the
user actually received, marked as such, so the history never claims what the user did not see. A
reply that called tools keeps its calls, and each ``tool`` message the client sent answers one, so
the next turn sends the upstream a valid conversation.
The store sits behind ``ConversationStore`` (a plugin can register another with
``register_conversation_stores``); what crosses it is plain data, ready for a networked store.
The embedded default is ``builtins/sqlite_conversations.py``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeAlias

from .errors import StreamRejected
from .types import Message, ToolCall

Status: TypeAlias = Literal["complete", "cancelled", "failed"]
CONVERSATION_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
"""What a conversation id is (the OpenAPI document says the same)."""


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """One message of a conversation as stored."""

    role: Literal["system", "user", "assistant", "tool"]
    content: str
    status: Status = "complete"
    created: float = 0.0
    tool_calls: tuple[ToolCall, ...] = ()
    """An assistant reply's tool calls (only a reply that completed keeps them)."""
    tool_call_id: str | None = None
    """A ``tool`` message: the call it answers."""
    offered: Mapping[str, Any] = field(default_factory=dict)
    """A reply with calls: the tool fields of its turn (``tools``, ``tool_choice``, ...), which the
    turn's continuation sends again once the results are in."""


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

    Older messages stay stored; they are only left out of what the provider is sent. The window
    is a valid conversation for any upstream: a reply that called tools and the results that
    answer it go in or out together (the newest together too, over the budget if need be), and
    a call no result answered (the user moved on) goes as the reply's text only.
    """
    kept: list[Message] = []
    chars = 0
    end = len(history)
    while end > 0:
        start = end - 1
        while start > 0 and history[start].role == "tool":
            start -= 1  # a run of results goes with the reply whose calls they answer
        unit = [m for m in history[start:end] if m.content or m.role != "assistant" or m.tool_calls]
        size = sum(_size(m) for m in unit)
        if kept and (len(kept) + len(unit) > max_messages or chars + size > max_chars):
            break
        kept[:0] = [Message(m.role, m.content, m.tool_calls, m.tool_call_id) for m in unit]
        chars += size
        end = start
    while kept and kept[0].role == "tool":
        del kept[0]  # results whose call is not in the window (the history's very start)
    return tuple(_answered(kept))


def _size(message: StoredMessage) -> int:
    """What a message counts toward ``max_chars``: its text and its calls' arguments."""
    return len(message.content) + sum(len(c.arguments) for c in message.tool_calls)


def _answered(messages: list[Message]) -> list[Message]:
    """``messages`` with each assistant's calls kept only if tool messages answer them all."""
    out: list[Message] = []
    for i, message in enumerate(messages):
        if message.tool_calls:
            following = []
            for later in messages[i + 1 :]:
                if later.role != "tool":
                    break
                following.append(later.tool_call_id)
            if {call.id for call in message.tool_calls} - set(following):
                if not message.text:
                    continue
                message = Message(message.role, message.content)
        elif message.role == "tool" and (not out or not _answers(out, message)):
            continue  # its call went (unanswered siblings): the result is orphaned too
        out.append(message)
    return out


def _answers(before: list[Message], result: Message) -> bool:
    """Whether ``result`` answers a call of the assistant message its tool run follows."""
    for message in reversed(before):
        if message.role != "tool":
            return any(call.id == result.tool_call_id for call in message.tool_calls)
    return False


def last_reply(history: Sequence[StoredMessage]) -> StoredMessage | None:
    """The last assistant message, past the tool results that follow it."""
    for stored in reversed(history):
        if stored.role == "assistant":
            return stored
        if stored.role != "tool":
            return None
    return None


def pending_calls(history: Sequence[StoredMessage]) -> list[ToolCall]:
    """The calls of the last reply that no ``tool`` message has answered yet (the turn waits)."""
    answered: set[str | None] = set()
    for stored in reversed(history):
        if stored.role == "tool":
            answered.add(stored.tool_call_id)
            continue
        if stored.role == "assistant":
            return [call for call in stored.tool_calls if call.id not in answered]
        return []
    return []


def openai_message(message: Message) -> dict[str, Any]:
    """``message`` in the chat completions shape every route's ``messages`` field takes."""
    fields: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        fields["content"] = message.content or None
        fields["tool_calls"] = [call.openai() for call in message.tool_calls]
    if message.tool_call_id is not None:
        fields["tool_call_id"] = message.tool_call_id
    return fields
