"""The real discord.py client, our adapter and ChatService, against a fake Discord."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bot.adapters.discord import DiscordAdapter, DiscordOptions
from bot.commands import COMMANDS, RETRAIN_UNAVAILABLE
from bot.database import Database, open_database
from bot.fakes.discord import BOT_ID, CHANNEL_ID, GUILD_ID, OWNER_ID, FakeDiscord, user
from bot.permissions import Permissions
from bot.service import ChatService
from core_model.config import DecodeConfig
from core_model.engine import InferenceEngine
from storage.models import Message

MEMBER, MANAGER = 2, 3


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    server = FakeDiscord()
    await server.start()
    with server.patch_client():
        yield server
    await server.stop()


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    db = open_database(f"sqlite:///{tmp_path / 'chat.db'}")
    yield db
    db.close()


class LongEngine:
    """Stands in for the model only where a reply longer than Discord's limit is needed."""

    metrics: dict[str, object] = {}

    async def reply(self, prompt: str, context: str = "") -> str:
        return "mot " * 1500  # 6,000 characters

    async def close(self) -> None:
        pass


async def start_bot(fake: FakeDiscord, database: Database, model_dir: Path,
                    engine: InferenceEngine | LongEngine | None = None) -> tuple[DiscordAdapter, Any]:
    engine = engine or InferenceEngine.from_dir(model_dir, DecodeConfig(strategy="greedy", no_repeat_ngram=0))
    service = ChatService(engine, database, Permissions({}), rng=random.Random(0))  # type: ignore[arg-type]
    adapter = DiscordAdapter(service, DiscordOptions(token="fake-token", guild_id=GUILD_ID, ready_timeout=10),
                             guild_ready_timeout=0.05)
    await adapter.start()
    return adapter, engine


@pytest.fixture
async def bot(fake: FakeDiscord, database: Database, model_dir: Path) -> AsyncIterator[DiscordAdapter]:
    adapter, engine = await start_bot(fake, database, model_dir)
    yield adapter
    await adapter.stop()
    await engine.close()


async def test_start_up_syncs_slash_commands_to_the_guild(fake: FakeDiscord, bot: DiscordAdapter) -> None:
    synced = fake.requests("PUT", f"guilds/{GUILD_ID}/commands")
    assert synced, "no guild command sync"
    names = [command["name"] for command in synced[0]]
    assert names == list(COMMANDS)
    retrain = next(command for command in synced[0] if command["name"] == "retrain")
    assert int(retrain["default_member_permissions"]) == 1 << 5  # Manage Server
    assert bot.bot.user is not None and bot.bot.user.id == BOT_ID


async def test_mention_is_answered_referencing_the_message(fake: FakeDiscord, bot: DiscordAdapter) -> None:
    pushed = await fake.push_message(f"<@{BOT_ID}> hello there", mentions_bot=True)
    sent = await fake.next_sent()
    assert sent["content"] == "hi! how are you?"
    assert sent["message_reference"]["message_id"] == int(pushed["id"])
    assert fake.requests("POST", "/typing") == []  # a quick reply needs no typing indicator


async def test_reply_to_the_bot_is_answered(fake: FakeDiscord, bot: DiscordAdapter) -> None:
    earlier = {"id": "123", "channel_id": str(CHANNEL_ID), "author": user(BOT_ID, "chatbot", bot=True),
               "content": "earlier", "timestamp": "2026-01-01T00:00:00+00:00", "edited_timestamp": None,
               "tts": False, "mention_everyone": False, "mentions": [], "mention_roles": [], "attachments": [],
               "embeds": [], "pinned": False, "type": 0}
    await fake.push_message("hello there", reply_to=earlier)
    assert (await fake.next_sent())["content"] == "hi! how are you?"


async def test_unaddressed_message_gets_no_answer(fake: FakeDiscord, bot: DiscordAdapter) -> None:
    await fake.push_message("just us talking")
    barrier = await fake.push_message(f"<@{BOT_ID}> hello there", mentions_bot=True)
    sent = await fake.next_sent()
    assert sent["message_reference"]["message_id"] == int(barrier["id"])


@pytest.mark.parametrize(("author", "expected"), [
    (MANAGER, RETRAIN_UNAVAILABLE), (OWNER_ID, RETRAIN_UNAVAILABLE), (MEMBER, "only admins")])
async def test_retrain_slash_command_permissions(fake: FakeDiscord, bot: DiscordAdapter, author: int,
                                                 expected: str) -> None:
    await fake.push_slash("retrain", author=author)
    assert expected in (await fake.next_sent())["content"]


