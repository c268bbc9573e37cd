"""Where a training step's time goes: encoder, decoder, output layer and loss, backward, clipping and
optimizer. Mean milliseconds over the steps after a warm-up epoch, as `chatbot bench train` times
them (bot/benchmarking.py) (the kernels compiled for each shape of product are then mostly in the cache).

    python benchmarks/train_step_parts.py ../shared/data/korean_chatbot/train.tsv [--preset tutorial] [--steps 100]

Run it through the `chatbot` command's environment settings (huge pages, kernel cache), as here.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from core_model.numerics import use_huge_pages, use_large_kernel_cache

use_huge_pages()  # before the first tensor, as the chatbot command does
use_large_kernel_cache()

import torch  # noqa: E402

from bot.benchmarking import warmed_up_training  # noqa: E402
from bot.cli import build_parser  # noqa: E402
from core_model.numerics import autocast  # noqa: E402
from core_model.smoothed_nll import smoothed_nll  # noqa: E402
from core_model.tokenizer import PAD_ID  # noqa: E402
from core_model.training import clipped_step, noised_prompts  # noqa: E402

PARTS = ("noise", "encoder", "decoder", "output_and_loss", "backward", "clip_and_optimizer")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data")
    parser.add_argument("--preset", default="tutorial")
    parser.add_argument("--steps", type=int, default=100)
    args = parser.parse_args()
    warm = warmed_up_training(build_parser().parse_args(
        ["bench", "train", "--data", args.data, "--preset", args.preset, "--steps", str(args.steps)]))
    model, optimizer, train_config, bf16 = warm.model, warm.optimizer, warm.config, warm.bf16
    times: dict[str, list[float]] = {part: [] for part in PARTS}
    for batch in warm.timed:
        marks = [time.perf_counter()]
        src, src_lengths = noised_prompts(batch, train_config)
        marks.append(time.perf_counter())
        with autocast(bf16):
            prompt_embedded, reply_embedded = model._embed_together(src, batch.tgt_in)
            memory, state = model.encode(src, src_lengths, prompt_embedded)
            marks.append(time.perf_counter())
            features, _ = model.decode(batch.tgt_in, state, memory, reply_embedded)
            marks.append(time.perf_counter())
            keep = batch.targets != PAD_ID
            logits = model.logits(features[keep])
            loss = smoothed_nll(torch.log_softmax(logits.float(), dim=-1), batch.targets[keep],
                                train_config.label_smoothing)
        marks.append(time.perf_counter())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        marks.append(time.perf_counter())
        clipped_step(model, optimizer, train_config.grad_clip)
        marks.append(time.perf_counter())
        for part, began, ended in zip(PARTS, marks[:-1], marks[1:], strict=True):
            times[part].append((ended - began) * 1000)
    means = {part: round(statistics.mean(values), 1) for part, values in times.items()}
    print(json.dumps({"preset": args.preset, "steps": len(warm.timed), "ms": means,
                      "step_ms": round(sum(means.values()), 1)}))


if __name__ == "__main__":
    main()
