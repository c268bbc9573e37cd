from collections.abc import Iterator

import numpy as np
import pytest

from core_model import replies as replies_module
from core_model.batching import source_ids
from core_model.config import DecodeConfig
from core_model.model import Seq2Seq
from core_model.prompt_vectors import prompt_vectors
from core_model.replies import reply_text, reply_texts
from core_model.reply_memory import ReplyMemory
from core_model.search_steps import Hypothesis
from core_model.tokenizer import Tokenizer
from tests.conftest import PAIRS

GREEDY = DecodeConfig(strategy="greedy")


@pytest.mark.parametrize(("written", "sent"), [
    ("hi! how are you? i am fine, th", "hi! how are you?"),  # back to the last sentence end
    ("i am fine thanks and how are yo", "i am fine thanks and how are…"),  # else to the last whole word
    ("맛있는 거 드세요. 맑고 따뜻해", "맛있는 거 드세요."),
    ("맑고 따뜻해요 정말 좋아", "맑고 따뜻해요 정말…"),
    ("chatbot", "chatbot"),  # one word: nothing to trim back to
])
def test_a_reply_cut_at_the_limit_ends_at_a_sentence_end_or_a_whole_word(
        tokenizer: Tokenizer, written: str, sent: str) -> None:
    ids = tokenizer.encode(written)
    assert reply_text(tokenizer, ids, limit=len(ids)) == sent
    assert reply_text(tokenizer, ids, limit=len(ids) + 1) == written  # it ended: sent as written


@pytest.mark.parametrize("strategy", ["greedy", "beam"])
def test_a_prompt_sharing_no_character_with_the_memory_gets_an_empty_reply(
        trained: Seq2Seq, tokenizer: Tokenizer, strategy: str) -> None:
    memory = ReplyMemory([p.prompt for p in PAIRS], [p.reply for p in PAIRS])
    config = DecodeConfig(strategy=strategy)  # type: ignore[arg-type]
    unknown = ["你好", "مرحبا", "🦄"]
    sources = [tokenizer.encode(text) for text in [PAIRS[0].prompt, *unknown]]
    assert all(sources)  # the byte fallback spells them: the model could decode them
    replies = reply_texts(trained, tokenizer, sources, config, memory)
    assert replies == [tokenizer.decode(tokenizer.encode(PAIRS[0].reply)), "", "", ""]
    # Without a memory to tell, the model answers them all.
    assert all(reply_texts(trained, tokenizer, sources, config))


@pytest.mark.parametrize("strategy", ["greedy", "beam"])
def test_the_prompts_vectors_choose_which_neighbours_reply_guides_the_decoding(
        trained: Seq2Seq, tokenizer: Tokenizer, strategy: str) -> None:
    prompts, replies = [p.prompt for p in PAIRS], [p.reply for p in PAIRS]
    query = "hello how are you"  # nearest in characters: "how are you", then "hello there"
    config = DecodeConfig(strategy=strategy)  # type: ignore[arg-type]
    source = [tokenizer.encode(query)]
    assert reply_texts(trained, tokenizer, source, config, ReplyMemory(prompts, replies)) == ["i am fine, thanks"]
    own = prompt_vectors(trained, tokenizer, [query])[0]
    # with the turn before as its context too: the prompt's vector is that of the prompt alone
    after_a_turn = [source_ids(tokenizer, query, "커피 좋아해?", trained.config)]
    for meant, reply in (("hello there", "hi! how are you?"), ("how are you", "i am fine, thanks")):
        # the encoder "says" the query means what the prompt meant means
        memory = ReplyMemory(prompts, replies).indexed(
            tokenizer.encode, lambda kept, meant=meant: np.stack([own if p == meant else -own for p in kept]))
        assert reply_texts(trained, tokenizer, source, config, memory) == [reply]
        assert reply_texts(trained, tokenizer, after_a_turn, config, memory) == [reply]


@pytest.mark.parametrize("strategy", ["greedy", "beam"])
def test_with_vectors_a_prompt_sharing_no_character_with_the_memory_still_gets_an_empty_reply(
        trained: Seq2Seq, tokenizer: Tokenizer, strategy: str) -> None:
    # the prompts are encoded before their neighbours are looked up, and again without those left unanswered
    memory = ReplyMemory([p.prompt for p in PAIRS], [p.reply for p in PAIRS]).indexed(
        tokenizer.encode, lambda prompts: prompt_vectors(trained, tokenizer, prompts))
    sources = [tokenizer.encode(text) for text in ["🦄", PAIRS[4].prompt, "你好", PAIRS[0].prompt]]
    replies = reply_texts(trained, tokenizer, sources, DecodeConfig(strategy=strategy), memory)  # type: ignore[arg-type]
    assert replies == ["", PAIRS[4].reply, "", tokenizer.decode(tokenizer.encode(PAIRS[0].reply))]


def test_greedys_reply_is_reranked_with_its_own_score_when_beam_search_does_not_find_it(
        trained: Seq2Seq, tokenizer: Tokenizer, monkeypatch: pytest.MonkeyPatch) -> None:
    memory = ReplyMemory([p.prompt for p in PAIRS], [p.reply for p in PAIRS])
    sources = [tokenizer.encode(p.prompt) for p in PAIRS[:3]]
    beam = DecodeConfig(strategy="beam")
    assert reply_texts(trained, tokenizer, sources, beam, memory) == [p.reply for p in PAIRS[:3]]
    unlikely = tokenizer.encode(PAIRS[6].reply)

    def beam_search_finding_only_an_unlikely_reply(*args: object, **kwargs: object) -> Iterator[list[tuple[int, list[Hypothesis]]]]:
        yield [(index, [Hypothesis(-50.0, unlikely)]) for index in range(len(sources))]

    monkeypatch.setattr(replies_module, "candidates_as_done", beam_search_finding_only_an_unlikely_reply)
    # greedy's reply, scored by a search of width 1 of its own, still wins
    assert reply_texts(trained, tokenizer, sources, beam, memory) == [p.reply for p in PAIRS[:3]]
