"""The real python-telegram-bot client, our adapter and ChatService, against a fake Bot API."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.adapters.telegram import TelegramAdapter, TelegramOptions
from bot.commands import COMMANDS, RETRAIN_UNAVAILABLE
from bot.database import Database, open_database
from bot.fakes.telegram import BOT_ID, BOT_USERNAME, FakeTelegram
from bot.permissions import Permissions
from bot.service import ChatService
from core_model.config import DecodeConfig
from core_model.engine import InferenceEngine
from storage.models import Message

GROUP = -100
ADMIN, MEMBER, GLOBAL_ADMIN = 7, 8, 4242


class LongEngine:
    """Stands in for the model only where a reply longer than Telegram's limit is needed."""

    metrics: dict[str, object] = {}

    async def reply(self, prompt: str, context: str = "") -> str:
        return "word " * 2000  # 10,000 characters


class SlowEngine:
    """Stands in for a model that takes its time, to see the typing indicator."""

    metrics: dict[str, object] = {}

    async def reply(self, prompt: str, context: str = "") -> str:
        await asyncio.sleep(0.8)
        return "done thinking"


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    server = FakeTelegram()
    server.members[GROUP] = {ADMIN: "administrator"}
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def database(tmp_path: Path) -> AsyncIterator[Database]:
    db = open_database(f"sqlite:///{tmp_path / 'chat.db'}")
    yield db  # type: ignore[misc]
    db.close()


async def start_bot(fake: FakeTelegram, database: Database, engine: object) -> TelegramAdapter:
    service = ChatService(engine, database, Permissions({"telegram": frozenset({str(GLOBAL_ADMIN)})}),  # type: ignore[arg-type]
                          rng=random.Random(0))
    adapter = TelegramAdapter(service, TelegramOptions(token=fake.token, api_url=fake.url, poll_timeout=5,
                                                       overall_per_second=1000, group_per_minute=10_000))
    await adapter.start()
    return adapter


@pytest.fixture
async def bot(fake: FakeTelegram, database: Database, model_dir: Path) -> AsyncIterator[TelegramAdapter]:
    engine = InferenceEngine.from_dir(model_dir, DecodeConfig(strategy="greedy", no_repeat_ngram=0))
    adapter = await start_bot(fake, database, engine)
    yield adapter
    await adapter.stop()
    await engine.close()


def bot_message(text: str, message_id: int) -> dict[str, object]:
    return {"message_id": message_id, "date": 0, "chat": {"id": GROUP, "type": "supergroup"},
            "from": {"id": BOT_ID, "is_bot": True, "first_name": "Chatbot"}, "text": text}


async def test_start_up_registers_every_command(fake: FakeTelegram, bot: TelegramAdapter) -> None:
    assert fake.calls_to("getMe")
    registered = fake.calls_to("setMyCommands")[0]["commands"]
    assert [command["command"] for command in registered] == list(COMMANDS)


async def test_mention_is_answered_quoting_the_message(fake: FakeTelegram, bot: TelegramAdapter) -> None:
    pushed = await fake.push_message(f"@{BOT_USERNAME} hello there", user_id=MEMBER)
    sent = await fake.next_sent()
    assert sent["chat_id"] == GROUP and sent["text"] == "hi! how are you?"
    assert sent["reply_parameters"]["message_id"] == pushed["message_id"]
    assert fake.calls_to("sendChatAction") == []  # a quick reply needs no typing indicator


async def test_slow_reply_shows_typing(fake: FakeTelegram, database: Database) -> None:
    adapter = await start_bot(fake, database, SlowEngine())
    try:
        await fake.push_message("take your time", chat_id=5, user_id=5, chat_type="private")
        assert (await fake.next_sent())["text"] == "done thinking"
    finally:
        await adapter.stop()
    assert fake.calls_to("sendChatAction")[0]["action"] == "typing"


