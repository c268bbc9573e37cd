"""chrF of the default decoding over a grid of the nearest-neighbour settings, on held-out pairs.

    python benchmarks/tune_neighbours.py MODEL_DIR HELD.tsv [--sharpness 2 4 8] [--agreement 2 4 8]
        [--share 0.3 0.5 0.7] [--beam 5] [--strategy beam]

SHARPNESS (how much the nearer neighbours outweigh the others) and AGREEMENT_WEIGHT (the reranking's
weight of agreement with the neighbours' replies) are constants of core_model/reranking.py, set here
for each run; --share is DecodeConfig.neighbour_share. Make HELD.tsv with holdout_split.py and
train MODEL_DIR on the rest, so that settings are not chosen on the pairs the figures are reported on.
One JSON line per setting.
"""

from __future__ import annotations

import argparse
import itertools
import json
from dataclasses import replace
from pathlib import Path

from core_model import reranking
from core_model.config import DecodeConfig
from core_model.evaluation import evaluate_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("held", type=Path)
    parser.add_argument("--sharpness", type=float, nargs="+", default=[reranking.SHARPNESS])
    parser.add_argument("--agreement", type=float, nargs="+", default=[reranking.AGREEMENT_WEIGHT])
    parser.add_argument("--share", type=float, nargs="+", default=[DecodeConfig().neighbour_share])
    parser.add_argument("--beam", type=int, default=DecodeConfig().beam_width)
    parser.add_argument("--strategy", default=DecodeConfig().strategy)
    args = parser.parse_args()
    base = replace(DecodeConfig(), beam_width=args.beam, strategy=args.strategy)
    for sharpness, agreement, share in itertools.product(args.sharpness, args.agreement, args.share):
        reranking.SHARPNESS, reranking.AGREEMENT_WEIGHT = sharpness, agreement
        result = evaluate_model(args.model, args.held, replace(base, neighbour_share=share))
        print(json.dumps({"sharpness": sharpness, "agreement": agreement, "share": share,
                          "chrf": round(result["chrf"], 2), "repeat_rate": result["repeat_rate"]}), flush=True)


if __name__ == "__main__":
    main()
