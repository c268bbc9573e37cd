"""Which characters each token of a vocabulary is spelled with, for character-aware embeddings.

A subword vocabulary trained on Korean keeps whole inflected words as single tokens: "힘들어" and
"힘들다" ("it's hard", two endings of one verb) get unrelated ids, and the encoder can only learn
that they mean the same from the few pairs that use each. Adding to each token's embedding the
mean embedding of its characters (Hangul syllables, letters) gives such words a shared part from
the start; the model's input is still the subword sequence.
"""

from __future__ import annotations

from collections import Counter

import torch
from torch import Tensor

from core_model.tokenizer import SPECIAL_TOKENS, Tokenizer

CHARACTERS_PER_TOKEN = 8  # a longer token keeps its first 8 characters (Korean words have 1-4 syllables)
NO_CHARACTER = 0  # padding id of the table; characters are numbered from 1


def token_characters(tokenizer: Tokenizer, max_characters: int) -> tuple[Tensor, int]:
    """(table [vocab, CHARACTERS_PER_TOKEN] of character ids, 0 padded; number of character ids
    used, padding included). The max_characters - 1 characters that occur in the most tokens are
    numbered (most common first, ties by code point); spaces, special tokens and the bytes of a
    character cut between tokens have none. A function of the tokenizer alone."""
    spellings = [[] if index < len(SPECIAL_TOKENS) else _characters(tokenizer.decode_token(index))
                 for index in range(tokenizer.vocab_size)]
    counts = Counter(char for spelling in spellings for char in set(spelling))
    ranked = sorted(counts, key=lambda char: (-counts[char], char))[: max(max_characters - 1, 0)]
    ids = {char: index for index, char in enumerate(ranked, start=NO_CHARACTER + 1)}
    table = torch.full((tokenizer.vocab_size, CHARACTERS_PER_TOKEN), NO_CHARACTER, dtype=torch.long)
    for index, spelling in enumerate(spellings):
        known = [ids[char] for char in spelling if char in ids][:CHARACTERS_PER_TOKEN]
        table[index, : len(known)] = torch.tensor(known, dtype=torch.long)
    return table, len(ranked) + 1


def _characters(text: str) -> list[str]:
    return [char for char in text if not char.isspace() and char != "\ufffd"]
