"""`chatbot bench retrain`: retrain the default model on 10,000 mined pairs while the bot serves.

The store is seeded with group conversations built from the Korean dialogue data (each pair a
question by one person and the answer by another), then one forced retraining runs end to end:
mining, the child process's fine-tuning and scoring, the gate. The serve benchmark runs once
before (idle) and once while the child trains, to show what retraining costs the replies. Then
the replies of the model before and after are compared: to prompts of the model's own corpus
(kept: the share answered as before) and to mined prompts (learned: the share answered with
the reply the chats gave).
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

from bot.app import model_path, replay_pairs
from bot.database import Database, mining_rules, open_database
from bot.learning import LearningOptions, LearningService
from bot.model_choice import FolderModel
from bot.serve_benchmark import bench_serve
from bot.settings import Settings
from core_model.config import DecodeConfig
from core_model.corpora import Pair, load_pairs
from core_model.replies import reply_texts
from core_model.serving import load_for_serving, served_source
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
                                   base_pairs=lambda: replay_pairs(model))
        started = time.perf_counter()
        run = asyncio.create_task(learning.retrain(RunTrigger.CLI, "bench", force=True))
        await asyncio.sleep(10)  # mining done, the child is training
        during = await bench_serve(settings, "telegram", seconds=serve_seconds)
        outcome = await run
        retrain_seconds = time.perf_counter() - started
        database.close()
        # the retrained model (the same folder as before unless the gate promoted it)
        changes = await asyncio.to_thread(_replies_changed, model, learning.engine.model_path,
                                          load_pairs([data_dir / DATA])[:pairs])
    figures = outcome.figures or {}
    return {
        "pairs": seeded, "train_pairs_with_replay": figures.get("train_pairs"), "retrain_seconds": round(retrain_seconds, 1),
        "train_seconds": figures.get("train_seconds"), "promoted": outcome.status == "promoted",
        "outcome": outcome.message,
        "idle_p99_ms": idle["reply_p99_ms"], "during_p99_ms": during["reply_p99_ms"],
        "idle_answered_per_s": idle["answered_per_s"], "during_answered_per_s": during["answered_per_s"],
        **changes,
    }


def _replies_changed(before: Path, after: Path, mined: list[Pair], sample: int = 300) -> dict[str, float]:
    """Of sample prompts of the model's corpus, the share the retrained model answers as the model
    before did; of sample mined prompts, the share each answers with the reply the chats gave."""
    corpus = replay_pairs(before)
    own = [corpus[i * len(corpus) // sample] for i in range(min(sample, len(corpus)))]
    learnt = [mined[i * len(mined) // sample] for i in range(min(sample, len(mined)))]
    replies: dict[str, list[str]] = {}
    for name, path in (("before", before), ("after", after)):
        loaded = load_for_serving(path)
        sources = [served_source(loaded, p.prompt, "") for p in own + learnt]
        replies[name] = reply_texts(loaded.model, loaded.tokenizer, sources, DecodeConfig(), loaded.memory)

    def share(matches: list[bool]) -> float:
        return round(sum(matches) / max(len(matches), 1), 3)

    return {
        "corpus_replies_kept": share([a == b for a, b in zip(replies["before"][: len(own)],
                                                             replies["after"][: len(own)], strict=True)]),
        "mined_replies_before": share([r == p.reply for r, p in zip(replies["before"][len(own) :], learnt, strict=True)]),
        "mined_replies_after": share([r == p.reply for r, p in zip(replies["after"][len(own) :], learnt, strict=True)]),
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
