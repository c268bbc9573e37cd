"""`chatbot run` as a user runs it, with a Telegram token: a separate process against the fake."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import create_engine, text

from bot.fakes.telegram import BOT_USERNAME, FakeTelegram


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    server = FakeTelegram()
    await server.start()
    yield server
    await server.stop()


async def get(url: str) -> str:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        return await response.text()


async def test_run_serves_telegram_exposes_metrics_and_stops_cleanly(
        fake: FakeTelegram, model_dir: Path, tmp_path: Path) -> None:
    ops_port = free_port()
    env = {**os.environ, "TELEGRAM_TOKEN": fake.token, "TELEGRAM_API_URL": fake.url, "MODEL_DIR": str(model_dir),
           "DATA_DIR": str(tmp_path / "var"), "OPS_PORT": str(ops_port), "DECODE_STRATEGY": "greedy"}
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot.cli", "run", env=env, cwd=tmp_path,
                                                   stderr=asyncio.subprocess.PIPE)
    try:
        await fake.push_message(f"@{BOT_USERNAME} hello there")
        sent = await fake.next_sent(timeout=60)
        assert sent["text"]
        assert '"status": "ok"' in await get(f"http://127.0.0.1:{ops_port}/healthz")
        metrics = await get(f"http://127.0.0.1:{ops_port}/metrics")
        assert 'chatbot_messages_answered_total{platform="telegram"} 1.0' in metrics
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, stderr.decode()
    engine = create_engine(f"sqlite:///{tmp_path / 'var' / 'chatbot.db'}")
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT from_bot, platform_message_id IS NOT NULL FROM messages")).all()
    engine.dispose()
    assert sorted(tuple(row) for row in rows) == [(False, True), (True, True)]
