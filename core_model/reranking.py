"""Choosing among beam search's n-best replies: by consensus, or by the replies of similar prompts.

Consensus (minimum Bayes risk decoding). The most probable reply of a chit-chat model is often a
short, generic one. Consensus picks the candidate that agrees most, in character n-grams, with the
other candidates, each weighted by its probability: the reply the model "expects" to be closest to
the right one (Kumar & Byrne 2004; Freitag et al. 2022 show it beats plain beam search on the metric
used as the agreement measure). The measure here is chrF's (character n-grams up to 6, spaces
ignored, recall weighted by beta 2).

Neighbours. The candidate that agrees most with the replies the nearest training prompts got
(core_model/reply_memory.py), traded against the candidate's score in its search (the
length-normalised log-probability under the guided mixture, core_model/guidance.py). A prompt
worded unlike any the model was trained on often gets a fluent reply that fits another prompt; the
replies of the prompts closest in characters tell which candidate fits this one. The same replies
guide the decoding that makes the candidates (core_model/guidance.py). Held-out Korean pairs (600
pairs kept out of train.tsv, a model trained 600 s on the rest): chrF 28.2 with beam search of 5
and greedy's reply guided and reranked so, where the retrieval of the nearest prompt's reply scores
28.0. The best candidate for each prompt, picked with the reference, would score 36.5 (Korean
valid.tsv); among the replies of the 20 nearest prompts, 48.6, so a sharper judge of which
neighbour fits is what would help most: the model's own log-probability is a poor one (23.5 when
it alone chooses among the candidates, 21.8 when the neighbours' replies are candidates too).
The model's own log-probability per token was traded against the agreement before the search's
score. It rewarded any free continuation written after a neighbour's reply, since the model
found the guided words improbable and its own words probable: 590 of the 6,338 replies to
ccc_chitchat's validation prompts were a neighbour's reply with more words after it (1 with the
search's score), and the default model answered "See you! Teots youe". With the search's score,
chrF went from 28.59 to 28.54 on Korean valid.tsv and from 11.16 to 10.11 on ccc_chitchat's (its
replies 61 characters long on average, against 70; chrF weighs recall twice as much as precision).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

from core_model.reply_memory import Neighbour

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


# How many neighbours count, and how sharply the nearer ones outweigh the others: each counts with
# its similarity ** 16. The weight of agreement (0..1) against the search's score (tuned when that
# was the model's own log-probability per token, of a similar scale).
# Held-out Korean chrF (600 pairs kept out of train.tsv, benchmarks/tune_neighbours.py), with
# BM25 similarities: 28.2 so; 27.4 with the settings tuned for cosine similarities (** 4,
# weight 4), 27.5-28.1 for the other powers (4-32) and weights (4-16); neighbour shares of 0.7 and
# 0.9 instead of 0.5 scored 27.8-28.1, and 0.3 scored 27.2-27.7.
NEIGHBOURS, SHARPNESS = 3, 16
AGREEMENT_WEIGHT = 8.0


def neighbour_weights(neighbours: Sequence[Neighbour]) -> list[float]:
    """How much each neighbour counts: similarity ** SHARPNESS, normalised to sum to 1 (all 0 when
    none is similar at all). The guidance of decoding weighs them the same way."""
    weights = [n.similarity**SHARPNESS for n in neighbours]
    total = sum(weights)
    return [weight / total for weight in weights] if total > 0 else [0.0] * len(weights)


def closest_to_neighbours(texts: Sequence[str], scores: Sequence[float], neighbours: Sequence[Neighbour]) -> int:
    """Index of the candidate with the best score (its search's) plus AGREEMENT_WEIGHT times its
    mean agreement with the neighbours' replies (see neighbour_weights)."""
    nearest = neighbours[:NEIGHBOURS]
    weighted = [(char_ngrams(n.reply), weight) for n, weight in zip(nearest, neighbour_weights(nearest), strict=True)]
    if not texts or not any(weight for _, weight in weighted):
        return 0

    def score(i: int) -> float:
        grams = char_ngrams(texts[i])
        fit = sum(agreement(grams, reply) * weight for reply, weight in weighted)
        return scores[i] + AGREEMENT_WEIGHT * fit

    return max(range(len(texts)), key=score)


def _totals(grams: list[Counter[str]]) -> list[int]:
    return [counts.total() for counts in grams]


def _matches(first: list[Counter[str]], second: list[Counter[str]]) -> list[int]:
    """Per order, how many n-grams the two share (clipped counts). When either side holds each of its
    n-grams once (most orders of most replies), that is the size of the keys' intersection, which
    Python's sets count in C."""
    return [len(a.keys() & b.keys()) if len(a) == a.total() or len(b) == b.total()
            else sum(min(count, b[gram]) for gram, count in a.items() if gram in b)
            for a, b in zip(first, second, strict=True)]


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
