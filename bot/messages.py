"""The message types every adapter speaks: what came in, and the reply to send back."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

ChatKind = Literal["private", "group", "channel"]


@dataclass(frozen=True)
class IncomingMessage:
    platform: str
    chat_id: str
    chat_kind: ChatKind
    user_id: str
    user_name: str
    # With any mention of the bot already removed by the adapter.
    text: str
    message_id: str | None = None
    reply_to_id: str | None = None
    thread_id: str | None = None
    mentions_bot: bool = False
    replies_to_bot: bool = False
    chat_title: str | None = None
    # Telegram's anonymous group admins post as the chat itself.
    sender_is_chat: bool = False
    sent_at: datetime = field(default_factory=lambda: datetime.now(UTC))


# (platform, chat id, thread id): a thread is a conversation of its own, as the miner sees it.
Conversation = tuple[str, str, str | None]


@dataclass(frozen=True)
class Reply:
    text: str
    # The logged row of this reply; the adapter reports the platform's id for it once sent.
    row_id: int | None = None
    # Set when the reply is its conversation's last turn (bot/recent_turns.py).
    conversation: Conversation | None = None


def storable(text: str | None) -> str | None:
    """text as UTF-8 can hold it: a lone surrogate (JSON's escape of half an emoji, as a name cut
    short may carry) becomes "?", where a database would refuse the whole row."""
    return text.encode("utf-8", "replace").decode("utf-8") if text is not None else None


def split_text(text: str, limit: int) -> list[str]:
    """Cut a reply into pieces of at most `limit` characters, at a line break or space when possible."""
    if limit < 1:
        raise ValueError("limit must be positive")
    pieces: list[str] = []
    rest = text
    while len(rest) > limit:
        if rest[limit].isspace():
            cut = limit
        else:
            cut = max(rest.rfind("\n", 0, limit), rest.rfind(" ", 0, limit))
            if cut < limit // 2:  # no break in the second half of the window: cut the word
                cut = limit
        if piece := rest[:cut].rstrip():
            pieces.append(piece)
        rest = rest[cut:].lstrip()
    if rest or not pieces:
        pieces.append(rest)
    return pieces
