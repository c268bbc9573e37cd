"""The serving model's matrix products in fp16 (fbgemm, as core_model/serving.py packs them) and in
bf16 (oneDNN), by the number of rows multiplied: the time of a product once its kernel exists, the
time of the first product of a row count (when oneDNN compiles a kernel for it), and the peak RSS
after bf16 products of every row count up to --rows.

    python benchmarks/serving_products.py [--rows 64] [--vocab 8000] [--embedding 256] [--hidden 384]

Batched decoding multiplies 64 rows at a time and one prompt a single row. bf16 would make a batch's
products several times faster, but it is slower for a single row, oneDNN compiles a kernel for every
new row count, and the compiled kernels stay in memory. Prints one JSON line per product shape.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
import warnings
from collections.abc import Callable

import torch
from torch import nn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--vocab", type=int, default=8000)
    parser.add_argument("--embedding", type=int, default=256)
    parser.add_argument("--hidden", type=int, default=384)
    args = parser.parse_args()
    torch.set_num_threads(1)
    E, H = args.embedding, args.hidden
    shapes = {  # (inputs, outputs) of the default model's products
        "output layer": (E, args.vocab),
        "attention keys": (H, H),
        "encoder input gates": (E, 3 * H),
        "encoder hidden gates": (H // 2, 3 * H // 2),
    }
    for name, (inputs, outputs) in shapes.items():
        linear = nn.Linear(inputs, outputs)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the eager-mode API's notice that torchao is its successor
            fp16 = torch.ao.quantization.quantize_dynamic(nn.Sequential(linear), {nn.Linear}, dtype=torch.float16)
        weight, bias = linear.weight.detach().bfloat16(), linear.bias.detach().bfloat16()
        result: dict[str, object] = {"product": name, "shape": [inputs, outputs]}
        for rows in sorted({1, 8, args.rows}):
            x = torch.randn(rows, inputs)
            result[f"fp16_us_{rows}_rows"] = _microseconds(lambda x=x, fp16=fp16: fp16(x))
            result[f"bf16_us_{rows}_rows"] = _microseconds(
                lambda x=x, w=weight, b=bias: torch.nn.functional.linear(x.bfloat16(), w, b))
        firsts = []
        for rows in range(1, args.rows + 1):  # each row count's first bf16 product
            x = torch.randn(rows, inputs).bfloat16()
            began = time.perf_counter()
            torch.nn.functional.linear(x, weight, bias)
            firsts.append((time.perf_counter() - began) * 1e6)
        result["bf16_first_product_us_median"] = round(sorted(firsts)[len(firsts) // 2], 1)
        result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        print(json.dumps(result))


def _microseconds(run: Callable[[], object], repeats: int = 200) -> float:
    for _ in range(10):
        run()
    began = time.perf_counter()
    for _ in range(repeats):
        run()
    return round((time.perf_counter() - began) / repeats * 1e6, 1)


if __name__ == "__main__":
    main()
