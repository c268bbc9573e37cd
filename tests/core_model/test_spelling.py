from dataclasses import replace
from pathlib import Path

import torch

from core_model import checkpoint
from core_model.batching import encode_pairs
from core_model.config import DecodeConfig, TrainConfig
from core_model.decoding import generate
from core_model.pipeline import new_model
from core_model.spelling import NO_UNIT, PER_ORDER, UNITS_PER_TOKEN, spelling_units, token_spellings
from core_model.tokenizer import SPECIAL_TOKENS, Tokenizer
from core_model.training import train
from tests.conftest import PAIRS, TINY_MODEL

# Enough repetitions that whole words become single tokens, as in a real vocabulary.
TEXTS = ["짝사랑 힘들어", "짝사랑 힘들다", "오늘 너무 힘들어", "hello there", "hello again"] * 50


def _tokenizer() -> Tokenizer:
    return Tokenizer.train(TEXTS, vocab_size=600)


def _last_word_token(tokenizer: Tokenizer, text: str) -> int:
    """The id of text's last word, which must be a single token (with its leading space)."""
    last = tokenizer.encode(text)[-1]
    assert tokenizer.decode_token(last) == " " + text.split()[-1]
    return last


def test_spelling_units_are_characters_then_character_pairs() -> None:
    assert spelling_units(" 힘들어") == ["힘", "들", "어", "힘들", "들어"]
    assert spelling_units("하\ufffd") == ["하"]  # the bytes of a character cut between tokens
    assert spelling_units("   ") == []
    long_word = spelling_units("internationalization")
    assert long_word[:PER_ORDER] == list("internat") and long_word[PER_ORDER:][:2] == ["in", "nt"]
    assert len(long_word) == UNITS_PER_TOKEN


def test_words_with_different_endings_share_their_stem() -> None:
    tokenizer = _tokenizer()
    table, count = token_spellings(tokenizer, max_units=10_000)
    hard_now, hard_plain = ({unit for unit in table[_last_word_token(tokenizer, text)].tolist() if unit != NO_UNIT}
                            for text in ("짝사랑 힘들어", "짝사랑 힘들다"))
    assert len(hard_now) == len(hard_plain) == 5  # 힘 들 어 힘들 들어, and 힘 들 다 힘들 들다
    assert len(hard_now & hard_plain) == 3  # 힘, 들, 힘들
    assert table.shape == (tokenizer.vocab_size, UNITS_PER_TOKEN)
    assert int(table.max()) == count - 1


def test_special_tokens_and_spaces_spell_nothing() -> None:
    tokenizer = _tokenizer()
    table, count = token_spellings(tokenizer, max_units=10_000)
    assert (table[: len(SPECIAL_TOKENS)] == NO_UNIT).all()
    units = {unit for i in range(len(SPECIAL_TOKENS), tokenizer.vocab_size)
             for unit in spelling_units(tokenizer.decode_token(i))}
    assert count == len(units) + 1 and not any(unit.isspace() for unit in units)


def test_only_the_most_common_units_are_numbered() -> None:
    tokenizer = _tokenizer()
    _, full_count = token_spellings(tokenizer, max_units=10_000)
    capped, count = token_spellings(tokenizer, max_units=6)
    assert count == 6 and full_count > 6
    assert int(capped.max()) == 5
    assert torch.equal(token_spellings(tokenizer, max_units=6)[0], capped)  # deterministic


def test_new_model_spells_its_tokens_and_the_folder_keeps_them(tmp_path: Path) -> None:
    tokenizer = _tokenizer()
    model = new_model(replace(TINY_MODEL, prompt_spelling=1000), tokenizer).eval()
    table, count = token_spellings(tokenizer, 1000)
    assert model.config.prompt_spelling == count
    assert torch.equal(model.get_buffer("token_spellings"), table)
    src = torch.tensor([tokenizer.encode("짝사랑 힘들어")])
    expected = model.embedding(src) + model.spelling_embedding(table[src[0]]).unsqueeze(0)
    torch.testing.assert_close(model.embed_prompt(src), expected)

    loaded = checkpoint.load(checkpoint.save(tmp_path / "m", model, tokenizer, {}))
    tgt = torch.tensor([[1, 10, 11]])
    assert torch.equal(loaded.model(src, torch.tensor([src.size(1)]), tgt)[0],
                       model(src, torch.tensor([src.size(1)]), tgt)[0])


def test_without_spelling_the_model_has_no_spelling_weights() -> None:
    model = new_model(TINY_MODEL, _tokenizer())
    assert model.spelling_embedding is None
    assert not any("spelling" in name for name in model.state_dict())


def test_a_moving_average_of_a_spelling_model_trains(tiny_train_config: TrainConfig) -> None:
    tokenizer = _tokenizer()
    model = new_model(replace(TINY_MODEL, prompt_spelling=1000), tokenizer)
    table = model.get_buffer("token_spellings").clone()
    examples = encode_pairs(PAIRS, tokenizer, model.config)
    result = train(model, examples, examples, replace(tiny_train_config, ema_decay=0.9))
    assert result.steps > 0
    assert torch.equal(model.get_buffer("token_spellings"), table)  # the spellings are not averaged


def test_a_spelling_model_decodes_a_batch_as_it_decodes_each_prompt() -> None:
    tokenizer = _tokenizer()
    torch.manual_seed(0)
    model = new_model(replace(TINY_MODEL, prompt_spelling=1000), tokenizer).eval()
    sources = [tokenizer.encode(text) for text in ("짝사랑 힘들어", "hello there", "오늘 너무 힘들어 hello")]
    together = generate(model, sources, DecodeConfig(max_length=8))
    assert together == [generate(model, [source], DecodeConfig(max_length=8))[0] for source in sources]
