"""A retraining's data: the mined pairs, split stably into train and validation, plus base replay."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bot.database import Database
from core_model.corpora import Pair
from storage.mining import MiningRules, mine_pairs


def write_snapshot(database: Database, rules: MiningRules, base_pairs: Callable[[], Sequence[Pair]],
                   folder: Path, *, valid_share: float, replay_ratio: float) -> dict[str, Any]:
    """Write folder/train.tsv and folder/valid.tsv; return the mined snapshot's size and hash."""
    with database.reads.begin() as session:
        mined = mine_pairs(session, rules)
        pairs = [Pair(pair.prompt, pair.reply, pair.context) for pair in mined]
    train = [pair for pair in pairs if not _held_out(pair, valid_share)]
    valid = [pair for pair in pairs if _held_out(pair, valid_share)]
    if not valid and len(train) > 1:  # a tiny snapshot: still score on a pair it did not train on
        valid.append(train.pop())
    base = list(base_pairs())
    random.Random(len(pairs)).shuffle(base)
    train += base[:int(len(train) * replay_ratio)]
    _write_tsv(folder / "train.tsv", train)
    _write_tsv(folder / "valid.tsv", valid)
    return {"pairs": mined.size, "sha256": mined.sha256}


def _held_out(pair: Pair, share: float) -> bool:
    """The same pair is always in the same split, so versions are scored on comparable data."""
    digest = hashlib.sha256(f"{pair.prompt}\t{pair.reply}".encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < share


def _write_tsv(path: Path, pairs: Sequence[Pair]) -> None:
    clean = [tuple(" ".join(text.split()) for text in (p.prompt, p.reply, p.context)) for p in pairs]
    with path.open("w", encoding="utf-8") as out:
        out.write("prompt\treply\tcontext\n")
        out.writelines(f"{prompt}\t{reply}\t{context}\n" for prompt, reply, context in clean if prompt and reply)
