"""Forgetting a person, opting out and in, per-chat settings and counts."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from storage.messages import log_reply
from storage.models import Message, Person
from storage.people import (
    chat_stats,
    find_person,
    forget_person,
    get_chattiness,
    person_texts,
    set_chattiness,
    set_opted_out,
)
from tests.storage.conftest import at, say


def test_forget_erases_every_text_of_the_person_everywhere(session: Session) -> None:
    alice = say(session, "alice", "my secret plan", 0, message_id="1")
    say(session, "alice", "another chat, same me", 1, chat="g2")
    bob = say(session, "bob", "replying to alice", 2, message_id="2", reply_to="1")
    assert person_texts(session, platform="telegram", external_id="alice") == ["my secret plan", "another chat, same me"]
    erased = forget_person(session, platform="telegram", external_id="alice", now=at(10))
    assert erased == 2 and person_texts(session, platform="telegram", external_id="alice") == []
    rows = session.execute(select(Message.text, Message.author_id).order_by(Message.id)).all()
    assert [tuple(row) for row in rows] == [(None, None), (None, None), ("replying to alice", bob.author_id)]
    person = session.execute(select(Person).where(Person.external_id == "alice")).scalar_one()
    assert person.display_name is None and person.opted_out and person.forgotten_at == at(10)
    assert alice.author_id == person.id


def test_forget_of_a_stranger_is_a_no_op(session: Session) -> None:
    assert forget_person(session, platform="telegram", external_id="nobody", now=at(0)) == 0


def test_forget_is_per_platform(session: Session) -> None:
    say(session, "alice", "telegram alice", 0)
    say(session, "alice", "discord alice", 1, platform="discord")
    forget_person(session, platform="discord", external_id="alice", now=at(2))
    texts = session.execute(select(Message.text).order_by(Message.id)).scalars().all()
    assert texts == ["telegram alice", None]


def test_opt_in_after_forget_lifts_it(session: Session) -> None:
    say(session, "alice", "hi", 0)
    forget_person(session, platform="telegram", external_id="alice", now=at(1))
    set_opted_out(session, platform="telegram", external_id="alice", opted_out=False)
    person = session.get(Person, find_person(session, platform="telegram", external_id="alice"))
    assert person is not None and not person.opted_out and person.forgotten_at is None


def test_chattiness_defaults_to_zero_and_is_bounded(session: Session) -> None:
    logged = say(session, "alice", "hi", 0)
    assert get_chattiness(session, platform="telegram", external_id="g1") == 0
    set_chattiness(session, chat_id=logged.chat_id, percent=35)
    assert get_chattiness(session, platform="telegram", external_id="g1") == 35
    for bad in (-1, 101):
        try:
            set_chattiness(session, chat_id=logged.chat_id, percent=bad)
        except ValueError:
            continue
        raise AssertionError(f"chattiness {bad} was accepted")


def test_stats_count_messages_replies_and_people(session: Session) -> None:
    first = say(session, "alice", "one", 0)
    say(session, "bob", "two", 1)
    log_reply(session, answers=first, text="bot", created_at=at(2))
    say(session, "carol", "elsewhere", 3, chat="g2")
    stats = chat_stats(session, chat_id=first.chat_id)
    assert (stats.messages, stats.replies, stats.people) == (3, 1, 2)
    assert (stats.all_messages, stats.all_chats) == (4, 2)
    assert session.execute(select(func.count(Person.id))).scalar_one() == 3
