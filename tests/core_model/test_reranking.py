from dataclasses import replace

import pytest
from sacrebleu.metrics import CHRF

from core_model.config import DecodeConfig
from core_model.decoding import candidates, generate
from core_model.model import Seq2Seq
from core_model.replies import reply_texts
from core_model.reply_memory import Neighbour, ReplyMemory
from core_model.reranking import agreement, char_ngrams, closest_to_neighbours, consensus
from core_model.tokenizer import SEP_ID, Tokenizer
from tests.conftest import PAIRS

BEAM = DecodeConfig(strategy="beam", beam_width=4, no_repeat_ngram=0, rerank="none")


@pytest.mark.parametrize(("hypothesis", "reference"), [
    ("맛있게 드세요.", "맛있는 거 드세요."),
    ("the cat sat on the mat", "a cat was sitting on a mat"),
    ("hello", "completely different"),
    ("same words", "same words"),
    ("abc", "aaabbbccc"),  # each n-gram once on one side only
    ("haha haha", "ha ha ha ha ha"),  # repeated on both sides
])
def test_agreement_is_sentence_chrf(hypothesis: str, reference: str) -> None:
    expected = CHRF().sentence_score(hypothesis, [reference]).score / 100
    assert agreement(char_ngrams(hypothesis), char_ngrams(reference)) == pytest.approx(expected, abs=1e-6)


def test_consensus_prefers_the_candidate_the_others_agree_with() -> None:
    texts = ["ok.", "see you tomorrow then", "see you tomorrow", "see you then tomorrow"]
    assert consensus(texts, [-0.5, -1.0, -1.1, -1.2]) == 1  # the generic top candidate loses
    # a candidate far more probable than the rest wins even when it agrees with nobody
    assert consensus(texts, [0.0, -30.0, -30.0, -30.0]) == 0


def test_consensus_with_too_few_candidates_keeps_the_most_probable() -> None:
    assert consensus(["one"], [-1.0]) == 0
    assert consensus(["a b", "c d"], [-1.0, -2.0]) == 0


def test_candidates_are_best_first_and_lead_with_the_beam_reply(trained: Seq2Seq, tokenizer: Tokenizer) -> None:
    sources = [tokenizer.encode(p.prompt) for p in PAIRS] + [[]]
    found = candidates(trained, sources, BEAM)
    assert found[-1] == []  # an empty source has no candidates
    for hypotheses in found[:-1]:
        scores = [h.score for h in hypotheses]
        assert len(hypotheses) >= 2 and scores == sorted(scores, reverse=True)
    assert [h[0].ids for h in found[:-1]] == generate(trained, sources[:-1], BEAM)


def test_reply_texts_pick_one_of_the_candidates(trained: Seq2Seq, tokenizer: Tokenizer) -> None:
    sources = [tokenizer.encode(p.prompt) for p in PAIRS]
    chosen = reply_texts(trained, tokenizer, sources, replace(BEAM, rerank="consensus"))
    for text, hypotheses in zip(chosen, candidates(trained, sources, BEAM), strict=True):
        assert text in [tokenizer.decode(h.ids) for h in hypotheses]
    assert reply_texts(trained, tokenizer, sources, BEAM) == [tokenizer.decode(h[0].ids) for h in
                                                              candidates(trained, sources, BEAM)]


def test_closest_to_neighbours_trades_their_replies_against_probability() -> None:
    neighbours = [Neighbour(0.9, "배고파", "뭐 좀 드세요."), Neighbour(0.4, "졸려", "푹 자요.")]
    texts = ["좋은 생각이에요.", "뭐 좀 드세요"]
    assert closest_to_neighbours(texts, [-0.1, -0.6], neighbours) == 1  # agrees with the nearest prompt's reply
    assert closest_to_neighbours(texts, [0.0, -50.0], neighbours) == 0  # unless it is far less probable
    assert closest_to_neighbours(texts, [-0.1, -0.6], []) == 0  # no neighbours: the most probable


def test_neighbours_choose_among_the_beam_and_greedy_replies(trained: Seq2Seq, tokenizer: Tokenizer) -> None:
    memory = ReplyMemory([p.prompt for p in PAIRS], [p.reply for p in PAIRS])
    config = replace(BEAM, rerank="neighbours", neighbour_share=0.0)
    sources = [tokenizer.encode(p.prompt) for p in PAIRS]
    sources[0] = tokenizer.encode("some earlier turn") + [SEP_ID] + sources[0]  # the context is not searched
    chosen = reply_texts(trained, tokenizer, sources, config, memory)
    greedy = generate(trained, sources, replace(config, strategy="greedy"))
    for text, hypotheses, first in zip(chosen, candidates(trained, sources, BEAM), greedy, strict=True):
        assert text in [tokenizer.decode(h.ids) for h in hypotheses] + [tokenizer.decode(first)]
    # Each prompt's nearest is itself, whose reply the model has memorised: that reply is chosen.
    assert chosen == [tokenizer.decode(tokenizer.encode(p.reply)) for p in PAIRS]


def test_neighbours_without_a_memory_fall_back_to_consensus(trained: Seq2Seq, tokenizer: Tokenizer) -> None:
    sources = [tokenizer.encode(p.prompt) for p in PAIRS]
    assert (reply_texts(trained, tokenizer, sources, replace(BEAM, rerank="neighbours"))
            == reply_texts(trained, tokenizer, sources, replace(BEAM, rerank="consensus")))
