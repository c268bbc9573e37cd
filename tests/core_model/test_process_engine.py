"""The engine in its own process: same answers as in-process decoding, batching, swaps, errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core_model.checkpoint import CheckpointError
from core_model.config import DecodeConfig
from core_model.engine import InferenceEngine
from core_model.process_engine import ProcessEngine

GREEDY = DecodeConfig(strategy="greedy", no_repeat_ngram=0)
PROMPTS = ["hello there", "안녕하세요", "how are you?", "배고파", "😀 hi", ""]


@pytest.fixture(params=[1, 2], ids=["one worker", "two workers"])
async def engine(model_dir: Path, request: pytest.FixtureRequest) -> AsyncIterator[ProcessEngine]:
    process_engine = await asyncio.to_thread(ProcessEngine.from_dir, model_dir, GREEDY, workers=request.param)
    yield process_engine
    await process_engine.close()


async def test_concurrent_replies_match_in_process_decoding(engine: ProcessEngine, model_dir: Path) -> None:
    sizes: list[int] = []
    engine.batch_observers.append(sizes.append)
    replies = await asyncio.gather(*(engine.reply(prompt) for prompt in PROMPTS * 5))
    local = InferenceEngine.from_dir(model_dir, GREEDY)
    try:
        expected = await asyncio.gather(*(local.reply(prompt) for prompt in PROMPTS * 5))
    finally:
        await local.close()
    assert replies == expected
    assert sum(sizes) == len(PROMPTS) * 5 and max(sizes) > 1  # they were batched
    assert engine.metrics["train_pairs"] == 8 and engine.queue_depth() == 0


async def test_swap_keeps_answering_and_reports_a_bad_folder(engine: ProcessEngine, model_dir: Path,
                                                            tmp_path: Path) -> None:
    before = asyncio.gather(*(engine.reply("hello there") for _ in range(10)))
    await engine.swap(model_dir)
    assert len(await before) == 10 and engine.stats.swaps == 1
    with pytest.raises(CheckpointError, match="no such model folder"):
        await engine.swap(tmp_path / "missing")
    assert await engine.reply("hello there") == "hi! how are you?"  # the old model still serves


def test_bad_folder_is_named_at_start(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="nowhere"):
        ProcessEngine.from_dir(tmp_path / "nowhere")
