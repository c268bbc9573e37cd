"""Okapi BM25 over character 1-2-grams: which of many texts are nearest each of a batch of queries.

Texts are compared by their characters and character pairs (lowercased, spaces kept as word
boundaries). Character n-grams match a reworded text better than whole words do, in Korean above
all, where one word takes many endings. BM25 rather than the cosine of TF-IDF vectors: the nearest
prompt's reply scored chrF 28.2 against 27.4 on the Korean valid.tsv, and 27.9 against 27.0 on 600
pairs held out of train.tsv (k1 and b from 0.5 to 2 and 0.3 to 1 all scored 27.4-28.5). 1-2-grams
rather than 1-3-grams: a Hangul syllable is already much of a word, and its 3-grams tie a prompt to
one wording (held-out, the nearest reply scored 30.1 against 29.3; 1-grams alone 29.4, 1-4-grams
28.3, Hangul split into its letters 29.0, spaces dropped 29.4).

A query's scores are summed in one of two ways, by cost: from the postings of its n-grams (a
Korean query touches about 12,600 of them), or, for a batch, by sparse matrix products of the
texts' n-gram weights with the batch's n-grams (64 Korean queries: 4.9 ms, against 0.13-0.14 ms
each one at a time). The weights are rounded to whole multiples of a power of two small enough
that every sum stays an exact float32: so the scores, and with them which of equally near texts
come first, are the same whichever way and in whatever batch a query is scored.
"""

from __future__ import annotations

import math
import warnings
from array import array
from collections import Counter
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor

ORDERS = (1, 2)
K1, B = 1.2, 0.75  # BM25's usual saturation of repeated n-grams and normalisation by text length
# Queries scored in one matrix product: 64 at a time raised the serving peak RSS by 36 MB (the
# product's temporaries, left to the allocator's heap), 16 by 5, at the same speed.
CHUNK = 16
# What summing one query's postings costs, and one entry of the matrix in a product (once, and for
# each query of it), in nanoseconds on this machine class.
_NS_PER_POSTING, _NS_PER_MATRIX_ENTRY, _NS_PER_ENTRY_AND_QUERY = 5.0, 1.2, 0.08


