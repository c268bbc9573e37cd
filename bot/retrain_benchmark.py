"""`chatbot bench retrain`: retrain the default model on 10,000 mined pairs while the bot serves.

The store is seeded with group conversations built from the Korean dialogue data (each pair a
question by one person and the answer by another), then one forced retraining runs end to end:
mining, the child process's fine-tuning and scoring, the gate. The serve benchmark runs once
before (idle) and once while the child trains, to show what retraining costs the replies.
"""

from __future__ import annotations

import asyncio
import itertools
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select

from bot.app import model_path
from bot.database import Database, mining_rules, open_database
from bot.learning import LearningOptions, LearningService
from bot.model_choice import FolderModel
from bot.serve_benchmark import bench_serve
from bot.settings import Settings
from core_model.corpora import bundled_corpus, load_pairs
from storage.models import Chat, ChatKind, Message, Person, RunTrigger

DATA = "korean_chatbot/train.tsv"


async def bench_retrain(settings: Settings, data_dir: Path, *, pairs: int = 10_000,
                        serve_seconds: float = 15.0) -> dict[str, Any]:
    model = model_path(settings)
    idle = await bench_serve(settings, "telegram", seconds=serve_seconds)
    with tempfile.TemporaryDirectory() as scratch:
        database = open_database(f"sqlite:///{Path(scratch) / 'retrain.db'}")
        seeded = await asyncio.to_thread(_seed, database, data_dir / DATA, pairs)
        options = LearningOptions(models_root=Path(scratch) / "models", min_new_pairs=0,
                                  tolerance_bits=settings.retrain_tolerance_bits,
                                  train_seconds=settings.retrain_seconds, threads=settings.retrain_threads,
                                  replay_ratio=settings.retrain_replay_ratio)
        learning = LearningService(database, FolderModel(model), options, mining_rules(settings),
                                   base_pairs=bundled_corpus)
        started = time.perf_counter()
        run = asyncio.create_task(learning.retrain(RunTrigger.CLI, "bench", force=True))
        await asyncio.sleep(10)  # mining done, the child is training
        during = await bench_serve(settings, "telegram", seconds=serve_seconds)
        outcome = await run
        retrain_seconds = time.perf_counter() - started
        database.close()
    figures = outcome.figures or {}
    return {
        "pairs": seeded, "train_pairs_with_replay": figures.get("train_pairs"), "retrain_seconds": round(retrain_seconds, 1),
        "train_seconds": figures.get("train_seconds"), "promoted": outcome.status == "promoted",
        "outcome": outcome.message,
        "idle_p99_ms": idle["reply_p99_ms"], "during_p99_ms": during["reply_p99_ms"],
        "idle_answered_per_s": idle["answered_per_s"], "during_answered_per_s": during["answered_per_s"],
    }


def _seed(database: Database, path: Path, count: int) -> int:
    """Conversations in 200 group chats among 1,000 people: a question, then another person's answer."""
    pairs = load_pairs([path])[:count]
    start = datetime(2026, 1, 1, tzinfo=UTC)
    with database.sessions.begin() as session:
        session.execute(insert(Chat), [{"platform": "telegram", "external_id": f"bench{i}", "kind": ChatKind.GROUP,
                                        "title": None} for i in range(200)])
        session.execute(insert(Person), [{"platform": "telegram", "external_id": f"bench{i}",
                                          "display_name": None} for i in range(1000)])
        chats = list(session.execute(select(Chat.id).order_by(Chat.id)).scalars())
        people = list(session.execute(select(Person.id).order_by(Person.id)).scalars())
        rows = []
        for number, pair, chat in zip(itertools.count(), pairs, itertools.cycle(chats)):
            at = start + timedelta(minutes=number * 10)  # far enough apart: one pair per exchange
            asker, answerer = people[number % 1000], people[(number * 7 + 1) % 1000]
            rows.append({"chat_id": chat, "author_id": asker, "text": pair.prompt, "created_at": at,
                         "from_bot": False, "platform_message_id": f"{number}q"})
            rows.append({"chat_id": chat, "author_id": answerer, "text": pair.reply,
                         "created_at": at + timedelta(seconds=20), "from_bot": False,
                         "platform_message_id": f"{number}a"})
        session.execute(insert(Message), rows)
    return len(pairs)