async def test_slash_command_with_an_argument(fake: FakeDiscord, bot: DiscordAdapter) -> None:
    await fake.push_slash("chatty", author=MANAGER, args="25")
    assert "25%" in (await fake.next_sent())["content"]


async def test_deletion_reaches_the_store(fake: FakeDiscord, bot: DiscordAdapter, database: Database) -> None:
    pushed = await fake.push_message("regrettable words")
    await fake.push_delete(pushed)
    barrier = await fake.push_message(f"<@{BOT_ID}> hello there", mentions_bot=True)
    assert (await fake.next_sent())["message_reference"]["message_id"] == int(barrier["id"])
    with database.reads.begin() as session:
        row = session.execute(select(Message.text, Message.deleted_at)
                              .where(Message.platform_message_id == pushed["id"])).one()
    assert row.text is None and row.deleted_at is not None


async def test_without_the_content_intent_only_mentions_have_text(
        fake: FakeDiscord, bot: DiscordAdapter, database: Database) -> None:
    fake.intents &= ~(1 << 15)  # as if the intent were not granted
    await fake.push_message("invisible words")
    await fake.push_message(f"<@{BOT_ID}> hello there", mentions_bot=True)
    await fake.next_sent()
    with database.reads.begin() as session:
        texts = session.execute(select(Message.text).where(Message.from_bot.is_(False))
                                .order_by(Message.id)).scalars().all()
    assert texts == ["", "hello there"]


async def test_rate_limited_send_is_retried_by_the_library(fake: FakeDiscord, bot: DiscordAdapter) -> None:
    fake.fail_next("POST", "/messages", 429, {"message": "You are being rate limited.", "retry_after": 0.2,
                                               "global": False}, {"Via": "1.1 google"})
    await fake.push_message(f"<@{BOT_ID}> hello there", mentions_bot=True)
    assert (await fake.next_sent())["content"] == "hi! how are you?"
    assert len(fake.requests("POST!failed", "/messages")) == 1


async def test_server_error_is_retried_by_the_library(fake: FakeDiscord, bot: DiscordAdapter) -> None:
    fake.fail_next("POST", "/messages", 502, {"message": "Bad Gateway"})
    await fake.push_message(f"<@{BOT_ID}> hello there", mentions_bot=True)
    assert (await fake.next_sent(timeout=15))["content"] == "hi! how are you?"


async def test_dropped_gateway_connection_comes_back(fake: FakeDiscord, bot: DiscordAdapter) -> None:
    await fake.drop_connections()
    await fake.wait_connected(count=2)
    await fake.push_message(f"<@{BOT_ID}> hello there", mentions_bot=True)
    assert (await fake.next_sent(timeout=15))["content"] == "hi! how are you?"


async def test_long_reply_is_split_at_2000(fake: FakeDiscord, database: Database, model_dir: Path) -> None:
    adapter, engine = await start_bot(fake, database, model_dir, LongEngine())
    try:
        pushed = await fake.push_message(f"<@{BOT_ID}> tell me everything", mentions_bot=True)
        pieces = [await fake.next_sent() for _ in range(3)]
    finally:
        await adapter.stop()
    assert all(len(piece["content"]) <= 2000 for piece in pieces)
    assert " ".join(piece["content"] for piece in pieces).split() == ["mot"] * 1500
    assert pieces[0]["message_reference"]["message_id"] == int(pushed["id"])
    assert pieces[1].get("message_reference") is None


async def test_decoding_never_blocks_the_gateway(fake: FakeDiscord, database: Database, model_dir: Path) -> None:
    fake.heartbeat_interval_ms = 100
    adapter, engine = await start_bot(fake, database, model_dir)
    try:
        for i in range(30):
            await fake.push_message(f"<@{BOT_ID}> 안녕하세요 {i}", mentions_bot=True)
        for _ in range(30):
            await fake.next_sent()
        await asyncio.sleep(0.3)
    finally:
        await adapter.stop()
        await engine.close()
    gaps = [later - earlier for earlier, later in zip(fake.heartbeats, fake.heartbeats[1:], strict=False)]
    assert len(gaps) >= 3 and max(gaps) < 0.2  # 100 ms interval; a blocked loop would show a long gap


async def test_notification_posts_text_with_the_image_attached(fake: FakeDiscord, bot: DiscordAdapter,
                                                                tmp_path: Path) -> None:
    from bot.training_plot import plot_curves

    image = plot_curves([(1, 3.0), (2, 2.0)], [(2, 1.5)], tmp_path / "curves.png")
    await bot.bot.service.notify("discord", str(CHANNEL_ID), "Promoted v0002.", image)
    posted = await fake.next_sent()
    assert posted["content"] == "Promoted v0002." and posted["uploaded"] == ["curves.png"]
