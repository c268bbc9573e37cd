"""Reply-quality measures: corpus chrF (sacrebleu), distinct-n, repetition and empty rates."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from sacrebleu.metrics import CHRF


def chrf(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    return float(CHRF().corpus_score(list(hypotheses), [list(references)]).score)


def distinct_n(token_lists: Sequence[Sequence[str]], n: int) -> float:
    """Share of distinct n-grams among all n-grams of all replies."""
    grams = [tuple(tokens[i : i + n]) for tokens in token_lists for i in range(len(tokens) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def repeats_an_ngram(tokens: Sequence[str], n: int = 1, times: int = 3) -> bool:
    """True when some n-gram occurs `times` times or more in one reply (a degenerate loop)."""
    counts = Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
    return any(count >= times for count in counts.values())


def reply_quality(replies: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    words = [reply.split() for reply in replies]
    count = max(len(replies), 1)
    return {
        "chrf": chrf(replies, references),
        "distinct_1": distinct_n(words, 1),
        "distinct_2": distinct_n(words, 2),
        "repeat_rate": sum(any(repeats_an_ngram(w, n) for n in (1, 2, 3)) for w in words) / count,
        "empty_rate": sum(not reply.strip() for reply in replies) / count,
    }
