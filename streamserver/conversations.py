"""Conversation history: the store interface and the window sent to a provider (the SQLite store
is a built-in plugin, ``builtins/sqlite_conversations.py``).

A conversation is a list of messages. A reply that was cancelled or failed is stored as the text the
user actually received, marked as such, so the history never claims what the user did not see. A
reply that called tools keeps its calls, and each ``tool`` message the client sent answers one, so
the next turn sends the upstream a valid conversation.
The store sits behind ``ConversationStore`` (a plugin can register another with
``register_conversation_stores``); what crosses it is plain data, ready for a networked store.
The embedded default is ``builtins/sqlite_conversations.py``; ``builtins/redis_conversations.py``
serves several instances. A store may also serialise the turns of a conversation and keep the
stream of its latest reply (the optional members below), so that two turns never interleave and
any instance finds the reply in progress.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeAlias

from .errors import StreamRejected
from .types import Message, ToolCall

if TYPE_CHECKING:
    from .config import Config

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


@dataclass(frozen=True, slots=True)
class LatestReply:
    """The stream of a conversation's latest reply, as a store keeps it for every instance."""

    stream_id: str
    done: bool
    """The reply is stored (its stream may still be retained for a resume)."""


class ConversationStore(Protocol):
    """Where conversations live. Every method may be called concurrently from the event loop.

    ``open``, ``health`` (``None`` or why the store does not answer, for ``/health``),
    ``distributed`` (False unless it says so: ``serve --workers`` needs a store every process
    shares) and the four turn members are optional. A store without the turn members has its
    turns serialised, and its latest replies kept, by the chat route within one process only.
    """

    async def open(self, config: Config) -> None:
        """Optional (default: nothing): called once at start-up, before any other call, with the
        whole config (a networked store reads its connection there: ``config.redis``)."""
        ...

    async def begin_turn(self, conversation_id: str, holder: str, ttl_s: float) -> bool:
        """Optional: take the conversation's turn (a prompt, its stored reply) for ``holder``;
        False while another holder has it. The holder calls it again to renew its lease; one that
        stops (its instance died) loses the turn ``ttl_s`` after its last call."""
        ...

    async def end_turn(self, conversation_id: str, holder: str) -> None:
        """Optional: ``holder``'s turn is over (nothing happens if it no longer holds it)."""
        ...

    async def note_reply(self, conversation_id: str, reply: LatestReply, keep_s: float) -> None:
        """Optional: the conversation's latest reply streams as ``reply.stream_id``; keep that
        for ``keep_s`` seconds (0: forget it now)."""
        ...

    async def latest_reply(self, conversation_id: str) -> LatestReply | None:
        """Optional: what ``note_reply`` last kept for this conversation, while it is kept."""
        ...

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


def message_extra(message: StoredMessage) -> dict[str, Any]:
    """What a message holds beyond its role, text, status and time, as JSON-able fields (empty
    for a plain message): its tool calls, the call it answers, the tool fields it was offered."""
    extra: dict[str, Any] = {}
    if message.tool_calls:
        extra["tool_calls"] = [
            {"id": c.id, "name": c.name, "arguments": c.arguments, "index": c.index}
            for c in message.tool_calls
        ]
    if message.tool_call_id is not None:
        extra["tool_call_id"] = message.tool_call_id
    if message.offered:
        extra["offered"] = message.offered
    return extra


def stored_message(
    role: Any, content: str, status: Any, created: float, extra: Mapping[str, Any]
) -> StoredMessage:
    """A message as a store reads it back: ``message_extra``'s fields made whole again."""
    calls = tuple(ToolCall(**call) for call in extra.get("tool_calls", ()))
    return StoredMessage(
        role, content, status, created, calls, extra.get("tool_call_id"), extra.get("offered", {})
    )


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
