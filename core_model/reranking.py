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
    return _chrf(_matches(hypothesis, reference), _totals(hypothesis), _totals(reference))


def consensus(texts: Sequence[str], log_probs: Sequence[float]) -> int:
    """Index of the candidate with the highest expected agreement with the n-best list, each
    candidate weighted by its probability relative to the best."""
    n = len(texts)
    if n <= 2:
        return 0  # with two candidates, agreement is symmetric: keep the more probable one
    top = max(log_probs)
    weights = [math.exp(score - top) for score in log_probs]
    grams = [char_ngrams(text) for text in texts]
    totals = [_totals(g) for g in grams]
    # Self-agreement is 1: a far more probable candidate keeps its lead.
    expected = list(weights)
    for i in range(n):
        for j in range(i + 1, n):
            matched = _matches(grams[i], grams[j])  # the same both ways; precision and recall swap
            expected[i] += weights[j] * _chrf(matched, totals[i], totals[j])
            expected[j] += weights[i] * _chrf(matched, totals[j], totals[i])
    return max(range(n), key=expected.__getitem__)


def _totals(grams: list[Counter[str]]) -> list[int]:
    return [counts.total() for counts in grams]


def _matches(first: list[Counter[str]], second: list[Counter[str]]) -> list[int]:
    """Per order, how many n-grams the two share (clipped counts)."""
    return [sum(min(count, b[gram]) for gram, count in a.items() if gram in b) for a, b in zip(first, second, strict=True)]


def _chrf(matched: list[int], hypothesis_totals: list[int], reference_totals: list[int]) -> float:
    precisions, recalls = [], []
    for both, hyp, ref in zip(matched, hypothesis_totals, reference_totals, strict=True):
        if hyp and ref:
            precisions.append(both / hyp)
            recalls.append(both / ref)
    if not precisions:
        return 0.0
    precision, recall = sum(precisions) / len(precisions), sum(recalls) / len(recalls)
    if precision + recall == 0:
        return 0.0
    beta2 = BETA * BETA
    return (1 + beta2) * precision * recall / (beta2 * precision + recall)
