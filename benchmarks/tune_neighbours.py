"""chrF of the default decoding over a grid of the nearest-neighbour settings, on held-out pairs.

    python benchmarks/tune_neighbours.py MODEL_DIR HELD.tsv [--sharpness 2 4 8] [--agreement 2 4 8]
        [--share 0.3 0.5 0.7] [--neighbours 3 5] [--beam 5] [--strategy greedy beam]

SHARPNESS (how much the nearer neighbours outweigh the others), AGREEMENT_WEIGHT (the reranking's
weight of agreement with the neighbours' replies) and NEIGHBOURS (how many are looked up) are
constants of core_model/reranking.py, set here for each run; --share is
DecodeConfig.neighbour_share. Make HELD.tsv with holdout_split.py and
train MODEL_DIR on the rest, so that settings are not chosen on the pairs the figures are reported on.
One JSON line per setting.
"""

from __future__ import annotations

import argparse
import itertools
import json
from dataclasses import replace
from pathlib import Path

from core_model import replies, reranking
from core_model.config import DecodeConfig
from core_model.evaluation import evaluate_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("held", type=Path)
    parser.add_argument("--sharpness", type=float, nargs="+", default=[reranking.SHARPNESS])
    parser.add_argument("--agreement", type=float, nargs="+", default=[reranking.AGREEMENT_WEIGHT])
    parser.add_argument("--share", type=float, nargs="+", default=[DecodeConfig().neighbour_share])
    parser.add_argument("--neighbours", type=int, nargs="+", default=[reranking.NEIGHBOURS])
    parser.add_argument("--beam", type=int, default=DecodeConfig().beam_width)
    parser.add_argument("--strategy", nargs="+", default=[DecodeConfig().strategy])
    args = parser.parse_args()
    for strategy, neighbours, sharpness, agreement, share in itertools.product(
            args.strategy, args.neighbours, args.sharpness, args.agreement, args.share):
        # replies.py looks up replies.NEIGHBOURS, imported from reranking, which weighs reranking.NEIGHBOURS
        replies.NEIGHBOURS = reranking.NEIGHBOURS = neighbours
        reranking.SHARPNESS, reranking.AGREEMENT_WEIGHT = sharpness, agreement
        decode = replace(DecodeConfig(), beam_width=args.beam, strategy=strategy, neighbour_share=share)
        result = evaluate_model(args.model, args.held, decode)
        print(json.dumps({"strategy": strategy, "neighbours": neighbours, "sharpness": sharpness,
                          "agreement": agreement, "share": share, "chrf": round(result["chrf"], 2),
                          "repeat_rate": result["repeat_rate"]}), flush=True)


if __name__ == "__main__":
    main()
