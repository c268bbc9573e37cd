"""The pairs a model was trained on, searchable by prompt: which training prompts are nearest a new one.

Prompts are compared by their characters and character pairs (1-2-grams, lowercased, spaces kept
as word boundaries), scored with Okapi BM25. Character n-grams match a reworded prompt better than
whole words do, in Korean above all, where one word takes many endings. BM25 rather than the cosine
of TF-IDF vectors: the nearest prompt's reply scored chrF 28.2 against 27.4 on the Korean
valid.tsv, and 27.9 against 27.0 on 600 pairs held out of train.tsv (k1 and b from 0.5 to 2 and
0.3 to 1 all scored 27.4-28.5). 1-2-grams rather than 1-3-grams: a Hangul syllable is already
much of a word, and its 3-grams tie a prompt to one wording. With the vectors' ranking (below),
guided replies scored 30.35 against 29.39 on the held-out pairs, 29.04-29.85 against 28.55-29.54
on valid.tsv with five models, and the same on ccc_chitchat (12.50 against 12.49); lookups took
0.24 ms against 0.26-0.40 (Korean) and 2.9 against 3.8 (English). 1-grams alone or 1-4-grams scored
less (held-out 29.4 and 28.3 for the nearest reply, against 30.1 for 1-2-grams and 29.3 for
1-3), and so did Hangul split into its letters (jamo 1-3-grams: 29.0), spaces dropped (29.4), or a
share of BM25 over whole words in the blend (0.1-0.3 of it: 27.1-30.0, and less on five valid.tsv
models). Reranking uses the replies of the nearest prompts to choose among beam search's
candidates (core_model/reranking.py): the model still writes every reply.

A memory's first pairs may be its base: those the model was built with (its training corpus),
rather than learned from the chats. A retrained model's memory keeps them and takes the chats'
pairs as they are now (with_learned). Before, a retrain on a hundred chat pairs left a memory of
those and as many replayed corpus pairs; the default model, given such a memory, answered "hello"
with "Only if we're programmed to." and "thanks" with "Mary Shelley." (with its own: "Hi" and
"You're welcome!").

Given the prompts' vectors (indexed, core_model/prompt_vectors.py) and the new prompt's, the POOL
prompts nearest in characters are ranked again by a blend of their BM25 similarity and the cosine
of the vectors: the model's encoder knows which wordings it answers alike, where characters tell
only what two wordings share. With 1-3-grams, guided greedy replies (the default) scored chrF
29.4 against 27.75 on 600 Korean pairs held out of train.tsv (a model trained 600 s on the rest; 29.2-29.5 with
VECTOR_SHARE 0.33-0.5, and 29.0, 29.4 and 29.3 with pools of 10, 20 and 50). On valid.tsv, four
models trained 600 s scored 28.55-29.54 against 27.94-28.75 (gains of 0.2 to 1.5), and on
ccc_chitchat's 12.49 against 12.17. None of these helped: adding to the blend the model's
log-probability of each neighbour's reply (or its pointwise mutual information with the prompt) or
the reply's likeness in characters to the prompt; a vote over the pool's replies; a share of the
vectors that falls as BM25's best similarity rises; vectors trained to bring together prompts that
share a reply, or prompts and their replies; choosing among the pool's replies the one that agrees
most with the others, weighted by their blended similarities (minimum Bayes risk; with 1-3-grams,
the reply chosen scored 29.8 against 29.3 for the nearest one held out, but 29.4 against 29.26 on
valid.tsv, and less with other weightings).
"""

from __future__ import annotations

import json
from array import array
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

from core_model.corpora import Pair

ORDERS = (1, 2)
K1, B = 1.2, 0.75  # BM25's usual saturation of repeated n-grams and normalisation by prompt length
# The most n-grams the index holds, counted over the last pairs given: about 8 MB of index, which
# keeps all 10,575 Korean training pairs (250,000 n-grams) but 13,000 of 117,000 English chat turns
# (longer prompts). An English lookup then takes about 3 ms, a Korean one 0.25. Twice the English
# pairs scored chrF 12.98 against 12.83 for the nearest reply, but took 6.4 ms a lookup and twice
# the vectors' load time.
MAX_NGRAMS = 1_000_000
# How many of the prompts nearest in characters are ranked again with the vectors, and the share of
# the vectors' cosine in the similarity they are ranked by (see above).
POOL, VECTOR_SHARE = 20, 0.4


@dataclass(frozen=True)
class Neighbour:
    # BM25 score of the prompt for the query over the query's score against itself: 1 for the same
    # prompt, 0 for one sharing no n-gram (slightly above 1 for a shorter prompt holding them all).
    # When the prompts' vectors are known, blended with their cosine (VECTOR_SHARE) and kept >= 0.
    similarity: float
    prompt: str
    reply: str
    # The reply's token ids, when the memory knows its model's tokenizer (see ReplyMemory.indexed):
    # decoding guided by the reply then need not tokenise it on every request.
    reply_ids: list[int] | None = None


