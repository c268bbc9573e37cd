import numpy as np
import pytest

from core_model import bm25
from core_model.bm25 import CharacterBm25

# Repeated prompts (equally near any query) and prompts of every length, so that ties and
# rounding both have their chance to tell the two ways of scoring apart.
TEXTS = ["오늘 날씨 어때?", "배고파", "배가 너무 고파요", "hello there", "Hello there", "hello there",
         "what is your name?", "배고파", "오늘 뭐 먹지", "날씨가 좋네요 오늘은 산책 갈까요", "name?", "😀 hi"]
QUERIES = ["오늘 날씨", "hello", "배고파요", "your name", "없는 말", "", "😀", "HELLO THERE!", "오늘 배고파",
           "x" * 300, "?"] * 4


def _scored(index: CharacterBm25, queries: list[str], way: str, monkeypatch: pytest.MonkeyPatch,
            k: int = 5) -> list[tuple[list[float], list[int]]]:
    monkeypatch.setattr(CharacterBm25, "_matrix_is_cheaper", lambda self, known: way == "matrix")
    return [(similarities.tolist(), rows.tolist()) for similarities, rows in index.nearest(queries, k)]


def test_a_query_is_scored_the_same_alone_in_a_batch_and_either_way(monkeypatch: pytest.MonkeyPatch) -> None:
    index = CharacterBm25(TEXTS, max_ngrams=10_000)
    alone = [found for query in QUERIES for found in _scored(index, [query], "postings", monkeypatch)]
    for way in ("postings", "matrix"):  # the batch spans several of the matrix's chunks
        assert _scored(index, QUERIES, way, monkeypatch) == alone
    assert _scored(index, QUERIES[:1], "matrix", monkeypatch) == alone[:1]
    # the three "hello there" (case does not count) tie, and come out in one order all the same
    similarities, rows = alone[QUERIES.index("HELLO THERE!")]
    assert sorted(rows[:3]) == [3, 4, 5] and similarities[0] == similarities[2] > similarities[3]


def test_similarities_are_relative_to_the_querys_own_score() -> None:
    index = CharacterBm25(TEXTS, max_ngrams=10_000)
    (similarities, rows), (none, no_rows) = index.nearest(["배고파", "ｘｙｚ"], 3)
    assert rows[0] in (1, 7) and similarities[0] == pytest.approx(1.0, abs=1e-5)
    assert list(similarities) == sorted(similarities, reverse=True) and similarities[-1] > 0
    assert none.size == no_rows.size == 0


def test_the_sums_are_whole_numbers_of_units_below_float32s_exact_range() -> None:
    index = CharacterBm25(TEXTS, max_ngrams=10_000)
    sums = next(index._by_postings([np.arange(len(index._gram_ids))])).numpy()  # a query holding every n-gram
    assert np.array_equal(sums, np.rint(sums)) and sums.max() < 2**24 and sums.max() > 2**21


def test_it_keeps_the_last_texts_that_fit_the_budget() -> None:
    last_three = sum(len(bm25.character_grams(text)) for text in TEXTS[-3:])
    index = CharacterBm25(TEXTS, max_ngrams=last_three)
    assert index.kept == 3
    (similarities, rows), = index.nearest(["😀 hi"], 5)
    assert rows[0] == 2  # row 2 of the three kept: the last text
    assert CharacterBm25([], 100).nearest(["hello"], 3)[0][1].size == 0
