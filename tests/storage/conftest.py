"""Every storage test runs on a temporary SQLite file, and on PostgreSQL when a server is reachable.

The PostgreSQL URL comes from TEST_POSTGRES_URL (scripts/postgres.sh prints one and creates its
role and database); with REQUIRE_POSTGRES=1, as in CI, an unreachable server fails the run
instead of skipping those tests.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from bot.database import Database, open_database
from storage.messages import LoggedMessage, log_incoming
from storage.models import ChatKind

DEFAULT_POSTGRES_URL = "postgresql+psycopg://chatbot:chatbot@127.0.0.1:5432/chatbot_test"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@functools.cache
def postgres_url() -> str | None:
    url = os.environ.get("TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    engine = create_engine(url, connect_args={"connect_timeout": 2})
    try:
        with engine.connect():
            return url
    except Exception:
        if os.environ.get("REQUIRE_POSTGRES") == "1":
            raise
        return None
    finally:
        engine.dispose()


def reset_postgres(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    url = postgres_url()
    if url is None:
        pytest.skip("PostgreSQL is not reachable (run scripts/postgres.sh)")
    reset_postgres(url)
    return url


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = open_database(db_url)
    yield database
    database.close()


@pytest.fixture
def session(db: Database) -> Iterator[Session]:
    with db.sessions.begin() as session:
        yield session


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def say(session: Session, author: str, text: str, seconds: float, *, chat: str = "g1",
        message_id: str | None = None, reply_to: str | None = None, thread: str | None = None,
        platform: str = "telegram") -> LoggedMessage:
    """Log a group message by `author` at T0 + seconds; the message id defaults to a fresh one."""
    return log_incoming(
        session, platform=platform, chat_id=chat, chat_kind=ChatKind.GROUP, chat_title="Group",
        author_id=author, author_name=author.title(), message_id=message_id or f"{chat}-{seconds}",
        text=text, created_at=at(seconds), reply_to_message_id=reply_to, thread_id=thread)
