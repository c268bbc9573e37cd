"""How each token of a vocabulary is spelled, for character-aware prompt embeddings.

A subword vocabulary trained on Korean keeps whole inflected words as single tokens: "힘들어" and
"힘들다" ("it's hard", two endings of one verb) get unrelated ids, and the encoder can only learn
that they mean the same from the few pairs that use each. Adding to each token's embedding the
mean embedding of its spelling units (its characters and pairs of adjacent characters: Hangul
syllables, letters) gives such words shared parts from the start, the stem 힘, 들, 힘들 here; the
model's input is still the subword sequence.
"""

from __future__ import annotations

from collections import Counter

import torch
from torch import Tensor

from core_model.tokenizer import SPECIAL_TOKENS, Tokenizer

# The n-gram orders of characters that spell a token, and how many of each a token keeps (its
# first ones: Korean words have 1 to 4 syllables, and longer English words their stem first).
# Changing these changes the width of the spelling table that model folders hold.
# Held-out Korean chrF (600 s, one thread, one seed): characters alone 17.9, with pairs 20.7,
# with triples as well 19.3; subwords alone 17.1.
ORDERS = (1, 2)
PER_ORDER = 8
UNITS_PER_TOKEN = PER_ORDER * len(ORDERS)
NO_UNIT = 0  # padding id of the table; units are numbered from 1


def token_spellings(tokenizer: Tokenizer, max_units: int) -> tuple[Tensor, int]:
    """(table [vocab, UNITS_PER_TOKEN] of spelling-unit ids, 0 padded; number of unit ids used,
    padding included). The max_units - 1 units that occur in the most tokens are numbered (most
    common first, ties in code point order); spaces, special tokens and the bytes of a character
    cut between tokens spell nothing. A function of the tokenizer alone."""
    spellings = [[] if index < len(SPECIAL_TOKENS) else spelling_units(tokenizer.decode_token(index))
                 for index in range(tokenizer.vocab_size)]
    counts = Counter(unit for spelling in spellings for unit in set(spelling))
    ranked = sorted(counts, key=lambda unit: (-counts[unit], unit))[: max(max_units - 1, 0)]
    ids = {unit: index for index, unit in enumerate(ranked, start=NO_UNIT + 1)}
    table = torch.full((tokenizer.vocab_size, UNITS_PER_TOKEN), NO_UNIT, dtype=torch.long)
    for index, spelling in enumerate(spellings):
        known = [ids[unit] for unit in spelling if unit in ids]
        table[index, : len(known)] = torch.tensor(known, dtype=torch.long)
    return table, len(ranked) + 1


def spelling_units(text: str) -> list[str]:
    """The first PER_ORDER character n-grams of text of each order in ORDERS, spaces and U+FFFD
    (a character cut between tokens) left out."""
    chars = "".join(char for char in text if not char.isspace() and char != "\ufffd")
    return [chars[i : i + n] for n in ORDERS for i in range(min(len(chars) - n + 1, PER_ORDER))]
