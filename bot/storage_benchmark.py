"""`chatbot bench storage`: logging rate, concurrent writers, mining a million messages, bytes used."""

from __future__ import annotations

import itertools
import multiprocessing
import os
import random
import resource
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select, text

from bot.database import open_database
from storage.messages import log_incoming
from storage.mining import MiningRules, mine_pairs
from storage.models import Chat, ChatKind, Message, Person

START = datetime(2026, 1, 1, tzinfo=UTC)
DATA_FILES = ("korean_chatbot/train.tsv", "ccc_chitchat/train.tsv")


def sample_texts(data_dir: Path, limit: int = 50_000) -> list[str]:
    """Real chat lines when the shared data is there (sizes matter for bytes used), else synthetic."""
    texts: list[str] = []
    for name in DATA_FILES:
        path = data_dir / name
        if path.exists():
            with path.open(encoding="utf-8") as lines:
                next(lines, None)
                for line in itertools.islice(lines, limit // 2):
                    texts.extend(part for part in line.rstrip("\n").split("\t")[:2] if part)
    if not texts:
        words = ["hello", "there", "how", "are", "you", "doing", "today", "안녕", "반가워", "오늘", "뭐해", "🙂", "nice"]
        rng = random.Random(0)
        texts = [" ".join(rng.choices(words, k=rng.randint(2, 12))) for _ in range(limit)]
    return texts


def _log_many(url: str, writer: int, count: int, texts: list[str]) -> tuple[int, int]:
    """Log `count` messages, one transaction each, as a group chat would; returns (logged, errors)."""
    database = open_database(url, migrate=False)
    rng = random.Random(writer)
    logged = errors = 0
    for i in range(count):
        chat = rng.randrange(64)
        try:
            with database.sessions.begin() as session:
                log_incoming(
                    session, platform="telegram", chat_id=f"chat{chat}", chat_kind=ChatKind.GROUP,
                    chat_title=f"Group {chat}", author_id=f"user{rng.randrange(500)}", author_name=None,
                    message_id=f"{writer}-{i}", text=rng.choice(texts),
                    created_at=START + timedelta(seconds=i),
                    reply_to_message_id=f"{writer}-{i - 3}" if rng.random() < 0.3 else None)
            logged += 1
        except Exception:  # counted: the benchmark reports errors that escape
            errors += 1
    database.close()
    return logged, errors


def _synthetic_rows(chat_ids: list[int], person_ids: list[int], texts: list[str], total: int,
                    first_id: int) -> Iterator[dict[str, Any]]:
    """Group traffic: bursts of a few speakers per chat, some explicit replies, some bot lines."""
    rng = random.Random(1)
    last_in_chat: dict[int, int] = {}
    for offset in range(total):
        row_id = first_id + offset
        chat = rng.choice(chat_ids)
        replying = rng.random() < 0.2 and chat in last_in_chat
        from_bot = rng.random() < 0.05
        yield {
            "id": row_id, "chat_id": chat, "author_id": None if from_bot else rng.choice(person_ids),
            "platform_message_id": str(row_id), "text": rng.choice(texts),
            "created_at": START + timedelta(seconds=offset * 0.5),
            "reply_to_id": last_in_chat[chat] if replying else None, "from_bot": from_bot,
        }
        last_in_chat[chat] = row_id


def _fill(database: Any, messages: int, texts: list[str]) -> None:
    with database.sessions.begin() as session:
        session.execute(insert(Chat), [{"platform": "telegram", "external_id": f"big{i}",
                                        "kind": ChatKind.GROUP, "title": None} for i in range(2_000)])
        session.execute(insert(Person), [{"platform": "telegram", "external_id": f"big{i}",
                                          "display_name": f"Person {i}"} for i in range(20_000)])
        chat_ids = list(session.execute(select(Chat.id).where(Chat.external_id.like("big%"))).scalars())
        person_ids = list(session.execute(select(Person.id).where(Person.external_id.like("big%"))).scalars())
        first_id = (session.execute(select(func.max(Message.id))).scalar() or 0) + 1
    rows = _synthetic_rows(chat_ids, person_ids, texts, messages, first_id)
    while batch := list(itertools.islice(rows, 20_000)):
        with database.sessions.begin() as session:
            session.execute(insert(Message), batch)


def bench_storage(url: str | None, data_dir: Path, *, messages: int = 1_000_000,
                  log_count: int = 5_000, writers: int = 4) -> dict[str, Any]:
    texts = sample_texts(data_dir)
    with tempfile.TemporaryDirectory() as scratch:
        url = url or f"sqlite:///{Path(scratch) / 'bench.db'}"
        open_database(url).close()  # migrate once, before the writers start

        started = time.perf_counter()
        logged, _ = _log_many(url, 0, log_count, texts)
        single_rate = logged / (time.perf_counter() - started)

        per_writer = log_count // writers
        started = time.perf_counter()
        with multiprocessing.get_context("spawn").Pool(writers) as pool:
            results = pool.starmap(_log_many, [(url, 100 + w, per_writer, texts) for w in range(writers)])
        concurrent_rate = sum(ok for ok, _ in results) / (time.perf_counter() - started)
        database = open_database(url, migrate=False)
        with database.reads.begin() as session:
            stored = session.execute(select(func.count(Message.id))).scalar_one()
        lost = logged + writers * per_writer - stored

        _fill(database, messages, texts)
        # In a fresh process, so that its peak memory is the miner's alone.
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            mine_seconds, pairs, mine_rss_growth_kb = pool.apply(_mine, (url,))
        with database.reads.begin() as session:
            total = session.execute(select(func.count(Message.id))).scalar_one()
        size = _database_bytes(database, url)
        database.close()
    return {
        "url": url.split("@")[-1] if "@" in url else "sqlite (temporary file)",
        "log_messages_per_s": round(single_rate, 1),
        "concurrent_writers": writers,
        "concurrent_messages_per_s": round(concurrent_rate, 1),
        "concurrent_writer_errors": sum(errors for _, errors in results),
        "lost_messages": lost,
        "mined_messages": messages,
        "mine_1m_seconds": round(mine_seconds * 1_000_000 / messages, 2),
        "mined_pairs": pairs,
        "mine_rss_growth_mb": round(mine_rss_growth_kb / 1024, 1),
        "db_bytes_per_million": int(size * 1_000_000 / total),
    }


def _rss_kb() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def _mine(url: str) -> tuple[float, int, int]:
    """Mine every pair; returns (seconds, pairs, how far this process's peak RSS rose, in KiB)."""
    baseline = _rss_kb()
    database = open_database(url, migrate=False)
    started = time.perf_counter()
    with database.reads.begin() as session:
        mined = mine_pairs(session, MiningRules())
        for _ in mined:
            pass
    seconds = time.perf_counter() - started
    database.close()
    return seconds, mined.size, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - baseline


def _database_bytes(database: Any, url: str) -> int:
    with database.engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            # Outside a transaction (the raw connection), so that the WAL folds into the file.
            connection.connection.driver_connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            return os.path.getsize(url.removeprefix("sqlite:///"))
        return int(connection.execute(text("SELECT pg_database_size(current_database())")).scalar_one())
