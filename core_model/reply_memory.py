"""The pairs a model was trained on, searchable by prompt: which training prompts are nearest a new one.

Prompts are compared by their characters (core_model/bm25.py): character 1-2-grams scored with
Okapi BM25. With the vectors' ranking (below), guided replies scored 30.35 against 29.39 on the
held-out pairs, 29.04-29.85 against 28.55-29.54 on valid.tsv with five models, and the same on
ccc_chitchat (12.50 against 12.49) as with 1-3-grams; lookups took 0.24 ms against 0.26-0.40
(Korean) and 2.9 against 3.8 (English). A share of BM25 over whole words in the blend (0.1-0.3 of
it) scored 27.1-30.0, and less on five valid.tsv models. Reranking uses the replies of the nearest
prompts to choose among beam search's candidates (core_model/reranking.py): the model still
writes every reply.

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

A reply that many prompts got counts against its pair (REPLY_PRIOR). Over half of the Korean
training pairs share their reply with another pair, and the most shared ("맛있게 드세요." 18 times,
"제가 있잖아요." 15, "잘할 수 있을 거예요." 11) are stock answers that fit many prompts and none
of them closely: between two prompts about as near, the one whose reply was written for it alone
is the better guide. This is the anti-language-model term of maximum
mutual information decoding (Li et al. 2016, "A Diversity-Promoting Objective Function for Neural
Conversation Models"), with the memory's own reply counts as the replies' prior. REPLY_PRIOR 0.1
was chosen on the 600 held-out Korean pairs (chrF 31.25 against 30.35 without; 0.06-0.15 scored
30.59-31.25). On valid.tsv, five models trained 600 s scored 30.19-31.05 against 29.04-29.85
(gains of 0.86 to 1.41), with more distinct replies (distinct-2 0.867-0.881 against 0.851-0.869);
on ccc_chitchat's, 12.66 against 12.50.
"""

from __future__ import annotations

import json
from array import array
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple

import numpy as np
import torch

from core_model.bm25 import CharacterBm25
from core_model.corpora import Pair

# The most n-grams the index holds, counted over the last pairs given: about 8 MB of index, which
# keeps all 10,575 Korean training pairs (250,000 n-grams) but 13,000 of 117,000 English chat turns
# (longer prompts). An English lookup then takes about 1.1 ms alone (0.14 in a batch of 64), a
# Korean one 0.14 (0.07). Twice the English pairs scored chrF 12.98 against 12.83 for the nearest
# reply, but took twice the time a lookup (6.4 ms against 2.9 before batched lookups) and twice the
# vectors' load time.
MAX_NGRAMS = 1_000_000
# How many of the prompts nearest in characters are ranked again with the vectors, and the share of
# the vectors' cosine in the similarity they are ranked by (see above).
POOL, VECTOR_SHARE = 20, 0.4
# How much a reply that many pairs share counts against its pair (see above): the similarity a
# neighbour is ranked and weighed by loses REPLY_PRIOR * log(1 + the kept pairs with its reply).
REPLY_PRIOR = 0.1


class Neighbour(NamedTuple):  # a named tuple: a batch makes many (0.6 us each as a frozen dataclass)
    # BM25 score of the prompt for the query over the query's score against itself: 1 for the same
    # prompt, 0 for one sharing no n-gram (slightly above 1 for a shorter prompt holding them all).
    # When the prompts' vectors are known, blended with their cosine (VECTOR_SHARE). Less the
    # reply's commonness (REPLY_PRIOR), and kept >= 0.
    similarity: float
    prompt: str
    reply: str
    # The reply's token ids, when the memory knows its model's tokenizer (see ReplyMemory.indexed):
    # decoding guided by the reply then need not tokenise it on every request.
    reply_ids: list[int] | None = None


@dataclass(frozen=True)
class _Index:
    prompts: list[str]  # those kept: the last that fit MAX_NGRAMS
    replies: list[str]
    search: CharacterBm25
    # [kept] float32: log(1 + how many of the kept pairs have each pair's reply), see REPLY_PRIOR
    commonness: np.ndarray


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
        prompts, replies = self._given
        search = CharacterBm25(prompts, MAX_NGRAMS)
        kept = replies[len(replies) - search.kept :]
        counts = Counter(kept)
        commonness = np.log1p(np.array([counts[reply] for reply in kept], dtype=np.float32))
        return _Index(prompts[len(prompts) - search.kept :], kept, search, commonness)

    def nearest(self, prompt: str, k: int, vector: np.ndarray | None = None) -> list[Neighbour]:
        """The k training prompts most similar to prompt, most similar first: those sharing n-grams
        with it, ranked by BM25 alone, or also by their vectors' cosine with vector [H] (a unit
        vector, see indexed) when both are known."""
        return self.nearest_each([prompt], k, [vector])[0]

    def nearest_each(self, prompts: Sequence[str], k: int,
                     vectors: Sequence[np.ndarray | None] | None = None) -> list[list[Neighbour]]:
        """nearest() of each of prompts (with its vector, if given), found together: a batch of
        prompts is scored faster than one at a time, with the same neighbours."""
        index = self._index
        vectors = list(vectors) if vectors is not None and self._vectors is not None else [None] * len(prompts)
        found = self._ranked(index.search.nearest(prompts, max(k, POOL)), vectors, k)
        return [[Neighbour(similarity, index.prompts[i], index.replies[i], self._ids_of_reply(i))
                 for similarity, i in zip(similarities.tolist(), rows.tolist(), strict=True)]
                for similarities, rows in found]

    def _ranked(self, found: list[tuple[np.ndarray, np.ndarray]], vectors: list[np.ndarray | None],
                k: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """The k best of each prompt's pool (found: their BM25 similarities and rows), ranked by
        their similarity: BM25's blended with the cosine of the training prompts' vectors and the
        prompt's, where it has one, less REPLY_PRIOR times the commonness of their reply. The
        pools' vectors are gathered in one pass; each cosine is summed alone (the same in any batch)."""
        commonness = self._index.commonness
        with_vectors = [i for i, vector in enumerate(vectors) if vector is not None and found[i][1].size]
        cosines_of: dict[int, np.ndarray] = {}
        if with_vectors:
            assert self._vectors is not None
            # torch's gather and float16 conversion took a third of the time numpy's did
            pooled = torch.from_numpy(self._vectors).index_select(
                0, torch.from_numpy(np.concatenate([found[i][1] for i in with_vectors]))).float().numpy()
            pooled_of = (np.split(pooled, np.cumsum([found[i][1].size for i in with_vectors])[:-1])
                         if len(with_vectors) > 1 else [pooled])
            for i, vectors_of_pool in zip(with_vectors, pooled_of, strict=True):
                cosines_of[i] = (vectors_of_pool * np.asarray(vectors[i], dtype=np.float32)).sum(axis=1)
        ranked = []
        for i, (similarities, rows) in enumerate(found):
            if i in cosines_of:
                similarities = (1 - VECTOR_SHARE) * similarities + VECTOR_SHARE * cosines_of[i]
            similarities = np.maximum(similarities - REPLY_PRIOR * commonness[rows], 0.0)
            order = np.argsort(-similarities, kind="stable")[:k]
            ranked.append((similarities[order], rows[order]))
        return ranked

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