async def test_reply_to_the_bot_is_answered(fake: FakeTelegram, bot: TelegramAdapter) -> None:
    await fake.push_message("안녕하세요", reply_to=bot_message("earlier reply", 5))
    sent = await fake.next_sent()
    assert sent["text"]


async def test_unaddressed_message_gets_no_answer(fake: FakeTelegram, bot: TelegramAdapter,
                                                  database: Database) -> None:
    first = await fake.push_message("just chatting among ourselves")
    barrier = await fake.push_message(f"@{BOT_USERNAME} hello there")
    sent = await fake.next_sent()
    assert sent["reply_parameters"]["message_id"] == barrier["message_id"]  # the first went unanswered
    with database.reads.begin() as session:
        texts = session.execute(select(Message.text).where(Message.from_bot.is_(False))).scalars().all()
    assert "just chatting among ourselves" in texts and first["message_id"] != barrier["message_id"]


async def test_command_for_another_bot_is_ignored(fake: FakeTelegram, bot: TelegramAdapter) -> None:
    await fake.push_message("/stats@some_other_bot")
    barrier = await fake.push_message(f"/help@{BOT_USERNAME}")
    sent = await fake.next_sent()
    assert sent["reply_parameters"]["message_id"] == barrier["message_id"] and "/retrain" in sent["text"]


@pytest.mark.parametrize(("who", "expected"), [
    ({"user_id": ADMIN}, RETRAIN_UNAVAILABLE),
    ({"user_id": MEMBER}, "only admins"),
    ({"sender_chat": True}, RETRAIN_UNAVAILABLE),
    ({"user_id": ADMIN, "chat_id": ADMIN, "chat_type": "private"}, "only admins"),
    ({"user_id": GLOBAL_ADMIN, "chat_id": GLOBAL_ADMIN, "chat_type": "private"}, RETRAIN_UNAVAILABLE),
])
async def test_retrain_permissions(fake: FakeTelegram, bot: TelegramAdapter, who: dict[str, object],
                                   expected: str) -> None:
    await fake.push_message("/retrain", **who)  # type: ignore[arg-type]
    assert expected in (await fake.next_sent())["text"]


async def test_edit_updates_the_log(fake: FakeTelegram, bot: TelegramAdapter, database: Database) -> None:
    original = await fake.push_message("teh typo")
    await fake.push_message("the typo", message_id=original["message_id"], edited=True)
    await fake.push_message(f"@{BOT_USERNAME} barrier")
    await fake.next_sent()
    with database.reads.begin() as session:
        texts = session.execute(select(Message.text).order_by(Message.id)).scalars().all()
    assert texts[0] == "the typo"


async def test_rate_limited_send_is_retried(fake: FakeTelegram, bot: TelegramAdapter) -> None:
    fake.fail_next("sendMessage", 429, "Too Many Requests: retry after 1", retry_after=1)
    await fake.push_message("hello there", chat_id=5, user_id=5, chat_type="private")
    sent = await fake.next_sent()
    assert sent["text"] == "hi! how are you?"
    assert len(fake.calls_to("sendMessage!failed")) == 1


