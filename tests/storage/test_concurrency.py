"""Concurrent writers: each message in its own transaction, none lost, no lock error escapes."""

from __future__ import annotations

import threading

from sqlalchemy import func, select

from bot.database import Database
from storage.models import Message
from tests.storage.conftest import say

WRITERS = 4
PER_WRITER = 60


def test_concurrent_writers_lose_nothing(db: Database) -> None:
    errors: list[BaseException] = []
    start = threading.Barrier(WRITERS)

    def write(writer: int) -> None:
        start.wait()
        for i in range(PER_WRITER):
            try:
                with db.sessions.begin() as session:
                    # All writers share two chats and reply to each other: the same rows are hot.
                    say(session, f"w{writer}", f"writer {writer} line {i}", i, chat=f"g{i % 2}",
                        message_id=f"{writer}-{i}", reply_to=f"{(writer + 1) % WRITERS}-{i - 2}")
            except BaseException as error:  # collected and asserted below
                errors.append(error)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with db.reads.begin() as session:
        logged = session.execute(select(func.count(Message.id))).scalar_one()
        linked = session.execute(select(func.count(Message.reply_to_id))).scalar_one()
    assert logged == WRITERS * PER_WRITER
    assert linked > 0
