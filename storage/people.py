"""People and chats as the platforms name them: find-or-create, opt-out, forget, per-chat settings."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Select, Table, bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from storage.db import rows_affected
from storage.models import Chat, ChatKind, Message, Person


@dataclass(frozen=True, slots=True)
class PersonRef:
    id: int
    opted_out: bool


_people = cast(Table, Person.__table__)
_chats = cast(Table, Chat.__table__)
# Built once: logging runs these for every message, and building a statement costs more than
# running it on SQLite.
_FIND_PERSON = select(_people.c.id, _people.c.opted_out, _people.c.display_name).where(
    _people.c.platform == bindparam("platform"), _people.c.external_id == bindparam("external_id"))
_FIND_CHAT = select(_chats.c.id).where(
    _chats.c.platform == bindparam("platform"), _chats.c.external_id == bindparam("external_id"))


def ensure_person(session: Session, *, platform: str, external_id: str,
                  display_name: str | None) -> PersonRef:
    """The person's row, created on first sight; the display name follows renames unless opted out."""
    key = {"platform": platform, "external_id": external_id}
    row = session.connection().execute(_FIND_PERSON, key).first()
    if row is None:
        person_id = _insert_once(session, _people, {**key, "display_name": display_name}, _FIND_PERSON)
        return PersonRef(person_id, opted_out=False)
    if not row.opted_out and display_name and row.display_name != display_name:
        session.execute(update(Person).where(Person.id == row.id).values(display_name=display_name))
    return PersonRef(row.id, row.opted_out)


def ensure_chat(session: Session, *, platform: str, external_id: str, kind: ChatKind,
                title: str | None) -> int:
    """The chat's row id, created on first sight."""
    key = {"platform": platform, "external_id": external_id}
    chat_id = session.connection().execute(_FIND_CHAT, key).scalar()
    if chat_id is not None:
        return int(chat_id)
    return _insert_once(session, _chats, {**key, "kind": kind, "title": title}, _FIND_CHAT)


def _insert_once(session: Session, table: Table, values: dict[str, Any], lookup: Select[Any]) -> int:
    # Another process may insert the same row between our select and insert (PostgreSQL); the
    # savepoint lets us lose that race gracefully and read the winner's row.
    try:
        with session.begin_nested():
            return int(session.connection().execute(
                insert(table).returning(table.c.id), values).scalar_one())
    except IntegrityError:
        key = {"platform": values["platform"], "external_id": values["external_id"]}
        return int(session.connection().execute(lookup, key).scalar_one())


def find_person(session: Session, *, platform: str, external_id: str) -> int | None:
    return session.execute(
        select(Person.id).where(Person.platform == platform, Person.external_id == external_id)
    ).scalar()


def set_opted_out(session: Session, *, platform: str, external_id: str, opted_out: bool) -> None:
    """Opting out stops keeping the person's words from now on; opting in lifts a forget too."""
    person = ensure_person(session, platform=platform, external_id=external_id, display_name=None)
    values: dict[str, object] = {"opted_out": opted_out}
    if not opted_out:
        values["forgotten_at"] = None
    session.execute(update(Person).where(Person.id == person.id).values(**values))


def person_texts(session: Session, *, platform: str, external_id: str) -> list[str]:
    """The texts of the person's messages that are kept: what forget_person would erase."""
    person_id = find_person(session, platform=platform, external_id=external_id)
    if person_id is None:
        return []
    return [text for text in session.execute(select(Message.text).where(Message.author_id == person_id)
                                             .order_by(Message.id)).scalars()
            if text is not None]


def forget_person(session: Session, *, platform: str, external_id: str, now: datetime) -> int:
    """Erase every message the person wrote, and their name; they stay opted out. Returns the count.

    The text and the author link are deleted, not hidden. An empty, authorless row stays in
    each place: it keeps the conversation's shape, so mining cannot glue the messages around it
    into a pair that never happened.
    """
    person_id = find_person(session, platform=platform, external_id=external_id)
    if person_id is None:
        return 0
    erased = rows_affected(session.execute(
        update(Message).where(Message.author_id == person_id)
        .values(text=None, author_id=None, deleted_at=func.coalesce(Message.deleted_at, now))
    ))
    session.execute(update(Person).where(Person.id == person_id)
                    .values(display_name=None, opted_out=True, forgotten_at=now))
    return erased


def get_chattiness(session: Session, *, platform: str, external_id: str) -> int:
    value = session.execute(
        select(Chat.chattiness).where(Chat.platform == platform, Chat.external_id == external_id)
    ).scalar()
    return value or 0


def set_chattiness(session: Session, *, chat_id: int, percent: int) -> None:
    if not 0 <= percent <= 100:
        raise ValueError(f"chattiness must be 0–100, got {percent}")
    session.execute(update(Chat).where(Chat.id == chat_id).values(chattiness=percent))


@dataclass(frozen=True, slots=True)
class ChatStats:
    messages: int
    replies: int
    people: int
    all_messages: int
    all_chats: int


def chat_stats(session: Session, *, chat_id: int) -> ChatStats:
    """Counts for `/stats`: this chat's messages, bot replies and speakers, and the store's totals."""
    in_chat = Message.chat_id == chat_id
    messages, replies, people = session.execute(
        select(func.count(Message.id),
               func.count(Message.id).filter(Message.from_bot),
               func.count(Message.author_id.distinct())).where(in_chat)
    ).one()
    all_messages = session.execute(select(func.count(Message.id))).scalar_one()
    all_chats = session.execute(select(func.count(Chat.id))).scalar_one()
    return ChatStats(messages, replies, people, all_messages, all_chats)
