"""Forward and backward of two GRU layers of the tutorial's size, in fp32 and under bf16 autocast.

Whether autocast reaches the matrix products inside PyTorch's GRU (core_model/numerics.py): the
GRU's outputs stay fp32 either way, but their difference from fp32's and the time tell.

    python benchmarks/gru_autocast.py [--steps 6] [--batch 64] [--size 500] [--repeats 20]
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torch import nn


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=6, help="time steps (a Korean reply is about 6 tokens)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    torch.manual_seed(0)
    gru = nn.GRU(args.size, args.size, num_layers=2)
    x = torch.randn(args.steps, args.batch, args.size, requires_grad=True)

    def step(bf16: bool) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out, _ = gru(x)
        out.float().sum().backward()
        return out.detach()

    def milliseconds(bf16: bool) -> float:
        for _ in range(3):
            step(bf16)
        began = time.perf_counter()
        for _ in range(args.repeats):
            step(bf16)
        return (time.perf_counter() - began) / args.repeats * 1000

    difference = (step(False) - step(True)).abs().max().item()
    print(json.dumps({"steps": args.steps, "batch": args.batch, "size": args.size, "layers": 2,
                      "threads": torch.get_num_threads(), "fp32_ms": round(milliseconds(False), 1),
                      "autocast_ms": round(milliseconds(True), 1), "autocast_output_dtype": str(step(True).dtype),
                      "max_difference": round(difference, 5)}))


if __name__ == "__main__":
    main()
