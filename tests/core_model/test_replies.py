import pytest

from core_model.config import DecodeConfig
from core_model.model import Seq2Seq
from core_model.replies import reply_text, reply_texts
from core_model.reply_memory import ReplyMemory
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
