"""What a retrain learns from the chats and keeps: the snapshot without the people who left, the
lesson the chats taught, the memory of the corpus and the chats, and what /forget takes away."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot.database import Database
from core_model.corpora import Pair
from core_model.engine import InferenceEngine
from core_model.pipeline import bits_per_char
from storage.messages import log_incoming
from storage.models import ChatKind, RunTrigger
from tests.bot.learning.conftest import T0, learning
from tests.conftest import PAIRS


def test_forgotten_and_opted_out_people_are_not_in_the_next_snapshot(database: Database, engine: InferenceEngine,
                                                                      tmp_path: Path) -> None:
    from storage.people import forget_person, set_opted_out

    lines = [("asker", "any plans for the weekend?"), ("leaver", "my secret weekend plan"),
             ("asker", "which movie should we watch?"), ("shy", "my shy movie answer"),
             ("asker", "what about dinner?"), ("friend", "kimchi stew, as always")]
    with database.sessions.begin() as session:
        for number, (author, text) in enumerate(lines):
            log_incoming(session, platform="telegram", chat_id="privacy", chat_kind=ChatKind.GROUP,
                         chat_title=None, author_id=author, author_name=None, message_id=f"p{number}", text=text,
                         created_at=T0 + timedelta(days=30, seconds=number * 30))
        forget_person(session, platform="telegram", external_id="leaver", now=datetime.now(UTC))
        set_opted_out(session, platform="telegram", external_id="shy", opted_out=True)
    folder = tmp_path / "snapshot"
    folder.mkdir()
    learning(database, engine, tmp_path)._snapshot(folder)
    snapshot = "".join((folder / name).read_text(encoding="utf-8") for name in ("train.tsv", "valid.tsv"))
    assert "secret" not in snapshot and "shy movie" not in snapshot
    assert "kimchi stew, as always" in snapshot  # everyone else's words are still learnt from


async def test_a_promoted_model_answers_with_what_the_chats_taught_it(database: Database, engine: InferenceEngine,
                                                                       tmp_path: Path) -> None:
    prompt, taught = "who taught you to talk?", "the people in this group did"
    with database.sessions.begin() as session:
        for chat in range(3):  # in three chats, so that mining sees it whatever the window
            for offset, (author, text) in enumerate([(f"q{chat}", prompt), (f"r{chat}", taught)]):
                log_incoming(session, platform="telegram", chat_id=f"new{chat}", chat_kind=ChatKind.GROUP,
                             chat_title=None, author_id=author, author_name=None, message_id=f"n{offset}",
                             text=text, created_at=T0 + timedelta(days=20, minutes=chat, seconds=offset * 10))
    lesson = [Pair(prompt, taught)]
    base = engine.model_path
    before = await engine.reply(prompt)
    # a step budget, not a time budget: a busy machine must not make the lesson shorter
    outcome = await learning(database, engine, tmp_path, train_seconds=120, train_steps=150).retrain(RunTrigger.CLI)
    assert outcome.status == "promoted", outcome.message
    # the live model answers with the lesson (whether the lesson fell to the training or the
    # validation share of the snapshot, the memory holds it)...
    assert before != taught and await engine.reply(prompt) == taught
    # ...because it has learnt the lesson: the taught reply became far more probable
    assert bits_per_char(engine.model_path, lesson) < 0.5 * bits_per_char(base, lesson)


async def test_a_retrained_memory_keeps_the_base_pairs_and_the_chats_as_the_logs_hold_them(
        database: Database, engine: InferenceEngine, tmp_path: Path) -> None:
    from bot.messages import IncomingMessage
    from bot.permissions import Permissions
    from bot.service import ChatService
    from core_model.checkpoint import load_memory
    from core_model.reply_memory import ReplyMemory

    # The live model was built with a pair no chat holds.
    corpus_only = Pair("what is the capital of france", "paris")
    (engine.model_path / "memory.json").write_text(ReplyMemory.of([*PAIRS, corpus_only]).to_json(), encoding="utf-8")
    with database.sessions.begin() as session:
        for chat in range(3):
            for offset, (author, text) in enumerate([("asker", "what's the secret word?"), ("leaver", "swordfish")]):
                log_incoming(session, platform="telegram", chat_id=f"s{chat}", chat_kind=ChatKind.GROUP,
                             chat_title=None, author_id=author, author_name=None, message_id=f"s{offset}",
                             text=text, created_at=T0 + timedelta(days=20, minutes=chat, seconds=offset * 10))
    service = learning(database, engine, tmp_path, train_steps=2)

    def remembered(folder: Path | None = None) -> set[tuple[str, str]]:
        memory = load_memory(folder or engine.model_path)
        assert memory is not None
        return set(zip(memory.prompts, memory.replies, strict=True))

    assert (await service.retrain(RunTrigger.CLI)).status == "promoted"
    assert {("what's the secret word?", "swordfish"), (corpus_only.prompt, corpus_only.reply)} <= remembered()
    assert {(p.prompt, p.reply) for p in PAIRS} <= remembered()
    assert await engine.reply(corpus_only.prompt) == corpus_only.reply
    assert await engine.reply("what's the secret word?") == "swordfish"
    earlier = engine.model_path
    assert (await service.retrain(RunTrigger.CLI, force=True)).status == "promoted"
    # The leaver erases their words: no version answers from them any more, the live one at once.
    chats = ChatService(engine, database, Permissions({}))
    chats.learning = service
    reply = await chats.handle(IncomingMessage("telegram", "dm", "private", "leaver", "L", "/forget yes"))
    assert reply is not None and "4 of your messages erased" in reply.text  # the /forget too
    assert ("what's the secret word?", "swordfish") not in remembered() | remembered(earlier)
    assert (corpus_only.prompt, corpus_only.reply) in remembered() & remembered(earlier)
    assert await engine.reply("what's the secret word?") != "swordfish"
    assert (await service.retrain(RunTrigger.CLI, force=True)).status == "promoted"  # no new pairs since
    assert ("what's the secret word?", "swordfish") not in remembered()  # the logs no longer hold it
    assert (corpus_only.prompt, corpus_only.reply) in remembered()  # the base pairs stay


def test_a_retrain_replays_the_live_models_own_corpus(model_dir: Path, tmp_path: Path) -> None:
    from bot.app import replay_pairs
    from core_model.corpora import bundled_corpus

    assert replay_pairs(model_dir) == PAIRS  # its base pairs, whatever it was trained on
    bare = shutil.copytree(model_dir, tmp_path / "bare")
    (bare / "memory.json").unlink()
    assert replay_pairs(bare) == bundled_corpus()  # a folder without a memory: the bundled corpus
