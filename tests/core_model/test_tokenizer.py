import pytest

from core_model.tokenizer import (
    EOS_ID,
    GO_ID,
    PAD_ID,
    SEP_ID,
    SPECIAL_TOKENS,
    UNK_ID,
    Tokenizer,
    normalize,
)
from tests.conftest import PAIRS

ROUND_TRIP = [
    "안녕하세요, 오늘 날씨가 참 좋네요.",
    "띄어쓰기 가  중요 해요",  # Korean spacing, with a double space that normalises to one
    "hello, world!",
    "emoji 😀👍🏽 and flags 🇰🇷 and ZWJ families 👨‍👩‍👧",
    "mixed 한국어 and English 123 — “quotes”",
    "ｆｕｌｌｗｉｄｔｈ and ㄱㄴㄷ jamo",
    "漢字 かな ไทย عربى",
]


@pytest.mark.parametrize("text", ROUND_TRIP)
def test_round_trip_equals_normalised_text(tokenizer: Tokenizer, text: str) -> None:
    ids = tokenizer.encode(text)
    assert UNK_ID not in ids
    assert tokenizer.decode(ids) == normalize(text)


def test_special_tokens_have_fixed_ids(tokenizer: Tokenizer) -> None:
    assert list(range(len(SPECIAL_TOKENS))) == [PAD_ID, GO_ID, EOS_ID, UNK_ID, SEP_ID]
    assert tokenizer.decode([GO_ID, EOS_ID, PAD_ID, SEP_ID]) == ""


def test_empty_and_blank_input_encode_to_nothing(tokenizer: Tokenizer) -> None:
    assert tokenizer.encode("") == []
    assert tokenizer.encode(" \t\n\u200b ") == []


def test_control_characters_are_dropped(tokenizer: Tokenizer) -> None:
    text = "a\x00b\x07c\x1bd\u202ee\ufeff"
    assert tokenizer.decode(tokenizer.encode(text)) == "abcde"


def test_hangul_letters_typed_alone_stay_as_typed(tokenizer: Tokenizer) -> None:
    # NFKC would make "ㅋㅋ" conjoining jamo ("ᄏᄏ"), which render as broken syllables
    text = "ㅋㅋㅋ 진짜 웃기다 ㅠㅠ ｈｉ"
    assert normalize(text) == "ㅋㅋㅋ 진짜 웃기다 ㅠㅠ hi"  # the rest is NFKC as before
    assert tokenizer.decode(tokenizer.encode(text)) == normalize(text)


def test_lone_surrogates_are_dropped(tokenizer: Tokenizer) -> None:
    # what stdin makes of bytes that are not UTF-8 (surrogateescape), and what JSON's "\ud83d" gives
    text = b"a\xff b\xc3(".decode("utf-8", "surrogateescape") + "\ud83d c"
    assert tokenizer.decode(tokenizer.encode(text)) == normalize(text) == "a b( c"


def test_huge_input_round_trips(tokenizer: Tokenizer) -> None:
    text = ("가나다 abc 😀 " * 10_000)[:100_000]
    assert tokenizer.decode(tokenizer.encode(text)) == normalize(text)


def test_save_and_load_give_the_same_ids(tokenizer: Tokenizer, tmp_path) -> None:
    tokenizer.save(tmp_path / "tokenizer.json")
    again = Tokenizer.load(tmp_path / "tokenizer.json")
    assert again.encode(ROUND_TRIP[0]) == tokenizer.encode(ROUND_TRIP[0])


def test_decode_drops_a_cut_multibyte_character(tokenizer: Tokenizer) -> None:
    lead_byte = tokenizer._hf.token_to_id("<0xEA>")  # byte 0xEA alone: the start of a Hangul syllable
    assert lead_byte is not None
    assert tokenizer.decode([lead_byte, *tokenizer.encode("가")]) == "가"


def test_a_character_never_seen_is_spelled_by_its_utf8_bytes(tokenizer: Tokenizer) -> None:
    ids = tokenizer.encode("🦔")  # not in the training text
    assert [tokenizer._hf.id_to_token(i) for i in ids] == ["<0xF0>", "<0x9F>", "<0xA6>", "<0x94>"]
    assert tokenizer.decode(ids) == "🦔"
    assert tokenizer.decode(tokenizer.encode("<0xF0> typed")) == "<0xF0> typed"  # text, not a byte


def test_characters_not_bytes_are_what_bpe_merges(tokenizer: Tokenizer) -> None:
    # Every character of the training text is a token of its own (a Hangul syllable is one symbol,
    # not three bytes to merge first), and the byte tokens fit in the size asked for.
    characters = {char for p in PAIRS for char in normalize(p.prompt + p.reply) if not char.isspace()}
    assert all(tokenizer._hf.token_to_id(char) is not None for char in characters)
    assert tokenizer.vocab_size == 400