async def test_failed_send_is_logged_and_the_bot_goes_on(fake: FakeTelegram, bot: TelegramAdapter,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    fake.fail_next("sendMessage", 502, "Bad Gateway")
    await fake.push_message("hello there", chat_id=5, user_id=5, chat_type="private")
    await fake.push_message("hello there", chat_id=6, user_id=6, chat_type="private")
    sent = await fake.next_sent()
    assert sent["chat_id"] == 6
    assert any("sending a reply in chat 5 failed" in record.message for record in caplog.records)
    assert bot.service.metrics.send_failures.labels("telegram")._value.get() == 1


async def test_long_reply_is_split_at_the_limit(fake: FakeTelegram, database: Database) -> None:
    adapter = await start_bot(fake, database, LongEngine())
    try:
        await fake.push_message("tell me everything", chat_id=5, user_id=5, chat_type="private")
        pieces = [await fake.next_sent() for _ in range(3)]
    finally:
        await adapter.stop()
    assert all(len(piece["text"]) <= 4096 for piece in pieces)
    assert " ".join(piece["text"] for piece in pieces).split() == ["word"] * 2000
    assert "reply_parameters" in pieces[0] and "reply_parameters" not in pieces[1]


async def test_graceful_stop_loses_no_delivered_message(fake: FakeTelegram, database: Database,
                                                        model_dir: Path) -> None:
    engine = InferenceEngine.from_dir(model_dir, DecodeConfig(strategy="greedy", no_repeat_ngram=0))
    adapter = await start_bot(fake, database, engine)
    pushed = [await fake.push_message(f"@{BOT_USERNAME} hello there {i}", chat_id=-200 - i) for i in range(20)]
    await fake.next_sent()
    await adapter.stop()  # while most replies are still being generated
    await engine.close()
    delivered = {message["message_id"] for message in pushed if message["update_id"] in fake.delivered}
    with database.reads.begin() as session:
        logged = set(session.execute(select(Message.platform_message_id)
                                     .where(Message.from_bot.is_(False))).scalars())
    assert delivered and {str(message_id) for message_id in delivered} <= logged
    assert len(fake.calls_to("sendMessage")) == len(delivered)  # and each of them was answered


async def test_decoding_never_blocks_the_event_loop(fake: FakeTelegram, bot: TelegramAdapter) -> None:
    gaps: list[float] = []
    ticking = True

    async def heartbeat() -> None:
        last = asyncio.get_running_loop().time()
        while ticking:
            await asyncio.sleep(0.01)
            now = asyncio.get_running_loop().time()
            gaps.append(now - last)
            last = now

    beat = asyncio.create_task(heartbeat())
    for i in range(30):
        await fake.push_message(f"@{BOT_USERNAME} 안녕하세요 {i}", chat_id=-300 - i)
    for _ in range(30):
        await fake.next_sent()
    ticking = False
    await beat
    assert max(gaps) < 0.1


async def test_retrain_result_and_curves_reach_the_admin(fake: FakeTelegram, bot: TelegramAdapter,
                                                         database: Database, model_dir: Path,
                                                         tmp_path: Path) -> None:
    import shutil
    from datetime import UTC, datetime, timedelta

    from bot.learning import LearningOptions, LearningService
    from storage.messages import log_incoming
    from storage.mining import MiningRules
    from storage.models import ChatKind
    from tests.conftest import PAIRS

    with database.sessions.begin() as session:
        for number, pair in enumerate(PAIRS):
            for offset, text in enumerate((pair.prompt, pair.reply)):
                log_incoming(session, platform="telegram", chat_id=f"c{number}", chat_kind=ChatKind.GROUP,
                             chat_title=None, author_id=f"{number}-{offset}", author_name=None,
                             message_id=str(offset), text=text,
                             created_at=datetime(2026, 5, 1, tzinfo=UTC) + timedelta(minutes=number, seconds=offset))
    served = tmp_path / "models" / "base"
    shutil.copytree(model_dir, served)
    await bot.service.engine.swap(served)  # type: ignore[attr-defined]
    bot.service.learning = LearningService(
        database, bot.service.engine, LearningOptions(models_root=tmp_path / "models", min_new_pairs=0,  # type: ignore[arg-type]
                                                      train_seconds=2, tolerance_bits=100.0),
        MiningRules(max_person_share=1.0), base_pairs=lambda: PAIRS)
    await fake.push_message("/retrain", user_id=ADMIN)
    assert "Retraining started" in (await fake.next_sent())["text"]
    result = await fake.next_sent(timeout=60)
    assert result["chat_id"] == GROUP and result["text"].startswith("Promoted v0002")
    await bot.service.learning.wait()
    [photo] = fake.calls_to("sendPhoto")
    assert photo["chat_id"] == GROUP and photo["photo_bytes"] > 1000
