import asyncio
from pathlib import Path

import torch

from core_model import checkpoint
from core_model.config import DecodeConfig
from core_model.decoding import generate
from core_model.engine import InferenceEngine
from core_model.model import Seq2Seq
from core_model.tokenizer import EOS_ID, Tokenizer
from tests.conftest import PAIRS

GREEDY = DecodeConfig(strategy="greedy", no_repeat_ngram=0)


async def test_concurrent_callers_are_batched_and_answered(model_dir: Path) -> None:
    engine = InferenceEngine.from_dir(model_dir, GREEDY, max_wait_ms=20)
    prompts = [p.prompt for p in PAIRS] * 8
    replies = await asyncio.gather(*(engine.reply(p) for p in prompts))
    await engine.close()
    assert replies == [p.reply for p in PAIRS] * 8
    assert engine.stats.replies == len(prompts)
    assert engine.stats.largest_batch > 1
    assert engine.stats.batches < len(prompts)


async def test_empty_prompt_gets_an_empty_reply(model_dir: Path) -> None:
    engine = InferenceEngine.from_dir(model_dir, GREEDY)
    assert await engine.reply("   \u200b") == ""
    await engine.close()


async def test_swap_keeps_every_request(model_dir: Path, tmp_path: Path, tokenizer: Tokenizer,
                                        trained: Seq2Seq) -> None:
    silent = Seq2Seq(trained.config)
    silent.load_state_dict(trained.state_dict())
    with torch.no_grad():
        silent.output_bias[EOS_ID] = 1e4  # answers with the shortest possible reply
    other = checkpoint.save(tmp_path / "other", silent, tokenizer)
    engine = InferenceEngine.from_dir(model_dir, GREEDY, max_wait_ms=1)
    before = [asyncio.create_task(engine.reply(p.prompt)) for p in PAIRS * 4]
    await engine.swap(other)
    after = await asyncio.gather(*(engine.reply(p.prompt) for p in PAIRS))
    done = await asyncio.gather(*before)
    await engine.close()
    assert len(done) == len(PAIRS) * 4 and all(isinstance(r, str) for r in done)
    assert engine.model_path == other
    expected = [tokenizer.decode(r) for r in generate(silent.eval(), [tokenizer.encode(p.prompt) for p in PAIRS], GREEDY)]
    assert after == expected != [p.reply for p in PAIRS]
    assert engine.stats.swaps == 1


async def test_event_loop_stays_free_while_decoding(model_dir: Path) -> None:
    engine = InferenceEngine.from_dir(model_dir, DecodeConfig(strategy="beam", beam_width=8))
    gaps: list[float] = []

    async def ticker() -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            await asyncio.sleep(0.005)
            gaps.append(loop.time() - last)
            last = loop.time()

    task = asyncio.create_task(ticker())
    await asyncio.gather(*(engine.reply(p.prompt * 20) for p in PAIRS * 10))
    task.cancel()
    await engine.close()
    assert gaps and max(gaps) < 0.1


async def test_a_decoding_failure_fails_only_the_replies_not_yet_given(model_dir: Path,
                                                                        monkeypatch) -> None:
    def first_then_fail(model, tokenizer, sources, config, memory):  # type: ignore[no-untyped-def]
        yield [(0, "first")]
        raise RuntimeError("decoding broke")

    monkeypatch.setattr("core_model.engine.reply_texts_as_done", first_then_fail)
    engine = InferenceEngine.from_dir(model_dir, GREEDY, max_wait_ms=200)
    outcomes = await asyncio.gather(*(engine.reply(p.prompt) for p in PAIRS[:3]), return_exceptions=True)
    await engine.close()  # the worker has finished its bookkeeping
    assert (engine.stats.batches, engine.stats.largest_batch) == (1, 3)  # the three were one batch
    assert outcomes[0] == "first"
    assert all(isinstance(o, RuntimeError) and "decoding broke" in str(o) for o in outcomes[1:])
