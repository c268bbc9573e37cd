"""Score a model on a pair file: generated-reply quality, teacher-forced bits/char, latency."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

from core_model import checkpoint
from core_model.batching import encode_pairs, make_batches, source_ids
from core_model.config import DecodeConfig
from core_model.corpora import load_pairs
from core_model.metrics import reply_quality
from core_model.numerics import use_bf16
from core_model.replies import reply_texts
from core_model.serving import packed_for_serving, served_memory
from core_model.training import evaluate

BATCH = 64
LATENCY_SAMPLE = 50


def evaluate_model(model_dir: Path, data: Path, decode: DecodeConfig, limit: int | None = None) -> dict[str, Any]:
    loaded = checkpoint.load(model_dir)
    model, tokenizer = loaded.model, loaded.tokenizer
    serving = packed_for_serving(model)  # replies and latency as the bot produces them
    memory = served_memory(loaded, serving)
    pairs = load_pairs([data])[:limit]
    if not pairs:
        raise ValueError(f"{data}: no pairs to evaluate")
    sources = [source_ids(tokenizer, p.prompt, p.context, model.config) for p in pairs]
    replies: list[str] = []
    for start in range(0, len(sources), BATCH):
        replies.extend(reply_texts(serving, tokenizer, sources[start : start + BATCH], decode, memory))
    latencies = []
    for source in sources[:LATENCY_SAMPLE]:
        began = time.perf_counter()
        reply_texts(serving, tokenizer, [source], decode, memory)
        latencies.append((time.perf_counter() - began) * 1000)
    _, bits_per_char = evaluate(model, make_batches(encode_pairs(pairs, tokenizer, model.config), BATCH,
                                                    shuffle=False), use_bf16(None))
    return {
        "pairs": len(pairs),
        **reply_quality(replies, [p.reply for p in pairs]),
        "bits_per_char": bits_per_char,
        "reply_p50_ms": statistics.median(latencies),
        "samples": [{"prompt": p.prompt, "reply": r, "reference": p.reply} for p, r in zip(pairs[:5], replies[:5], strict=False)],
    }
