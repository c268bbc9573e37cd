"""Choosing among beam search's n-best replies by consensus (minimum Bayes risk decoding).

The most probable reply of a chit-chat model is often a short, generic one. Consensus picks the
candidate that agrees most, in character n-grams, with the other candidates, each weighted by its
probability: the reply the model "expects" to be closest to the right one (Kumar & Byrne 2004;
Freitag et al. 2022 show it beats plain beam search on the metric used as the agreement measure).
The measure here is chrF's (character n-grams up to 6, spaces ignored, recall weighted by beta 2).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

MAX_ORDER = 6
BETA = 2.0


def char_ngrams(text: str) -> list[Counter[str]]:
    """Counts of character n-grams of orders 1..MAX_ORDER, whitespace removed (as chrF does)."""
    chars = "".join(text.split())
    return [Counter(chars[i : i + n] for i in range(len(chars) - n + 1)) for n in range(1, MAX_ORDER + 1)]


def agreement(hypothesis: list[Counter[str]], reference: list[Counter[str]]) -> float:
    """Sentence chrF of a hypothesis against a reference, both given as char_ngrams(), in 0..1."""
    precisions, recalls = [], []
    for hyp, ref in zip(hypothesis, reference, strict=True):
        if not hyp or not ref:
            continue
        matched = sum((hyp & ref).values())
        precisions.append(matched / hyp.total())
        recalls.append(matched / ref.total())
    if not precisions:
        return 0.0
    precision, recall = sum(precisions) / len(precisions), sum(recalls) / len(recalls)
    if precision + recall == 0:
        return 0.0
    beta2 = BETA * BETA
    return (1 + beta2) * precision * recall / (beta2 * precision + recall)


def consensus(texts: Sequence[str], log_probs: Sequence[float]) -> int:
    """Index of the candidate with the highest expected agreement with the n-best list, each
    candidate weighted by its probability relative to the best."""
    if len(texts) <= 2:
        return 0  # with two candidates, agreement is symmetric: keep the more probable one
    top = max(log_probs)
    weights = [math.exp(score - top) for score in log_probs]
    grams = [char_ngrams(text) for text in texts]

    def expected(i: int) -> float:  # self-agreement is 1: a far more probable candidate keeps its lead
        return weights[i] + sum(weights[j] * agreement(grams[i], grams[j]) for j in range(len(texts)) if j != i)

    return max(range(len(texts)), key=expected)
