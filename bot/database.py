"""The bot's database: open it from the settings, migrate it, and the mining rules it is mined with."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Concatenate, ParamSpec, TypeVar
from weakref import WeakKeyDictionary

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

import migrations
from bot.loop_bridge import LoopBridge
from bot.settings import Settings
from storage.db import make_engine, make_session_factory, parse_url
from storage.filters import TextFilter, read_blocklist
from storage.group_commit import GroupCommitWriter
from storage.messages import purge_older_than
from storage.mining import MiningRules

MIGRATIONS_DIR = Path(migrations.__file__).parent
P = ParamSpec("P")
T = TypeVar("T")


@dataclass(frozen=True)
class Database:
    engine: Engine
    # Short write transactions (logging, commands)...
    sessions: sessionmaker[Session]
    # ...and long reads that must not hold the SQLite write lock (mining, stats).
    reads: sessionmaker[Session]
    # The hot path's writes (logging every message and reply) queue here, off the event loop,
    # and those that queue up together share a transaction (see storage.group_commit).
    writer: GroupCommitWriter
    # The writer's results reach each event loop a group at a time (see bot.loop_bridge).
    _bridges: WeakKeyDictionary[asyncio.AbstractEventLoop, LoopBridge] = field(
        default_factory=WeakKeyDictionary, repr=False)

    async def write(self, action: Callable[Concatenate[Session, P], T], /, *args: P.args,
                    **kwargs: P.kwargs) -> T:
        """action(session, *args, **kwargs) on a writer thread; returns once it is committed."""
        loop = asyncio.get_running_loop()
        bridge = self._bridges.get(loop) or self._bridges.setdefault(loop, LoopBridge(loop))
        return await bridge.wrap(self.writer.submit(action, *args, **kwargs))

    def close(self) -> None:
        self.writer.close()
        self.engine.dispose()


def open_database(url: str, *, migrate: bool = True) -> Database:
    """Connect to `url`, bringing the schema up to date first unless told not to."""
    engine = make_engine(url)
    if migrate:
        with engine.connect() as connection:
            config = alembic_config(url)
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    sessions = make_session_factory(engine)
    # SQLite takes one writer at a time: writers in several threads would wait for its lock in its
    # busy handler, which sleeps in steps of 1 to 100 ms; one thread makes them queue in order.
    # A server database takes writers side by side.
    writers = 1 if engine.dialect.name == "sqlite" else 4
    return Database(engine, sessions, make_session_factory(engine, read_only=True),
                    GroupCommitWriter(sessions, threads=writers))


def alembic_config(url: str) -> Config:
    parse_url(url)  # a bad URL is named here, before Alembic reports it without saying which
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["url"] = url
    config.attributes["configure_logging"] = False
    return config


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    command.downgrade(alembic_config(url), revision)


def current_revision(url: str) -> tuple[str | None, str | None]:
    """(the database's revision, the newest revision the code knows)."""
    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision(), head
    finally:
        engine.dispose()


def mining_rules(settings: Settings) -> MiningRules:
    blocklist = read_blocklist(settings.blocklist_file) if settings.blocklist_file else frozenset()
    text_filter = TextFilter(min_chars=settings.mining_min_chars, max_chars=settings.mining_max_chars,
                             blocklist=blocklist)
    return MiningRules(window=timedelta(seconds=settings.pair_window_seconds), text_filter=text_filter,
                       max_person_share=settings.max_person_share)


def apply_retention(database: Database, settings: Settings, now: datetime) -> int:
    """Delete the messages older than RETENTION_DAYS (none when it is 0); returns how many."""
    if not settings.retention_days:
        return 0
    with database.sessions.begin() as session:
        return purge_older_than(session, cutoff=now - timedelta(days=settings.retention_days))
