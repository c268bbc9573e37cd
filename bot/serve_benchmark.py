"""`chatbot bench serve`: many group chats at once through the real client library and a fake platform.

Each of `chats` group chats sends a message addressed to the bot, waits for the answer, and sends
the next one (a closed loop, as people do). Latency is from the fake platform delivering the
message to it receiving the bot's reply; everything in between is the real stack: the client
library, the adapter, ChatService with its SQLite log, and the engine with the default model.
The platform side (the fake server and the people) runs in a child process, as the real platform
is another machine: its work must not be billed to the bot's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import multiprocessing
import random
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from bot.app import model_path, wire_metrics
from bot.database import Database, open_database
from bot.permissions import Permissions
from bot.service import ChatService
from bot.settings import Settings
from core_model.process_engine import ProcessEngine
from core_model.serving import keep_collector_off_live_objects
from storage.models import Message

PROMPTS = ["안녕하세요", "오늘 날씨 어때?", "hello there", "what are you doing?", "배고파", "good morning",
           "뭐 먹을까", "tell me a joke", "잘 자", "how are you?"]

# Sends `text` into chat number `chat` and waits for the bot's reply there.
Exchange = Callable[[int, str], Awaitable[None]]


async def bench_serve(settings: Settings, platform: str, *, chats: int = 64, seconds: float = 20.0,
                      warmup: float = 3.0) -> dict[str, Any]:
    model = model_path(settings)  # trains the default model first if there is none
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    people = context.Process(target=_platform_side, args=(platform, chats, seconds, warmup, theirs), daemon=True)
    people.start()
    with tempfile.TemporaryDirectory() as scratch:
        database = open_database(f"sqlite:///{Path(scratch) / 'serve.db'}")
        engine = await asyncio.to_thread(ProcessEngine.from_dir, model, settings.decode_config(),
                                         threads=settings.torch_threads or 1, workers=settings.decode_workers)
        metrics = wire_metrics(engine)
        service = ChatService(engine, database, Permissions({}), metrics=metrics)
        try:
            port = await asyncio.to_thread(ours.recv)
            async with _bot(platform, service, port):
                keep_collector_off_live_objects()  # as `chatbot run` does once its adapters are up
                ours.send("go")
                latencies, sent = await asyncio.to_thread(ours.recv)
            ours.send("done")
        finally:
            await engine.close()
            metrics.unwatch_rate_limits()
            people.join(timeout=30)
        logged = _count_logged(database)
        database.close()
    return {
        "platform": platform, "chats": chats, "decode": settings.decode_strategy,
        "answered_per_s": round(len(latencies) / seconds, 1),
        "reply_p50_ms": round(statistics.median(latencies) * 1000, 1),
        "reply_p99_ms": round(_percentile(latencies, 0.99) * 1000, 1),
        "messages_sent": sent, "logged_fraction": round(logged / sent, 4) if sent else 0.0,
        "largest_batch": engine.stats.largest_batch,
        "mean_batch": round(engine.stats.replies / max(engine.stats.batches, 1), 1),
    }


@contextlib.asynccontextmanager
async def _bot(platform: str, service: ChatService, port: int) -> AsyncIterator[None]:
    """The bot side: the real adapter pointed at the fake platform on `port`."""
    if platform == "telegram":
        from bot.adapters.telegram import TelegramAdapter, TelegramOptions
        from bot.fakes.telegram import FakeTelegram

        # The flood limits are Telegram's to enforce; here they would only measure the limiter.
        telegram = TelegramAdapter(service, TelegramOptions(
            token=FakeTelegram.token, api_url=f"http://127.0.0.1:{port}", poll_timeout=5,
            overall_per_second=1e6, group_per_minute=1e6))
        await telegram.start()
        try:
            yield
        finally:
            await telegram.stop()
        return
    from bot.adapters.discord import DiscordAdapter, DiscordOptions
    from bot.fakes.discord import GUILD_ID, point_discord_at

    with point_discord_at(port):
        discord = DiscordAdapter(service, DiscordOptions(token="bench", guild_id=GUILD_ID),
                                 guild_ready_timeout=0.05)
        await discord.start()
        try:
            yield
        finally:
            await discord.stop()


def _platform_side(platform: str, chats: int, seconds: float, warmup: float, pipe: Connection) -> None:
    """Child process: the fake platform and the people in its chats."""
    # The platform stands in for Telegram's or Discord's servers, other machines: its own pauses
    # must not be billed to the bot. Its full garbage collections, over the many objects its
    # requests leave behind, took 220-270 ms and stalled every chat at once (the slowest 1% of
    # replies came from two such pauses), so it does not collect during a run of seconds.
    gc.disable()
    asyncio.run(_run_platform(platform, chats, seconds, warmup, pipe))


async def _run_platform(platform: str, chats: int, seconds: float, warmup: float, pipe: Connection) -> None:
    if platform == "telegram":
        from bot.fakes.telegram import BOT_USERNAME, FakeTelegram

        telegram = FakeTelegram()
        fake: Any = telegram

        async def exchange(number: int, text: str) -> None:
            chat_id = -1000 - number
            await telegram.push_message(f"@{BOT_USERNAME} {text}", chat_id=chat_id, user_id=number + 1)
            await telegram.reply_in(chat_id)
    else:
        from bot.fakes.discord import BOT_ID, CHANNEL_ID, FakeDiscord

        discord = FakeDiscord(channel_count=chats)
        fake = discord

        async def exchange(number: int, text: str) -> None:
            await discord.push_message(f"<@{BOT_ID}> {text}", channel=CHANNEL_ID + number, author=10 + number,
                                       mentions_bot=True)
            await discord.reply_in(CHANNEL_ID + number)

    await fake.start()
    pipe.send(fake.port)
    await asyncio.to_thread(pipe.recv)  # the bot is connected
    try:
        pipe.send(await _drive(exchange, chats, seconds, warmup))
        await asyncio.to_thread(pipe.recv)  # the bot has disconnected
    finally:
        await fake.stop()


async def _drive(exchange: Exchange, chats: int, seconds: float, warmup: float) -> tuple[list[float], int]:
    latencies: list[float] = []
    sent = 0
    begin = time.perf_counter()
    measure_from, stop_at = begin + warmup, begin + warmup + seconds

    async def chat(number: int) -> None:
        nonlocal sent
        rng = random.Random(number)
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            sent += 1
            await exchange(number, rng.choice(PROMPTS))
            if started >= measure_from and time.perf_counter() <= stop_at:
                latencies.append(time.perf_counter() - started)

    await asyncio.gather(*(chat(number) for number in range(chats)))
    return latencies, sent


def _count_logged(database: Database) -> int:
    with database.reads.begin() as session:
        return session.execute(select(func.count(Message.id)).where(Message.from_bot.is_(False))).scalar_one()


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")
