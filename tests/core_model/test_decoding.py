from dataclasses import replace

import pytest
import torch

from core_model.config import DecodeConfig
from core_model.decoding import candidates, encode, generate, generate_as_done
from core_model.model import Seq2Seq
from core_model.row_ops import argmax_rows, topk_rows
from core_model.tokenizer import EOS_ID, Tokenizer
from tests.conftest import PAIRS, TINY_MODEL

GREEDY = DecodeConfig(strategy="greedy", no_repeat_ngram=0)
BEAM = DecodeConfig(strategy="beam", beam_width=3, no_repeat_ngram=0)


def _sources(tokenizer: Tokenizer) -> list[list[int]]:
    return [tokenizer.encode(p.prompt) for p in PAIRS]


def test_greedy_reproduces_memorised_replies(trained: Seq2Seq, tokenizer: Tokenizer) -> None:
    replies = generate(trained, _sources(tokenizer), GREEDY)
    assert [tokenizer.decode(r) for r in replies] == [p.reply for p in PAIRS]


def test_beam_search_reproduces_memorised_replies(trained: Seq2Seq, tokenizer: Tokenizer) -> None:
    replies = generate(trained, _sources(tokenizer), DecodeConfig(strategy="beam", beam_width=4, no_repeat_ngram=0))
    assert [tokenizer.decode(r) for r in replies] == [p.reply for p in PAIRS]


def test_beam_search_goes_on_while_a_live_beam_beats_the_replies_that_ended(tokenizer: Tokenizer) -> None:
    # A model that gives token 7 0.9 at every step and <eos> 0.1: every step ends a short reply,
    # but the reply still growing scores better (length-normalised) than any of them.
    model = Seq2Seq(replace(TINY_MODEL, vocab_size=tokenizer.vocab_size)).eval()
    probs = torch.full((tokenizer.vocab_size,), 1e-9)
    probs[7], probs[EOS_ID] = 0.9, 0.1
    with torch.no_grad():
        model.to_embedding.weight.zero_()
        model.to_embedding.bias.zero_()
        model.output_bias.copy_(probs.log())
    (best, *_), = candidates(model, [tokenizer.encode("hello")], replace(BEAM, max_length=8))
    assert best.ids == [7] * 8  # cut at max_length; stopping at the K-th ended reply gave [7, 7, 7]


def test_greedy_stops_at_eos(tokenizer: Tokenizer) -> None:
    model = Seq2Seq(replace(TINY_MODEL, vocab_size=tokenizer.vocab_size)).eval()
    with torch.no_grad():
        model.output_bias[EOS_ID] = 1e4
    assert generate(model, [tokenizer.encode("hello")], replace(GREEDY, min_length=0)) == [[]]
    assert len(generate(model, [tokenizer.encode("hello")], GREEDY)[0]) == 1  # min_length 1 by default
    with torch.no_grad():
        model.output_bias[EOS_ID] = -1e4
    (reply,) = generate(model, [tokenizer.encode("hello")], replace(GREEDY, max_length=7))
    assert len(reply) == 7


@pytest.mark.parametrize("blocking", [0, 2])
def test_beam_width_one_equals_greedy(tokenizer: Tokenizer, blocking: int) -> None:
    torch.manual_seed(1)
    model = Seq2Seq(replace(TINY_MODEL, vocab_size=tokenizer.vocab_size)).eval()
    greedy = replace(GREEDY, no_repeat_ngram=blocking, max_length=12)
    beam = replace(greedy, strategy="beam", beam_width=1)
    assert generate(model, _sources(tokenizer), beam) == generate(model, _sources(tokenizer), greedy)


@pytest.mark.parametrize("config", [GREEDY, DecodeConfig(strategy="beam", beam_width=3, length_penalty=0.6),
                                    DecodeConfig(strategy="sample", top_k=5, top_p=0.9, seed=3)])
def test_batched_decode_equals_one_by_one(trained: Seq2Seq, tokenizer: Tokenizer, config: DecodeConfig) -> None:
    sources = _sources(tokenizer)
    together = generate(trained, sources, config)
    if config.strategy == "sample":
        together = [generate(trained, [s], config)[0] for s in sources]  # a seed fixes a whole call
    alone = [generate(trained, [s], config)[0] for s in sources]
    assert together == alone


def test_searches_of_sources_encoded_once_find_what_they_find_alone(trained: Seq2Seq, tokenizer: Tokenizer) -> None:
    sources = [[], *_sources(tokenizer)]  # an empty source too, which the encoder never sees
    encoded = encode(trained, sources)
    assert encoded.src.size(0) == len(sources) - 1
    for config in (BEAM, replace(BEAM, beam_width=1)):  # the default reply's two searches
        assert candidates(trained, sources, config, encoded=encoded) == candidates(trained, sources, config)


@pytest.mark.parametrize(("setting", "value"), [
    ("strategy", "best"), ("rerank", "vote"), ("beam_width", 0), ("max_length", 0), ("min_length", -1),
    ("no_repeat_ngram", -2), ("block_prompt_ngram", -1), ("top_k", -1), ("length_penalty", float("nan")),
    ("temperature", 0.0), ("top_p", 0.0), ("top_p", 1.5), ("neighbour_share", 1.0)])
