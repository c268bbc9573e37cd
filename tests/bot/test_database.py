import asyncio
import threading
from datetime import UTC, datetime
from pathlib import Path

from bot.database import open_database
from storage.messages import log_incoming
from storage.models import ChatKind, Message


async def test_writes_queue_on_one_thread_in_order_and_all_land(tmp_path: Path) -> None:
    database = open_database(f"sqlite:///{tmp_path / 'chat.db'}")
    threads: set[str] = set()

    def log(number: int) -> int:
        threads.add(threading.current_thread().name)
        with database.sessions.begin() as session:
            log_incoming(session, platform="telegram", chat_id="g", chat_kind=ChatKind.GROUP, chat_title=None,
                         author_id=f"u{number % 5}", author_name=None, message_id=str(number),
                         text=f"message {number}", created_at=datetime.now(UTC))
        return number

    assert await asyncio.gather(*(database.write(log, n) for n in range(100))) == list(range(100))
    with database.reads.begin() as session:
        ids = [int(m.platform_message_id) for m in session.query(Message).order_by(Message.id)]
    database.close()
    assert ids == list(range(100))  # every write landed, in the order it was asked for
    assert len(threads) == 1 and threads.pop().startswith("db-write")  # SQLite writers never contend
