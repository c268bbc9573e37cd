"""Logging messages and replies, reply links, edits, deletions, opt-out and retention."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.messages import (
    log_incoming,
    log_reply,
    purge_older_than,
    record_deletion,
    record_edit,
    record_sent,
)
from storage.models import ChatKind, Message, Person
from storage.people import set_opted_out
from tests.storage.conftest import T0, at, say


def row(session: Session, row_id: int) -> Message:
    message = session.get(Message, row_id, populate_existing=True)  # as stored, not as first loaded
    assert message is not None
    return message


def test_logs_text_and_ids_exactly(session: Session) -> None:
    text = "안녕하세요, 반가워요! 👋🏽 mixed 한국어 and English\n두 줄"
    logged = say(session, "alice", text, 0, message_id="42", thread="t9")
    message = row(session, logged.id)
    assert (message.text, message.platform_message_id, message.thread_id) == (text, "42", "t9")
    assert message.created_at == T0 and message.created_at.tzinfo is not None
    assert not message.from_bot and logged.text_kept


def test_same_person_and_chat_are_reused(session: Session) -> None:
    first = say(session, "alice", "one", 0)
    second = say(session, "alice", "two", 1)
    other_chat = say(session, "alice", "three", 2, chat="g2")
    assert first.author_id == second.author_id == other_chat.author_id
    assert first.chat_id == second.chat_id != other_chat.chat_id


def test_reply_link_is_resolved_within_the_chat(session: Session) -> None:
    question = say(session, "alice", "question?", 0, message_id="1")
    answer = say(session, "bob", "answer", 5, message_id="2", reply_to="1")
    elsewhere = say(session, "bob", "same id, other chat", 6, chat="g2", message_id="3", reply_to="1")
    unknown = say(session, "bob", "replying to the unseen", 7, message_id="4", reply_to="999")
    assert row(session, answer.id).reply_to_id == question.id
    assert row(session, elsewhere.id).reply_to_id is None
    unresolved = row(session, unknown.id)
    assert (unresolved.reply_to_id, unresolved.reply_to_platform_id) == (None, "999")


def test_bot_reply_is_linked_and_gets_its_platform_id_once_sent(session: Session) -> None:
    question = say(session, "alice", "hi bot", 0, message_id="10")
    reply_id = log_reply(session, answers=question, text="hello!", created_at=at(1), model_version_id=None)
    reply = row(session, reply_id)
    assert reply.from_bot and reply.author_id is None
    assert (reply.reply_to_id, reply.reply_to_platform_id) == (question.id, "10")
    assert reply.platform_message_id is None
    record_sent(session, row_id=reply_id, message_id="11")
    assert row(session, reply_id).platform_message_id == "11"


def test_edit_replaces_text_and_unknown_edit_is_reported(session: Session) -> None:
    logged = say(session, "alice", "teh typo", 0, message_id="5")
    assert record_edit(session, platform="telegram", chat_id="g1", message_id="5", text="the typo",
                       edited_at=at(3))
    message = row(session, logged.id)
    assert (message.text, message.edited_at) == ("the typo", at(3))
    assert not record_edit(session, platform="telegram", chat_id="g1", message_id="404", text="x",
                           edited_at=at(4))


def test_deletion_drops_the_text_and_keeps_the_row(session: Session) -> None:
    logged = say(session, "alice", "oops, wrong chat", 0, message_id="6")
    assert record_deletion(session, platform="telegram", chat_id="g1", message_id="6", deleted_at=at(2))
    message = row(session, logged.id)
    assert (message.text, message.deleted_at) == (None, at(2))
    assert not record_deletion(session, platform="discord", chat_id="g1", message_id="6", deleted_at=at(2))


def test_opted_out_person_is_counted_but_their_words_are_not_kept(session: Session) -> None:
    say(session, "carol", "before", 0)
    set_opted_out(session, platform="telegram", external_id="carol", opted_out=True)
    after = say(session, "carol", "after opting out", 1, message_id="7")
    assert not after.text_kept and row(session, after.id).text is None
    record_edit(session, platform="telegram", chat_id="g1", message_id="7", text="edited", edited_at=at(2))
    assert row(session, after.id).text is None
    set_opted_out(session, platform="telegram", external_id="carol", opted_out=False)
    assert say(session, "carol", "back again", 3).text_kept


def test_display_name_follows_renames(session: Session) -> None:
    say(session, "dave", "hi", 0)
    log_incoming(session, platform="telegram", chat_id="g1", chat_kind=ChatKind.GROUP, chat_title=None,
                 author_id="dave", author_name="David", message_id="r", text="renamed", created_at=at(1))
    name = session.execute(select(Person.display_name).where(Person.external_id == "dave")).scalar_one()
    assert name == "David"


def test_purge_deletes_only_older_messages_and_unlinks_replies(session: Session) -> None:
    old = say(session, "alice", "old", 0, message_id="1")
    new = say(session, "bob", "new reply to old", 100, message_id="2", reply_to="1")
    assert purge_older_than(session, cutoff=at(50)) == 1
    assert session.get(Message, old.id) is None
    assert row(session, new.id).reply_to_id is None


def test_a_redelivered_message_is_logged_once(session: Session) -> None:
    first = say(session, "alice", "hello", 0, message_id="77")
    again = say(session, "alice", "hello", 0, message_id="77")
    assert not first.duplicate and again.duplicate and again.id == first.id
    assert session.execute(select(Message.id)).scalars().all() == [first.id]
