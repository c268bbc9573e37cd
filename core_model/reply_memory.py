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
from functools import cached_property

import numpy as np
import torch

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


@dataclass(frozen=True)
class _Index:
    prompts: list[str]
    replies: list[str]
    gram_ids: dict[str, int]
    idf: np.ndarray  # [grams] float32
    starts: np.ndarray  # [grams + 1]: the postings of gram g are rows/weights[starts[g]:starts[g + 1]]
    rows: np.ndarray  # int32 prompt of each posting
    weights: np.ndarray  # float32 its TF-IDF weight, each prompt's vector normalised


class ReplyMemory:
    """Training pairs; their index is built when first needed, so loading a model folder only to
    read its metrics or weights (retraining, version checks) does not pay for it."""

    def __init__(self, prompts: Sequence[str], replies: Sequence[str]) -> None:
        if len(prompts) != len(replies):
            raise ValueError("prompts and replies differ in number")
        self._given = (list(prompts), list(replies))

    @property
    def prompts(self) -> list[str]:
        """The prompts kept (the last ones that fit MAX_NGRAMS), oldest first."""
        return self._index.prompts

    @property
    def replies(self) -> list[str]:
        return self._index.replies

    def indexed(self) -> ReplyMemory:
        """self, with its index built now (e.g. while a model loads rather than at its first reply)."""
        self._index  # noqa: B018 (built and cached on first access)
        return self

    @cached_property
    def _index(self) -> _Index:
        given_prompts, given_replies = self._given
        gram_ids: dict[str, int] = {}
        # Newest pair first, until the n-gram budget is spent. Compact arrays, not lists of Python
        # ints, which would take ten times the memory.
        cols, counts, lengths = array("i"), array("f"), array("i")
        for prompt in reversed(given_prompts):
            grams = _grams(prompt)
            if len(cols) + len(grams) > MAX_NGRAMS:
                break
            cols.extend(gram_ids.setdefault(gram, len(gram_ids)) for gram in grams)
            counts.extend(grams.values())
            lengths.append(len(grams))
        n = len(lengths)
        prompts, replies = given_prompts[len(given_prompts) - n :], given_replies[len(given_replies) - n :]
        gram_of = np.frombuffer(cols, dtype=np.int32)
        # the k-th prompt read (from the end) is prompts[n - 1 - k]
        row_of = np.repeat(np.arange(n - 1, -1, -1, dtype=np.int32), np.frombuffer(lengths, dtype=np.int32))
        document_frequency = np.bincount(gram_of, minlength=len(gram_ids))
        idf = (np.log((1 + n) / (1 + document_frequency)) + 1).astype(np.float32)  # smoothed, as scikit-learn's
        weights = np.log(np.frombuffer(counts, dtype=np.float32))  # sublinear TF: 1 + log(count)
        weights += 1
        weights *= idf[gram_of]
        norms = np.sqrt(np.bincount(row_of, weights=weights * weights, minlength=n)).astype(np.float32)
        weights /= np.maximum(norms, 1e-12)[row_of]
        order = np.argsort(gram_of, kind="stable")
        return _Index(prompts, replies, gram_ids, idf, np.concatenate([[0], np.cumsum(document_frequency)]),
                      row_of[order], weights[order])

    def nearest(self, prompt: str, k: int) -> list[Neighbour]:
        """The k training prompts most similar to prompt (similarity > 0), most similar first."""
        index = self._index
        known = [(index.gram_ids[gram], count) for gram, count in _grams(prompt).items() if gram in index.gram_ids]
        if not known or k <= 0:
            return []
        ids = np.array([gram for gram, _ in known])
        query = (1 + np.log(np.array([count for _, count in known], dtype=np.float32))) * index.idf[ids]
        query /= np.linalg.norm(query)
        # Every posting of the query's n-grams in one array, summed per prompt in one pass (a loop
        # over the n-grams took half as long again).
        starts = index.starts[ids]
        lengths = index.starts[ids + 1] - starts
        postings = np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(lengths.sum())
        scores = np.bincount(index.rows[postings], weights=index.weights[postings] * np.repeat(query, lengths),
                             minlength=len(index.prompts))  # a prompt appears once per n-gram
        # torch's top-k over the 10,575 Korean prompts takes 30 us where numpy's argpartition took 200.
        best, top = torch.from_numpy(scores).topk(min(k, len(scores)))
        return [Neighbour(score, index.prompts[i], index.replies[i])
                for score, i in zip(best.tolist(), top.tolist(), strict=True) if score > 0]

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