class CharacterBm25:
    """The last texts given that fit a budget of n-grams, indexed for BM25 search."""

    def __init__(self, texts: Sequence[str], max_ngrams: int) -> None:
        """Reads texts newest (last) first, and keeps them until their n-grams would pass max_ngrams."""
        gram_ids: dict[str, int] = {}
        # Compact arrays, not lists of Python ints, which would take ten times the memory.
        cols, counts, lengths = array("i"), array("f"), array("i")
        for text in reversed(texts):
            grams = character_grams(text)
            if len(cols) + len(grams) > max_ngrams:
                break
            cols.extend(gram_ids.setdefault(gram, len(gram_ids)) for gram in grams)
            counts.extend(grams.values())
            lengths.append(len(grams))
        self.kept = n = len(lengths)  # the texts indexed: the last n given
        self._gram_ids = gram_ids
        gram_of = np.frombuffer(cols, dtype=np.int32)
        lengths_of = np.frombuffer(lengths, dtype=np.int32)
        row_of = np.repeat(np.arange(n - 1, -1, -1, dtype=np.int32), lengths_of)  # k-th read: text n - 1 - k
        counts_of = np.frombuffer(counts, dtype=np.float32)
        text_lengths = np.bincount(row_of, weights=counts_of, minlength=n).astype(np.float32)
        self._mean_length = float(text_lengths.mean()) if n else 1.0
        document_frequency = np.bincount(gram_of, minlength=len(gram_ids))
        self._idf = _idf(n, document_frequency)
        # the same, and last (at id -1, that of an n-gram no text holds) the idf such an n-gram has
        self._idf_or_unseen = np.append(self._idf, _idf(n, np.zeros(1)))
        weights = self._idf[gram_of] * _saturated(counts_of, text_lengths[row_of] / self._mean_length)
        self._unit = _exact_unit(np.bincount(row_of, weights=weights, minlength=n))
        units = np.rint(weights / self._unit).astype(np.float32)
        # By n-gram: the postings of gram g are _rows/_units[_starts[g]:_starts[g + 1]].
        by_gram = np.argsort(gram_of, kind="stable")
        self._starts = np.concatenate([[0], np.cumsum(document_frequency)])
        self._rows, self._units = row_of[by_gram], units[by_gram]
        # By text: a sparse [texts, n-grams] matrix.
        by_text = np.argsort(row_of, kind="stable")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's notice that its sparse CSR support is in beta
            self._matrix = torch.sparse_csr_tensor(
                # int32 indices, as MKL's sparse kernels take them: int64 ones were converted at each
                # product (1.4 ms against 2.0 for 16 Korean queries)
                torch.from_numpy(np.concatenate([[0], np.cumsum(lengths_of[::-1])]).astype(np.int32)),
                torch.from_numpy(gram_of[by_text]), torch.from_numpy(units[by_text]),
                size=(n, len(gram_ids)), check_invariants=False)

    def nearest(self, queries: Sequence[str], k: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """For each query, the similarities (float64) and rows of the (at most) k texts sharing an
        n-gram with it, nearest first. A similarity is the text's BM25 score over the score a text
        of exactly the query's n-grams would get: 1 for the same text (slightly more for a shorter
        text holding them all); n-grams no text holds count as the rarest, so that a query matched
        only in part is less similar."""
        nothing = (np.zeros(0), np.zeros(0, dtype=np.int64))
        if k <= 0 or not self.kept or not queries:
            return [nothing] * len(queries)
        grams = [character_grams(query) for query in queries]
        ids = [np.array([self._gram_ids.get(gram, -1) for gram in g], dtype=np.int64) for g in grams]
        known = [i[i >= 0] for i in ids]
        sums = self._by_matrix(known) if self._matrix_is_cheaper(known) else self._by_postings(known)
        tops = [part.topk(min(k, self.kept), dim=1) for part in sums]
        best, rows = (tops[0].values, tops[0].indices) if len(tops) == 1 else (
            torch.cat([top.values for top in tops]), torch.cat([top.indices for top in tops]))
        scales = self._unit / self._own_scores(grams, ids)
        found = []
        for query_best, query_rows, scale in zip(best.numpy(), rows.numpy(), scales, strict=True):
            positive = query_best > 0
            found.append((query_best[positive] * scale, query_rows[positive]))
        return found

    def _own_scores(self, grams: list[Counter[str]], ids: list[np.ndarray]) -> np.ndarray:
        """[queries] float64: each query's BM25 score against a text of exactly its n-grams."""
        query_of = np.repeat(np.arange(len(grams)), [len(g) for g in grams])
        counts = np.fromiter((c for g in grams for c in g.values()), dtype=np.float32, count=len(query_of))
        idf = self._idf_or_unseen[np.concatenate(ids)]
        lengths = np.bincount(query_of, weights=counts, minlength=len(grams))
        terms = idf * _saturated(counts, lengths[query_of] / self._mean_length)
        return np.maximum(np.bincount(query_of, weights=terms, minlength=len(grams)), 1e-30)

    def _matrix_is_cheaper(self, known: list[np.ndarray]) -> bool:
        postings = sum(int((self._starts[i + 1] - self._starts[i]).sum()) for i in known)
        products = -(-len(known) // CHUNK)
        per_entry = _NS_PER_MATRIX_ENTRY * products + _NS_PER_ENTRY_AND_QUERY * len(known)
        return self._matrix.values().numel() * per_entry < postings * _NS_PER_POSTING

    def _by_postings(self, known: list[np.ndarray]) -> Iterator[Tensor]:
        """[1, texts] float32 sums of units for each query in turn, from the postings of its n-grams."""
        for grams in known:
            starts = self._starts[grams]
            lengths = self._starts[grams + 1] - starts
            postings = np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(lengths.sum())
            sums = np.bincount(self._rows[postings], weights=self._units[postings], minlength=self.kept)
            yield torch.from_numpy(sums.astype(np.float32)).unsqueeze(0)

    def _by_matrix(self, known: list[np.ndarray]) -> Iterator[Tensor]:
        """[CHUNK, texts] float32 sums of units (a transposed view) for each CHUNK queries in turn
        (the last chunk may be smaller), as a sparse matrix product: every text's n-gram units by
        which n-grams each of the chunk's queries holds."""
        for start in range(0, len(known), CHUNK):
            chunk = known[start : start + CHUNK]
            holds = torch.zeros(self._matrix.shape[1], len(chunk))
            holds[torch.from_numpy(np.concatenate(chunk)),
                  torch.from_numpy(np.repeat(np.arange(len(chunk)), [len(k) for k in chunk]))] = 1.0
            # (The product warns of nothing: torch's beta notice comes once, when the matrix is made,
            # and catch_warnings here would race with other decoding threads over the filters.)
            yield (self._matrix @ holds).t()  # top-k reads the transposed view as fast as a copy


def character_grams(text: str) -> Counter[str]:
    """text's character 1-2-grams (ORDERS), lowercased, with runs of whitespace as one space and a
    space at each end."""
    padded = f" {' '.join(text.lower().split())} "
    grams = Counter(padded[i : i + n] for n in ORDERS for i in range(len(padded) - n + 1))
    del grams[" "]  # a lone space is in every text: it would make a blank query match them all
    return grams


def _idf(texts: int, document_frequency: np.ndarray) -> np.ndarray:
    """BM25's inverse document frequency, kept positive for n-grams in more than half the texts."""
    return np.log1p((texts - document_frequency + 0.5) / (document_frequency + 0.5)).astype(np.float32)


def _saturated(counts: np.ndarray, relative_lengths: np.ndarray | float) -> np.ndarray:
    """BM25's term frequency: counts saturating (K1), more so in longer texts (B)."""
    return counts * (K1 + 1) / (counts + K1 * (1 - B + B * relative_lengths))


def _exact_unit(text_totals: np.ndarray) -> float:
    """The power of two the weights are rounded to multiples of: the largest that keeps every
    text's total under 2**22 units, so that any sum of its weights, rounded (each by at most half a
    unit, for at most 2**20 n-grams), is a whole number below 2**24, exact in float32."""
    largest = float(text_totals.max()) if text_totals.size else 0.0
    return 2.0 ** math.ceil(math.log2(max(largest, 1e-30) / 2**22))
