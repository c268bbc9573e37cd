import asyncio
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import event
from sqlalchemy.orm import Session

from bot.database import open_database
from storage.messages import log_incoming
from storage.models import ChatKind, Message


def _log(session: Session, number: int, threads: set[str] | None = None) -> int:
    if threads is not None:
        threads.add(threading.current_thread().name)
    log_incoming(session, platform="telegram", chat_id="g", chat_kind=ChatKind.GROUP, chat_title=None,
                 author_id=f"u{number % 5}", author_name=None, message_id=str(number),
                 text=f"message {number}", created_at=datetime.now(UTC))
    return number


def _logged_ids(database_url: str) -> list[int]:
    database = open_database(database_url, migrate=False)
    with database.reads.begin() as session:
        ids = [int(m.platform_message_id) for m in session.query(Message).order_by(Message.id)]
    database.close()
    return ids


async def test_writes_queue_on_one_thread_in_order_and_all_land(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'chat.db'}"
    database = open_database(url)
    threads: set[str] = set()
    commits = 0

    @event.listens_for(database.engine, "commit")
    def count(_connection: object) -> None:
        nonlocal commits
        commits += 1

    assert await asyncio.gather(*(database.write(_log, n, threads) for n in range(100))) == list(range(100))
    database.close()
    assert _logged_ids(url) == list(range(100))  # every write landed, in the order it was asked for
    assert len(threads) == 1 and threads.pop().startswith("db-write")  # SQLite writers never contend
    assert commits < 100  # writes that queued up together shared a transaction


async def test_a_failing_write_fails_alone_and_its_group_still_lands(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'chat.db'}"
    database = open_database(url)

    def broken(session: Session) -> None:
        _log(session, 1000)
        raise ValueError("this write is broken")

    writes = [database.write(_log, n) for n in range(10)]
    writes.insert(5, database.write(broken))
    results = await asyncio.gather(*writes, return_exceptions=True)
    database.close()
    assert isinstance(results[5], ValueError)
    assert [r for i, r in enumerate(results) if i != 5] == list(range(10))
    assert _logged_ids(url) == list(range(10))  # the broken write's own insert was rolled back


async def test_a_cancelled_caller_still_gets_its_write(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'chat.db'}"
    database = open_database(url)
    gate = threading.Event()
    blocker = asyncio.ensure_future(database.write(lambda _session: gate.wait(5)))
    waiting = asyncio.ensure_future(database.write(_log, 7))
    await asyncio.sleep(0.05)
    waiting.cancel()
    gate.set()
    await blocker
    with pytest.raises(asyncio.CancelledError):
        await waiting
    database.close()  # writes everything submitted before it returns
    assert _logged_ids(url) == [7]
