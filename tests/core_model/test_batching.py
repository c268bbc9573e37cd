import random
from dataclasses import replace

from core_model.batching import Batch, Example, encode_pairs, make_batches, source_ids
from core_model.corpora import Pair
from core_model.tokenizer import EOS_ID, PAD_ID, SEP_ID, Tokenizer
from tests.conftest import TINY_MODEL

LOWERCASE = replace(TINY_MODEL, lowercase_prompts=True)


def test_prompts_are_read_lowercased_when_the_model_says_so(tokenizer: Tokenizer) -> None:
    assert source_ids(tokenizer, "Hello There", "", LOWERCASE) == source_ids(tokenizer, "hello there", "", LOWERCASE)
    assert source_ids(tokenizer, "Hello There", "", TINY_MODEL) != source_ids(tokenizer, "hello there", "", TINY_MODEL)
    assert source_ids(tokenizer, "Hi", "How Are You", LOWERCASE) == [
        *tokenizer.encode("how are you"), SEP_ID, *tokenizer.encode("hi")]


def test_training_examples_lowercase_the_prompt_and_keep_the_replys_case(tokenizer: Tokenizer) -> None:
    (example,) = encode_pairs([Pair("Hello There", "Hi! How Are You?")], tokenizer, LOWERCASE)
    assert example.source == tokenizer.encode("hello there")
    assert example.target == [*tokenizer.encode("Hi! How Are You?"), EOS_ID]


def test_a_reply_cut_to_fit_does_not_end_in_eos(tokenizer: Tokenizer) -> None:
    long_reply = "hello there " * 40
    fitting = tokenizer.decode(tokenizer.encode(long_reply)[: TINY_MODEL.max_target_tokens - 1])
    cut, whole = encode_pairs([Pair("hi", long_reply), Pair("hi", fitting)], tokenizer, TINY_MODEL)
    assert cut.target == tokenizer.encode(long_reply)[: TINY_MODEL.max_target_tokens]
    assert cut.reply_chars == len(tokenizer.decode(cut.target))
    assert whole.target == [*tokenizer.encode(fitting), EOS_ID] and len(whole.target) == TINY_MODEL.max_target_tokens
    assert whole.reply_chars == len(fitting)


def test_long_sources_keep_their_last_tokens(tokenizer: Tokenizer) -> None:
    ids = source_ids(tokenizer, "hello there " * 40, "", TINY_MODEL)
    assert len(ids) == TINY_MODEL.max_source_tokens
    assert ids == tokenizer.encode(("hello there " * 40).strip())[-TINY_MODEL.max_source_tokens :]


def _rows(batch: Batch) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """Each row's (source, target) without padding."""
    return [(tuple(t for t in src if t != PAD_ID), tuple(t for t in tgt if t != PAD_ID))
            for src, tgt in zip(batch.src.tolist(), batch.targets.tolist(), strict=True)]


def test_batches_hold_every_example_once_sorted_by_reply_then_prompt_length() -> None:
    rng = random.Random(0)
    examples = [Example([5 + i] + [6] * rng.randrange(0, 12), [7] * rng.randrange(1, 6) + [EOS_ID], 3)
                for i in range(1000)]
    epochs = [make_batches(examples, 8, shuffle=True, seed=seed) for seed in (1, 2)]
    for batches in epochs:
        rows = [row for batch in batches for row in _rows(batch)]
        assert sorted(rows) == sorted((tuple(e.source), tuple(e.target)) for e in examples)
        # Taken in length order, the batches' rows are sorted by (reply length, prompt length): the
        # encoder and the decoder step over little padding.
        lengths = sorted([(len(t), len(s)) for s, t in _rows(batch)] for batch in batches)
        assert [pair for batch in lengths for pair in batch] == sorted(pair for batch in lengths for pair in batch)
    # Ties are broken at random: epochs differ in which pairs meet.
    meetings = [{frozenset(_rows(batch)) for batch in batches} for batches in epochs]
    assert meetings[0] != meetings[1]
