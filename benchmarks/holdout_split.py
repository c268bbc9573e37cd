"""Split a training TSV into a tuning part and a held-out part, so that decoding settings are
chosen on pairs the model never saw without touching the file the figures are reported on.

    python benchmarks/holdout_split.py ../shared/data/korean_chatbot/train.tsv OUT_DIR [--held 600] [--seed 7]

Writes OUT_DIR/train.tsv and OUT_DIR/held.tsv (same header). Then, for example:

    chatbot train --data OUT_DIR/train.tsv --valid ../shared/data/korean_chatbot/valid.tsv --max-seconds 600 --out T
    chatbot eval --model T --data OUT_DIR/held.tsv --json [decoding options]
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("train", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--held", type=int, default=600, help="pairs held out (default 600)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    header, *lines = args.train.read_text(encoding="utf-8").splitlines(keepends=True)
    held = set(random.Random(args.seed).sample(range(len(lines)), min(args.held, len(lines))))
    args.out.mkdir(parents=True, exist_ok=True)
    for name, keep in (("train.tsv", False), ("held.tsv", True)):
        chosen = [line for i, line in enumerate(lines) if (i in held) == keep]
        (args.out / name).write_text(header + "".join(chosen), encoding="utf-8")
        print(f"{args.out / name}: {len(chosen)} pairs")


if __name__ == "__main__":
    main()
