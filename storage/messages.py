"""Logging what is said: incoming messages, the bot's replies, edits, deletions and retention."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import ColumnElement, Table, and_, bindparam, delete, insert, select, update
from sqlalchemy.orm import Session

from storage.db import rows_affected
from storage.models import Chat, ChatKind, Message
from storage.people import ensure_chat, ensure_person

_messages = cast(Table, Message.__table__)
# Built once: they run for every message (see storage.people).
_INSERT_MESSAGE = insert(_messages).returning(_messages.c.id)
_FIND_MESSAGE = select(_messages.c.id).where(
    _messages.c.chat_id == bindparam("chat_id"),
    _messages.c.platform_message_id == bindparam("platform_message_id"))
_RECORD_SENT = update(_messages).where(_messages.c.id == bindparam("row_id")).values(
    platform_message_id=bindparam("message_id"))


@dataclass(frozen=True, slots=True)
class LoggedMessage:
    id: int
    chat_id: int
    author_id: int | None
    # False when the author opted out: the message was counted but its text not kept.
    text_kept: bool
    # True when this platform message was already logged (a platform delivering it again).
    duplicate: bool = False
    # Its id on the platform, which the bot's reply to it records.
    platform_message_id: str | None = None


def log_incoming(session: Session, *, platform: str, chat_id: str, chat_kind: ChatKind,
                 chat_title: str | None, author_id: str, author_name: str | None,
                 message_id: str | None, text: str, created_at: datetime,
                 reply_to_message_id: str | None = None, thread_id: str | None = None) -> LoggedMessage:
    """Log a message a person wrote (ids as the platform gives them); the reply link is resolved.

    Logging the same platform message twice (a redelivery) returns the first row, marked duplicate.
    """
    chat_row = ensure_chat(session, platform=platform, external_id=chat_id, kind=chat_kind,
                           title=chat_title)
    person = ensure_person(session, platform=platform, external_id=author_id, display_name=author_name)
    existing = _resolve(session, chat_row, message_id)
    if existing is not None:
        return LoggedMessage(existing, chat_row, person.id, text_kept=not person.opted_out, duplicate=True,
                             platform_message_id=message_id)
    kept_text = None if person.opted_out else text
    row_id = session.connection().execute(_INSERT_MESSAGE, {
        "chat_id": chat_row, "author_id": person.id, "platform_message_id": message_id,
        "thread_id": thread_id, "text": kept_text, "created_at": created_at,
        "reply_to_platform_id": reply_to_message_id,
        "reply_to_id": _resolve(session, chat_row, reply_to_message_id), "from_bot": False,
    }).scalar_one()
    return LoggedMessage(row_id, chat_row, person.id, text_kept=kept_text is not None,
                         platform_message_id=message_id)


def log_reply(session: Session, *, answers: LoggedMessage, text: str, created_at: datetime,
              model_version_id: int | None = None, thread_id: str | None = None) -> int:
    """Log the bot's reply to `answers` before it is sent; `record_sent` adds the platform id."""
    return int(session.connection().execute(_INSERT_MESSAGE, {
        "chat_id": answers.chat_id, "author_id": None, "platform_message_id": None, "thread_id": thread_id,
        "text": text, "created_at": created_at, "reply_to_platform_id": answers.platform_message_id,
        "reply_to_id": answers.id, "from_bot": True, "model_version_id": model_version_id,
    }).scalar_one())


def record_sent(session: Session, *, row_id: int, message_id: str) -> None:
    """The platform accepted the bot's message and gave it this id. (A Core statement, for the hot
    path: a Message object the session already holds is not refreshed.)"""
    session.connection().execute(_RECORD_SENT, {"row_id": row_id, "message_id": message_id})


def record_edit(session: Session, *, platform: str, chat_id: str, message_id: str, text: str,
                edited_at: datetime) -> bool:
    """Replace a logged message's text (an opted-out author's stays unkept). False if unknown."""
    target = _find(platform, chat_id, message_id)
    kept = update(Message).where(target, Message.text.is_not(None)).values(text=text, edited_at=edited_at)
    if rows_affected(session.execute(kept)):
        return True
    unkept = update(Message).where(target).values(edited_at=edited_at)
    return bool(rows_affected(session.execute(unkept)))


def record_deletion(session: Session, *, platform: str, chat_id: str, message_id: str,
                    deleted_at: datetime) -> bool:
    """The message was deleted on the platform: its text goes, the row stays for counts."""
    deletion = update(Message).where(_find(platform, chat_id, message_id)).values(
        text=None, deleted_at=deleted_at)
    return bool(rows_affected(session.execute(deletion)))


def purge_older_than(session: Session, *, cutoff: datetime) -> int:
    """Delete messages written before `cutoff` (the retention period). Returns how many."""
    old = select(Message.id).where(Message.created_at < cutoff).scalar_subquery()
    session.execute(update(Message).where(Message.reply_to_id.in_(old)).values(reply_to_id=None))
    return rows_affected(session.execute(delete(Message).where(Message.created_at < cutoff)))


def _find(platform: str, chat_id: str, message_id: str) -> ColumnElement[bool]:
    chat = select(Chat.id).where(Chat.platform == platform, Chat.external_id == chat_id).scalar_subquery()
    return and_(Message.chat_id == chat, Message.platform_message_id == message_id)


def _resolve(session: Session, chat_row: int, platform_message_id: str | None) -> int | None:
    if platform_message_id is None:
        return None
    return session.connection().execute(
        _FIND_MESSAGE, {"chat_id": chat_row, "platform_message_id": platform_message_id}).scalar()
