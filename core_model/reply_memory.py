"""The pairs a model was trained on, searchable by prompt: which training prompts are nearest a new one.

Prompts are compared as TF-IDF vectors of their character 1-3-grams (lowercased, spaces kept as
word boundaries), by cosine similarity. Character n-grams match a reworded prompt better than
whole words do, in Korean above all, where one word takes many endings. Reranking uses the
replies of the nearest prompts to choose among beam search's candidates
(core_model/reranking.py): the model still writes every reply.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

ORDERS = (1, 2, 3)
# The most pairs a model folder keeps (the last ones given): the index of 20,000 prompts takes
# about 20 MB and a lookup about a millisecond.
MAX_PAIRS = 20_000


@dataclass(frozen=True)
class Neighbour:
    similarity: float  # cosine similarity of the prompts, 0..1
    prompt: str
    reply: str


class ReplyMemory:
    def __init__(self, prompts: Sequence[str], replies: Sequence[str]) -> None:
        if len(prompts) != len(replies):
            raise ValueError("prompts and replies differ in number")
        self.prompts, self.replies = list(prompts)[-MAX_PAIRS:], list(replies)[-MAX_PAIRS:]
        self._gram_ids: dict[str, int] = {}
        rows, cols, counts = [], [], []
        for row, prompt in enumerate(self.prompts):
            for gram, count in _grams(prompt).items():
                rows.append(row)
                cols.append(self._gram_ids.setdefault(gram, len(self._gram_ids)))
                counts.append(count)
        row_of, gram_of = np.array(rows, dtype=np.int64), np.array(cols, dtype=np.int64)
        n = len(self.prompts)
        document_frequency = np.bincount(gram_of, minlength=len(self._gram_ids))
        self._idf = np.log((1 + n) / (1 + document_frequency)) + 1  # smoothed, as scikit-learn's
        weights = (1 + np.log(np.array(counts, dtype=np.float64))) * self._idf[gram_of]
        norms = np.sqrt(np.bincount(row_of, weights=weights**2, minlength=n))
        weights /= np.maximum(norms[row_of], 1e-12)
        # Postings by n-gram: the prompts holding gram g are _rows[_starts[g]:_starts[g + 1]].
        order = np.argsort(gram_of, kind="stable")
        self._rows = row_of[order].astype(np.int32)
        self._weights = weights[order].astype(np.float32)
        self._starts = np.concatenate([[0], np.cumsum(document_frequency)])

    def __len__(self) -> int:
        return len(self.prompts)

    def nearest(self, prompt: str, k: int) -> list[Neighbour]:
        """The k training prompts most similar to prompt (similarity > 0), most similar first."""
        known = [(self._gram_ids[gram], count) for gram, count in _grams(prompt).items() if gram in self._gram_ids]
        if not known or k <= 0:
            return []
        ids = np.array([gram for gram, _ in known])
        query = (1 + np.log(np.array([count for _, count in known], dtype=np.float64))) * self._idf[ids]
        query /= np.linalg.norm(query)
        scores = np.zeros(len(self.prompts), dtype=np.float32)
        for gram, weight in zip(ids.tolist(), query.tolist(), strict=True):
            start, end = self._starts[gram], self._starts[gram + 1]
            scores[self._rows[start:end]] += weight * self._weights[start:end]  # a prompt appears once per gram
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [Neighbour(float(scores[i]), self.prompts[i], self.replies[i]) for i in top.tolist() if scores[i] > 0]

    def to_json(self) -> str:
        return json.dumps({"prompts": self.prompts, "replies": self.replies}, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> ReplyMemory:
        """Raises ValueError when text is not a memory written by to_json."""
        data = json.loads(text)
        if not isinstance(data, dict) or not all(
                isinstance(data.get(key), list) and all(isinstance(item, str) for item in data[key])
                for key in ("prompts", "replies")):
            raise ValueError("expected an object with the lists of strings 'prompts' and 'replies'")
        return cls(data["prompts"], data["replies"])


def _grams(text: str) -> Counter[str]:
    padded = f" {' '.join(text.lower().split())} "
    grams = Counter(padded[i : i + n] for n in ORDERS for i in range(len(padded) - n + 1))
    del grams[" "]  # a lone space is in every prompt: it would make a blank prompt match them all
    return grams

