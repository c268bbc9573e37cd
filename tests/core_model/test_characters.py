from dataclasses import replace
from pathlib import Path

import torch

from core_model import checkpoint
from core_model.characters import CHARACTERS_PER_TOKEN, NO_CHARACTER, token_characters
from core_model.pipeline import new_model
from core_model.tokenizer import SPECIAL_TOKENS, Tokenizer
from tests.conftest import TINY_MODEL

# Enough repetitions that whole words become single tokens, as in a real vocabulary.
TEXTS = ["짝사랑 힘들어", "짝사랑 힘들다", "오늘 너무 힘들어", "hello there", "hello again"] * 50


def _tokenizer() -> Tokenizer:
    return Tokenizer.train(TEXTS, vocab_size=600)


def _last_word_token(tokenizer: Tokenizer, text: str) -> int:
    """The id of text's last word, which must be a single token (with its leading space)."""
    last = tokenizer.encode(text)[-1]
    assert tokenizer.decode_token(last) == " " + text.split()[-1]
    return last


def test_words_with_different_endings_share_their_stem_characters() -> None:
    tokenizer = _tokenizer()
    table, count = token_characters(tokenizer, max_characters=1000)
    hard_now, hard_plain = (table[_last_word_token(tokenizer, text)].tolist()
                            for text in ("짝사랑 힘들어", "짝사랑 힘들다"))
    assert hard_now[:2] == hard_plain[:2] != [NO_CHARACTER, NO_CHARACTER]  # 힘, 들
    assert hard_now[2] != hard_plain[2]  # 어 against 다
    assert hard_now[3:] == [NO_CHARACTER] * (CHARACTERS_PER_TOKEN - 3)
    assert table.shape == (tokenizer.vocab_size, CHARACTERS_PER_TOKEN)
    assert int(table.max()) == count - 1


def test_special_tokens_spaces_and_cut_characters_have_no_characters() -> None:
    tokenizer = _tokenizer()
    table, _ = token_characters(tokenizer, max_characters=1000)
    assert (table[: len(SPECIAL_TOKENS)] == NO_CHARACTER).all()
    space_led = [i for i in range(tokenizer.vocab_size) if tokenizer.decode_token(i).startswith(" ")]
    assert space_led, "the vocabulary has tokens that begin with a space"
    spelled = {char for i in range(tokenizer.vocab_size)
               for char in tokenizer.decode_token(i) if char.strip() and char != "\ufffd"}
    assert int(table.max()) == len(spelled)  # one id per character, none for spaces


def test_only_the_most_common_characters_are_numbered() -> None:
    tokenizer = _tokenizer()
    full, full_count = token_characters(tokenizer, max_characters=1000)
    capped, count = token_characters(tokenizer, max_characters=6)
    assert count == 6 and full_count > 6
    assert int(capped.max()) == 5
    assert torch.equal(token_characters(tokenizer, max_characters=6)[0], capped)  # deterministic


def test_new_model_spells_its_tokens_and_the_folder_keeps_them(tmp_path: Path) -> None:
    tokenizer = _tokenizer()
    model = new_model(replace(TINY_MODEL, prompt_characters=1000), tokenizer).eval()
    table, count = token_characters(tokenizer, 1000)
    assert model.config.prompt_characters == count
    assert torch.equal(model.get_buffer("token_characters"), table)
    src = torch.tensor([tokenizer.encode("짝사랑 힘들어")])
    expected = model.embedding(src) + model.character_embedding(table[src[0]]).unsqueeze(0)
    torch.testing.assert_close(model.embed_prompt(src), expected)

    loaded = checkpoint.load(checkpoint.save(tmp_path / "m", model, tokenizer, {}))
    tgt = torch.tensor([[1, 10, 11]])
    assert torch.equal(loaded.model(src, torch.tensor([src.size(1)]), tgt)[0],
                       model(src, torch.tensor([src.size(1)]), tgt)[0])


def test_without_characters_the_model_has_no_character_weights() -> None:
    model = new_model(TINY_MODEL, _tokenizer())
    assert model.character_embedding is None
    assert not any("character" in name for name in model.state_dict())


def test_a_moving_average_of_a_model_with_characters_trains(tiny_train_config) -> None:
    from core_model.batching import encode_pairs
    from core_model.training import train
    from tests.conftest import PAIRS

    tokenizer = _tokenizer()
    model = new_model(replace(TINY_MODEL, prompt_characters=1000), tokenizer)
    table = model.get_buffer("token_characters").clone()
    examples = encode_pairs(PAIRS, tokenizer, model.config)
    result = train(model, examples, examples, replace(tiny_train_config, ema_decay=0.9))
    assert result.steps > 0
    assert torch.equal(model.get_buffer("token_characters"), table)  # the spellings are not averaged
