"""The learning loop's test setting: chats logged in a temporary SQLite database, and an engine
serving a copy of the tiny trained model."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.database import Database, open_database
from bot.learning import LearningOptions, LearningService
from core_model.config import DecodeConfig
from core_model.engine import InferenceEngine
from storage.messages import log_incoming
from storage.mining import MiningRules
from storage.models import ChatKind
from tests.conftest import PAIRS

T0 = datetime(2026, 5, 1, tzinfo=UTC)


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    db = open_database(f"sqlite:///{tmp_path / 'chat.db'}")
    with db.sessions.begin() as session:
        # Ten group chats in which people ask and answer the corpus questions.
        for chat in range(10):
            for turn, pair in enumerate(PAIRS):
                at = T0 + timedelta(minutes=chat * 60 + turn * 2)
                for offset, (author, text) in enumerate([(f"a{chat}", pair.prompt), (f"b{chat}", pair.reply)]):
                    log_incoming(session, platform="telegram", chat_id=f"g{chat}", chat_kind=ChatKind.GROUP,
                                 chat_title=None, author_id=author, author_name=None,
                                 message_id=f"{turn}-{offset}", text=text,
                                 created_at=at + timedelta(seconds=offset * 10))
    yield db
    db.close()


@pytest.fixture
async def engine(model_dir: Path, tmp_path: Path) -> AsyncIterator[InferenceEngine]:
    live = tmp_path / "models" / "base"
    shutil.copytree(model_dir, live)
    served = InferenceEngine.from_dir(live, DecodeConfig(strategy="greedy", no_repeat_ngram=0))
    yield served
    await served.close()


def learning(database: Database, engine: InferenceEngine, tmp_path: Path, **options: object) -> LearningService:
    settings = LearningOptions(models_root=tmp_path / "models", min_new_pairs=1, train_seconds=2,
                               tolerance_bits=100.0, max_empty_rate=1.0, max_repeat_rate=1.0)
    return LearningService(database, engine, replace(settings, **options),  # type: ignore[arg-type]
                           MiningRules(max_person_share=1.0), base_pairs=lambda: PAIRS)
