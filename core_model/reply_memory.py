"""The pairs a model was trained on, searchable by prompt: which training prompts are nearest a new one.

Prompts are compared as TF-IDF vectors of their character 1-3-grams (lowercased, spaces kept as
word boundaries), by cosine similarity. Character n-grams match a reworded prompt better than
whole words do, in Korean above all, where one word takes many endings. Reranking uses the
replies of the nearest prompts to choose among beam search's candidates
(core_model/reranking.py): the model still writes every reply.
"""

from __future__ import annotations

import json
from array import array
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

ORDERS = (1, 2, 3)
# The most n-grams the index holds, counted over the last pairs given: about 14 MB of index, which
# keeps all 10,575 Korean training pairs but 13,000 of 117,000 English chat turns (longer prompts).
# A lookup then reads about a million postings at worst: 3 ms with English prompts, 0.3 with Korean.
MAX_NGRAMS = 2_000_000


@dataclass(frozen=True)
class Neighbour:
    similarity: float  # cosine similarity of the prompts, 0..1
    prompt: str
    reply: str


class ReplyMemory:
    def __init__(self, prompts: Sequence[str], replies: Sequence[str]) -> None:
        if len(prompts) != len(replies):
            raise ValueError("prompts and replies differ in number")
        kept, total = 0, 0
        for prompt in reversed(prompts):
            total += len(_grams(prompt))
            if total > MAX_NGRAMS:
                break
            kept += 1
        self.prompts, self.replies = list(prompts)[len(prompts) - kept :], list(replies)[len(replies) - kept :]
        self._gram_ids: dict[str, int] = {}
        # Compact arrays, not lists of Python ints, which would take ten times the memory.
        cols, counts, lengths = array("i"), array("f"), array("i")
        for prompt in self.prompts:
            grams = _grams(prompt)
            cols.extend(self._gram_ids.setdefault(gram, len(self._gram_ids)) for gram in grams)
            counts.extend(grams.values())
            lengths.append(len(grams))
        gram_of = np.frombuffer(cols, dtype=np.int32)
        row_of = np.repeat(np.arange(len(self.prompts), dtype=np.int32), np.frombuffer(lengths, dtype=np.int32))
        n = len(self.prompts)
        document_frequency = np.bincount(gram_of, minlength=len(self._gram_ids))
        # smoothed IDF, as scikit-learn's
        self._idf = (np.log((1 + n) / (1 + document_frequency)) + 1).astype(np.float32)
        weights = np.log(np.frombuffer(counts, dtype=np.float32))  # sublinear TF: 1 + log(count)
        weights += 1
        weights *= self._idf[gram_of]
        norms = np.sqrt(np.bincount(row_of, weights=weights * weights, minlength=n)).astype(np.float32)
        weights /= np.maximum(norms, 1e-12)[row_of]
        # Postings by n-gram: the prompts holding gram g are _rows[_starts[g]:_starts[g + 1]].
        order = np.argsort(gram_of, kind="stable")
        self._rows, self._weights = row_of[order], weights[order]
        self._starts = np.concatenate([[0], np.cumsum(document_frequency)])

    def nearest(self, prompt: str, k: int) -> list[Neighbour]:
        """The k training prompts most similar to prompt (similarity > 0), most similar first."""
        known = [(self._gram_ids[gram], count) for gram, count in _grams(prompt).items() if gram in self._gram_ids]
        if not known or k <= 0:
            return []
        ids = np.array([gram for gram, _ in known])
        query = (1 + np.log(np.array([count for _, count in known], dtype=np.float32))) * self._idf[ids]
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
