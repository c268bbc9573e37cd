"""`chatbot bench`: training throughput against the machine's peak, and serving latency/throughput."""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from bot.cli import train_configs
from core_model.batching import Batch, encode_pairs, make_batches, source_ids
from core_model.config import DecodeConfig, TrainConfig
from core_model.corpora import Pair, bundled_corpus, load_pairs
from core_model.engine import InferenceEngine
from core_model.flops import matmul_peak_gflops, training_flops
from core_model.model import Seq2Seq
from core_model.numerics import keep_freed_memory, use_bf16
from core_model.pipeline import new_model
from core_model.replies import reply_texts
from core_model.serving import load_for_serving
from core_model.tokenizer import Tokenizer
from core_model.training import make_optimizer, train_step

# A training run compiles a kernel for each new shape of matrix product in its first epoch (about
# 3 ms each on a CPU with AMX, 40% of the tutorial preset's first steps there), and reuses them
# after. The warm-up is therefore one pass over the data's batches, of WARMUP_STEPS at most, and
# the steps timed are those of the next epoch (the batches shuffled anew, as training does).
WARMUP_STEPS = 200


@dataclass(frozen=True)
class WarmTraining:
    """A new model trained through its warm-up epoch, and the batches to time after it."""

    model: Seq2Seq
    optimizer: torch.optim.Optimizer
    config: TrainConfig
    bf16: bool
    timed: list[Batch]  # `--steps` batches of the next epochs


def warmed_up_training(args: argparse.Namespace, threads: int | None = None) -> WarmTraining:
    """A model of the configuration of args (preset and options) on args.data, through its warm-up."""
    model_config, train_config = train_configs(args, threads)
    if train_config.threads:
        torch.set_num_threads(train_config.threads)
    torch.manual_seed(train_config.seed)
    keep_freed_memory()
    pairs = load_pairs(args.data)
    tokenizer = Tokenizer.train((t for p in pairs for t in (p.prompt, p.reply)), model_config.vocab_size)
    model = new_model(model_config, tokenizer).train()
    optimizer = make_optimizer(model, train_config)
    bf16 = use_bf16(train_config.bf16)
    examples = encode_pairs(pairs, tokenizer, model.config)
    warmup = make_batches(examples, train_config.batch_size, shuffle=True, seed=train_config.seed)[:WARMUP_STEPS]
    for batch in warmup:
        train_step(model, optimizer, batch, train_config, bf16)
    timed: list[Batch] = []
    epoch = 1
    while len(timed) < args.steps:
        timed += make_batches(examples, train_config.batch_size, shuffle=True, seed=train_config.seed + epoch)
        epoch += 1
    return WarmTraining(model, optimizer, train_config, bf16, timed[: args.steps])


def bench_train(args: argparse.Namespace, threads: int | None = None) -> dict[str, Any]:
    """Time `--steps` optimizer steps on length-bucketed batches of the data, after a warm-up epoch."""
    warm = warmed_up_training(args, threads)
    model, optimizer, train_config, bf16 = warm.model, warm.optimizer, warm.config, warm.bf16
    model_config = model.config
    chars = tokens = 0
    flops = seconds = 0.0
    for batch in warm.timed:
        began = time.perf_counter()
        train_step(model, optimizer, batch, train_config, bf16)
        seconds += time.perf_counter() - began
        chars += batch.reply_chars
        tokens += batch.target_tokens
        flops += training_flops(model_config, batch)
    return {
        "preset": args.preset,
        "hidden": model_config.hidden_size,
        "embedding": model_config.embedding_dim,
        "layers": model_config.num_layers,
        "batch_size": train_config.batch_size,
        "vocab": model_config.vocab_size,
        "bf16": bf16,
        "threads": torch.get_num_threads(),
        "steps": args.steps,
        "train_seconds": round(seconds, 3),
        "target_chars_per_s": round(chars / seconds, 1),
        "target_tokens_per_s": round(tokens / seconds, 1),
        "chars_per_token": round(chars / tokens, 3),
        "gflops": round(flops / seconds / 1e9, 1),
        "peak_gflops": round(matmul_peak_gflops(torch.bfloat16 if bf16 else torch.float32), 1),
        "peak_gflops_fp32": round(matmul_peak_gflops(torch.float32), 1),
    }


def _prompts(path: Path | None) -> list[Pair]:
    pairs = load_pairs([path]) if path else bundled_corpus()
    return pairs[:256]


def bench_infer(model_dir: Path, decode: DecodeConfig, concurrency: int, prompts_file: Path | None) -> dict[str, Any]:
    """Single-thread latency of greedy, beam-5 and the given decoding; greedy engine throughput
    alone and concurrent."""
    torch.set_num_threads(1)
    loaded = load_for_serving(model_dir)  # what the bot decodes with
    model, tokenizer = loaded.model, loaded.tokenizer
    pairs = _prompts(prompts_file)
    sources = [source_ids(tokenizer, p.prompt, p.context, model.config) for p in pairs]

    def p50(config: DecodeConfig, n: int = 100, warmup: int = 10) -> float:
        # The first replies of a process run slower (lazily built kernels, cold caches): greedy,
        # timed first, measured 4.0-4.3 ms where the same decoding timed after it took 3.3.
        for source in sources[:warmup]:
            reply_texts(model, tokenizer, [source], config, loaded.memory)
        times = []
        for source in (sources * 2)[:n]:
            began = time.perf_counter()
            reply_texts(model, tokenizer, [source], config, loaded.memory)
            times.append((time.perf_counter() - began) * 1000)
        return statistics.median(times)

    greedy = replace(decode, strategy="greedy")
    beam = replace(decode, strategy="beam", beam_width=5)
    greedy_ms, beam_ms, default_ms = p50(greedy), p50(beam), p50(decode)
    texts = [p.prompt for p in pairs]

    async def throughput(parallel: int, total: int) -> float:
        engine = InferenceEngine(loaded, greedy, max_batch=max(parallel, 1), threads=1)
        semaphore = asyncio.Semaphore(parallel)

        async def one(text: str) -> None:
            async with semaphore:
                await engine.reply(text)

        await engine.reply(texts[0])  # start the worker and warm up
        began = time.perf_counter()
        await asyncio.gather(*(one(texts[i % len(texts)]) for i in range(total)))
        rate = total / (time.perf_counter() - began)
        await engine.close()
        return rate

    alone = asyncio.run(throughput(1, 100))
    together = asyncio.run(throughput(concurrency, max(concurrency * 8, 256)))
    return {
        "model": str(model_dir),
        "threads": 1,
        "greedy_p50_ms": round(greedy_ms, 2),
        "beam5_p50_ms": round(beam_ms, 2),
        "default_p50_ms": round(default_ms, 2),  # the decoding the bot uses (settings or options)
        "batch1_replies_per_s": round(alone, 1),
        "concurrent_replies_per_s": round(together, 1),
        "concurrency": concurrency,
        "speedup": round(together / alone, 1),
        "rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