def test_decode_settings_out_of_range_are_refused_by_name(setting: str, value: object) -> None:
    with pytest.raises(ValueError, match=setting):
        replace(GREEDY, **{setting: value})


def test_empty_source_gets_an_empty_reply(trained: Seq2Seq, tokenizer: Tokenizer) -> None:
    replies = generate(trained, [[], tokenizer.encode("hello there"), []], GREEDY)
    assert replies[0] == [] and replies[2] == []
    assert tokenizer.decode(replies[1]) == "hi! how are you?"


def test_no_repeat_ngram_blocks_loops(tokenizer: Tokenizer) -> None:
    torch.manual_seed(0)
    model = Seq2Seq(replace(TINY_MODEL, vocab_size=tokenizer.vocab_size)).eval()
    with torch.no_grad():
        model.output_bias[EOS_ID] = -1e4
        model.output_bias[10] = 1e4  # the model wants token 10 forever
    config = replace(GREEDY, max_length=6)
    assert generate(model, [[20, 21]], config)[0] == [10] * 6
    blocked = generate(model, [[20, 21]], replace(config, no_repeat_ngram=2))[0]
    bigrams = list(zip(blocked, blocked[1:], strict=False))
    assert len(bigrams) == len(set(bigrams))


def test_prompt_blocking_keeps_the_reply_from_copying(trained: Seq2Seq, tokenizer: Tokenizer) -> None:
    source = tokenizer.encode("안녕하세요")
    copied = generate(trained, [source], GREEDY)[0]
    assert copied[: len(source)] == source  # the memorised reply starts with the prompt
    blocked = generate(trained, [source], replace(GREEDY, block_prompt_ngram=1))[0]
    assert not set(blocked) & set(source)


def test_min_length_delays_eos(tokenizer: Tokenizer) -> None:
    model = Seq2Seq(replace(TINY_MODEL, vocab_size=tokenizer.vocab_size)).eval()
    with torch.no_grad():
        model.output_bias[EOS_ID] = 1e4
    (reply,) = generate(model, [tokenizer.encode("hi")], replace(GREEDY, min_length=3))
    assert len(reply) == 3


def test_sampling_is_reproducible_with_a_seed(trained: Seq2Seq, tokenizer: Tokenizer) -> None:
    config = DecodeConfig(strategy="sample", temperature=1.5, seed=7)
    assert generate(trained, _sources(tokenizer), config) == generate(trained, _sources(tokenizer), config)


@pytest.mark.parametrize("vocab", [8000, 7993, 5])
def test_argmax_rows_matches_argmax_ties_and_infinities_included(vocab: int) -> None:
    torch.manual_seed(0)
    scores = torch.randn(7, vocab)
    scores[1, :] = 0.0  # all tied: the first index
    scores[2, :] = float("-inf")
    scores[3, -1] = 100.0  # the maximum in the padded last block
    scores[4, vocab // 2] = scores[4, vocab - 1] = 50.0  # a tie across blocks: the first one
    assert torch.equal(argmax_rows(scores), scores.argmax(dim=-1))
    assert torch.equal(argmax_rows(scores[:1]), scores[:1].argmax(dim=-1))


@pytest.mark.parametrize("vocab", [8000, 8003, 50])
def test_topk_rows_gives_topks_values_at_the_indices_it_names(vocab: int) -> None:
    generator = torch.Generator().manual_seed(vocab)
    scores = torch.randn(40, vocab, generator=generator).round(decimals=1)  # many ties
    scores[3, :] = 0.5  # a row of one value
    scores[4, 100 % vocab] = float("inf")
    values, indices = topk_rows(scores, 10)
    assert torch.equal(values, scores.topk(10, dim=-1).values)
    assert torch.equal(scores.gather(1, indices), values)  # each index holds its value...
    assert all(len(set(row)) == 10 for row in indices.tolist())  # ...and no index is named twice


@pytest.mark.parametrize("config", [GREEDY, BEAM], ids=["greedy", "beam"])
def test_replies_are_handed_over_as_they_end_each_once(trained: Seq2Seq, tokenizer: Tokenizer,
                                                       config: DecodeConfig) -> None:
    sources = [*_sources(tokenizer), []]
    steps = list(generate_as_done(trained, sources, config))
    handed = [index for finished in steps for index, _ in finished]
    assert sorted(handed) == list(range(len(sources)))  # every source once
    assert dict(pair for finished in steps for pair in finished) == dict(enumerate(generate(trained, sources, config)))
    if config.strategy == "greedy":  # a reply ends at the step after its last token: shorter ones first
        lengths = [len(reply) for finished in steps[1:] for _, reply in finished]
        assert lengths == sorted(lengths) and lengths[0] < lengths[-1]
    assert steps[0] == [(len(sources) - 1, [])]  # the empty source at once, before any decoding