@dataclass(frozen=True)
class _Index:
    prompts: list[str]
    replies: list[str]
    gram_ids: dict[str, int]
    idf: np.ndarray  # [grams] float32
    unseen_idf: float  # that of an n-gram no prompt holds
    mean_length: float  # n-grams per prompt
    starts: np.ndarray  # [grams + 1]: the postings of gram g are rows/weights[starts[g]:starts[g + 1]]
    rows: np.ndarray  # int32 prompt of each posting
    weights: np.ndarray  # float32 the n-gram's BM25 term score in that prompt


class ReplyMemory:
    """Training pairs; their index is built when first needed, so loading a model folder only to
    read its metrics or weights (retraining, version checks) does not pay for it."""

    def __init__(self, prompts: Sequence[str], replies: Sequence[str], base: int | None = None) -> None:
        """base: how many of the first pairs are the memory's base (all of them unless given)."""
        if len(prompts) != len(replies):
            raise ValueError("prompts and replies differ in number")
        if base is not None and not 0 <= base <= len(prompts):
            raise ValueError(f"base must count 0 to {len(prompts)} pairs")
        self._given = (list(prompts), list(replies))
        self._base = len(prompts) if base is None else base
        # the token ids of the replies kept, all in one array; those of reply i are
        # _reply_ids[_reply_starts[i]:_reply_starts[i + 1]]
        self._reply_ids: np.ndarray | None = None
        self._reply_starts: np.ndarray | None = None
        self._vectors: np.ndarray | None = None  # [prompts kept, H] unit vectors, float16

    @classmethod
    def of(cls, pairs: Sequence[Pair]) -> ReplyMemory:
        """A memory of pairs, all of them its base."""
        return cls([p.prompt for p in pairs], [p.reply for p in pairs])

    def base_pairs(self) -> list[Pair]:
        return [Pair(prompt, reply) for prompt, reply in zip(*(given[: self._base] for given in self._given),
                                                               strict=True)]

    def with_learned(self, pairs: Sequence[Pair]) -> ReplyMemory:
        """A memory of this one's base pairs, then of pairs learned from the chats that are not
        among them. The learned pairs come last, so that the n-gram budget keeps them first."""
        base = self.base_pairs()
        known = {(p.prompt, p.reply) for p in base}
        kept = base + [p for p in pairs if (p.prompt, p.reply) not in known]
        return ReplyMemory([p.prompt for p in kept], [p.reply for p in kept], base=len(base))

    def without(self, texts: Collection[str]) -> ReplyMemory:
        """This memory without the learned pairs (not its base) that have one of texts on either
        side, compared with runs of whitespace as one space (as a retrain's snapshot writes them):
        what a person erased (/forget) is no longer answered from."""
        gone = {" ".join(text.split()) for text in texts}
        prompts, replies = self._given
        kept = self.base_pairs() + [
            Pair(prompt, reply) for prompt, reply in zip(prompts[self._base :], replies[self._base :], strict=True)
            if " ".join(prompt.split()) not in gone and " ".join(reply.split()) not in gone]
        return ReplyMemory([p.prompt for p in kept], [p.reply for p in kept], base=self._base)

    def __len__(self) -> int:
        """The pairs given (the index keeps the last of them that fit MAX_NGRAMS)."""
        return len(self._given[0])

    @property
    def prompts(self) -> list[str]:
        """The prompts kept (the last ones that fit MAX_NGRAMS), oldest first."""
        return self._index.prompts

    @property
    def replies(self) -> list[str]:
        return self._index.replies

    @property
    def has_vectors(self) -> bool:
        return self._vectors is not None

    def indexed(self, encode: Callable[[str], list[int]] | None = None,
                vectors: Callable[[list[str]], np.ndarray] | None = None) -> ReplyMemory:
        """self, with its index built now (e.g. while a model loads rather than at its first reply),
        with the replies' token ids when given the model's tokenizer's encode (the neighbours found
        then carry them), and with the prompts' vectors when given a function of the prompts to
        their unit vectors (nearest() then takes a prompt's vector)."""
        if vectors is not None:
            self._vectors = np.asarray(vectors(self._index.prompts), dtype=np.float16)
        replies = self._index.replies
        if encode is not None:
            # One reply at a time (0.2 s for the 10,575 Korean ones): the tokenizer's batch encoding
            # raised the serving bench's peak RSS by 18 MB for them all at once, 7 MB in batches of
            # 512, and one at a time by 3 MB.
            ids, ends = array("i"), array("q", [0])
            for reply in replies:
                ids.extend(encode(reply))
                ends.append(len(ids))
            self._reply_ids = np.frombuffer(ids, dtype=np.int32)
            self._reply_starts = np.frombuffer(ends, dtype=np.int64)
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
        lengths_of = np.frombuffer(lengths, dtype=np.int32)
        # the k-th prompt read (from the end) is prompts[n - 1 - k]
        row_of = np.repeat(np.arange(n - 1, -1, -1, dtype=np.int32), lengths_of)
        counts_of = np.frombuffer(counts, dtype=np.float32)
        prompt_lengths = np.bincount(row_of, weights=counts_of, minlength=n).astype(np.float32)
        mean_length = float(prompt_lengths.mean()) if n else 1.0
        document_frequency = np.bincount(gram_of, minlength=len(gram_ids))
        idf = _idf(n, document_frequency)
        weights = idf[gram_of] * _saturated(counts_of, prompt_lengths[row_of] / mean_length)
        order = np.argsort(gram_of, kind="stable")
        return _Index(prompts, replies, gram_ids, idf, float(_idf(n, np.zeros(1))[0]), mean_length,
                      np.concatenate([[0], np.cumsum(document_frequency)]), row_of[order], weights[order])

    def nearest(self, prompt: str, k: int, vector: np.ndarray | None = None) -> list[Neighbour]:
        """The k training prompts most similar to prompt, most similar first: those sharing n-grams
        with it, ranked by BM25 alone, or also by their vectors' cosine with vector [H] (a unit
        vector, see indexed) when both are known."""
        vectors = self._vectors if vector is not None else None
        similarities, rows = self._nearest_in_characters(prompt, max(k, POOL) if vectors is not None else k)
        if vectors is not None and rows.size:
            cosines = vectors[rows].astype(np.float32) @ np.asarray(vector, dtype=np.float32)
            blended = np.maximum((1 - VECTOR_SHARE) * similarities + VECTOR_SHARE * cosines, 0.0)
            order = np.argsort(-blended, kind="stable")[:k]
            similarities, rows = blended[order], rows[order]
        index = self._index
        return [Neighbour(similarity, index.prompts[i], index.replies[i], self._ids_of_reply(i))
                for similarity, i in zip(similarities.tolist(), rows.tolist(), strict=True)]

    def _nearest_in_characters(self, prompt: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The BM25 similarities and rows of the k training prompts that share the most n-grams
        with prompt (similarity > 0), nearest first."""
        index = self._index
        grams = _grams(prompt)
        ids = np.array([index.gram_ids.get(gram, -1) for gram in grams], dtype=np.int64)
        known = ids[ids >= 0]
        if not known.size or k <= 0:
            return np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.int64)
        # The score a prompt made of exactly these n-grams would get: n-grams no prompt holds count
        # as the rarest, so that a query matched only in part is less similar.
        counts = np.fromiter(grams.values(), dtype=np.float32, count=len(grams))
        idf = np.where(ids >= 0, index.idf[ids], index.unseen_idf)
        own_score = float((idf * _saturated(counts, float(counts.sum()) / index.mean_length)).sum())
        # Every posting of the query's n-grams in one array, summed per prompt in one pass (a loop
        # over the n-grams took half as long again).
        starts = index.starts[known]
        lengths = index.starts[known + 1] - starts
        postings = np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(lengths.sum())
        scores = np.bincount(index.rows[postings], weights=index.weights[postings],
                             minlength=len(index.prompts)) / own_score  # a prompt appears once per n-gram
        # torch's top-k over the 10,575 Korean prompts takes 30 us where numpy's argpartition took 200.
        best, top = torch.from_numpy(scores).topk(min(k, len(scores)))
        found = best > 0
        return best[found].numpy(), top[found].numpy()

    def _ids_of_reply(self, i: int) -> list[int] | None:
        if self._reply_ids is None or self._reply_starts is None:
            return None
        return self._reply_ids[self._reply_starts[i] : self._reply_starts[i + 1]].tolist()

    def to_json(self) -> str:
        """The pairs kept, and how many of them are base pairs (the budget drops the oldest first)."""
        dropped = len(self._given[0]) - len(self.prompts)
        return json.dumps({"prompts": self.prompts, "replies": self.replies, "base": max(self._base - dropped, 0)},
                          ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> ReplyMemory:
        """Raises ValueError when text is not a memory written by to_json."""
        data = json.loads(text)
        if not isinstance(data, dict) or not all(
                isinstance(data.get(key), list) and all(isinstance(item, str) for item in data[key])
                for key in ("prompts", "replies")):
            raise ValueError("expected an object with the lists of strings 'prompts' and 'replies'")
        base = data.get("base")  # absent from memories written before there was a base: all of them
        if base is not None and (not isinstance(base, int) or isinstance(base, bool)):
            raise ValueError("expected 'base' to be a number of pairs")
        return cls(data["prompts"], data["replies"], base)


def _idf(prompts: int, document_frequency: np.ndarray) -> np.ndarray:
    """BM25's inverse document frequency, kept positive for n-grams in more than half the prompts."""
    return np.log1p((prompts - document_frequency + 0.5) / (document_frequency + 0.5)).astype(np.float32)


def _saturated(counts: np.ndarray, relative_lengths: np.ndarray | float) -> np.ndarray:
    """BM25's term frequency: counts saturating (K1), more so in longer prompts (B)."""
    return counts * (K1 + 1) / (counts + K1 * (1 - B + B * relative_lengths))


def _grams(text: str) -> Counter[str]:
    padded = f" {' '.join(text.lower().split())} "
    grams = Counter(padded[i : i + n] for n in ORDERS for i in range(len(padded) - n + 1))
    del grams[" "]  # a lone space is in every prompt: it would make a blank prompt match them all
    return grams
