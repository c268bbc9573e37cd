"""Subword tokenizer: BPE over characters, falling back to UTF-8 bytes (no unknown words), with the
special tokens the model needs.

Characters, not bytes, are the alphabet BPE merges from. A Hangul syllable is three bytes in UTF-8,
and a byte-level BPE spends thousands of its merges only to rebuild the syllables: with 8,000
tokens, held-out Korean replies came to 2.33 characters a token against 2.80 with characters (and
English chat 4.09 against 4.32). Fewer tokens a reply means fewer decoding steps and more reply
characters for each step trained: Korean trained at 2,535 reply characters/s against 2,228, and
reached 2.96 bits/char against 3.12 in the same 600 s (one thread each, side by side, on a CPU
without bf16). Merging across spaces as well (phrases as tokens) packed 11% more characters into
a token, but reached 3.03 bits/char against 2.97, and 1.9% of its replies repeated themselves
(none without). Characters outside the alphabet (rare ones, or never seen) are spelled as their
UTF-8 bytes, <0x00> to <0xFF>, so any text still encodes.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer as HFTokenizer
from tokenizers import models, pre_tokenizers, trainers

PAD, GO, EOS, UNK, SEP = "<pad>", "<go>", "<eos>", "<unk>", "<sep>"
SPECIAL_TOKENS = [PAD, GO, EOS, UNK, SEP]
PAD_ID, GO_ID, EOS_ID, UNK_ID, SEP_ID = range(len(SPECIAL_TOKENS))
BYTE_TOKENS = [f"<0x{byte:02X}>" for byte in range(256)]  # the byte fallback's tokens
MIN_VOCAB_SIZE = len(SPECIAL_TOKENS) + len(BYTE_TOKENS) + 1  # room for at least one character
# The share of the vocabulary the alphabet (single characters) may take at most; the most frequent
# characters are kept, the rest fall back to bytes.
ALPHABET_SHARE = 0.25

# Lone surrogates too: a str may hold them (bytes that are not UTF-8, read with surrogateescape as
# stdin is; a JSON escape such as "\ud800"), but no UTF-8 text can, so the tokenizer and databases
# refuse them.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2064\ufeff\ufffd\ud800-\udfff]")
_SPACES = re.compile(r"\s+")
# Hangul letters typed on their own ("ㅋㅋ", "ㅠㅠ": laughter and tears in any Korean chat) are
# compatibility jamo, which NFKC turns into the conjoining jamo that build syllables ("ᄏᄏ"): those
# render as broken syllables, and no longer match what people type. They are kept as typed.
_COMPATIBILITY_JAMO = re.compile(r"([\u3131-\u318e]+)")


def _nfkc(text: str) -> str:
    if not _COMPATIBILITY_JAMO.search(text):
        return unicodedata.normalize("NFKC", text)
    parts = _COMPATIBILITY_JAMO.split(text)  # the runs of jamo at the odd positions
    return "".join(part if i % 2 else unicodedata.normalize("NFKC", part) for i, part in enumerate(parts))


def normalize(text: str) -> str:
    """NFKC (except for Hangul jamo typed alone), control and zero-width characters and lone
    surrogates removed, whitespace runs collapsed, ends stripped."""
    text = _nfkc(text)
    text = _CONTROL.sub("", text)
    return _SPACES.sub(" ", text).strip()


class Tokenizer:
    """Text <-> token ids. decode(encode(s)) == normalize(s) for every string s."""

    def __init__(self, hf: HFTokenizer) -> None:
        for index, token in enumerate(SPECIAL_TOKENS):
            if hf.token_to_id(token) != index:
                raise ValueError(f"tokenizer must map {token} to id {index}")
        self._hf = hf

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int = 8000) -> Tokenizer:
        """A vocabulary of vocab_size tokens (the specials and the 256 byte tokens included)."""
        if vocab_size < MIN_VOCAB_SIZE:
            raise ValueError(f"vocab_size must be at least {MIN_VOCAB_SIZE}")
        merged_size = vocab_size - len(BYTE_TOKENS)
        hf = HFTokenizer(models.BPE())
        # Each space starts the token after it (" 날씨"), so spacing is part of the tokens and
        # round-trips exactly, with no marker character of its own.
        hf.pre_tokenizer = pre_tokenizers.Split(" ", behavior="merged_with_next")
        trainer = trainers.BpeTrainer(
            vocab_size=merged_size,
            special_tokens=SPECIAL_TOKENS,
            limit_alphabet=max(int(vocab_size * ALPHABET_SHARE), 1),
            show_progress=False,
        )
        hf.train_from_iterator((normalize(t) for t in texts), trainer=trainer)
        return cls(_with_byte_fallback(hf))

    @classmethod
    def load(cls, path: Path) -> Tokenizer:
        return cls(HFTokenizer.from_file(str(path)))

    def save(self, path: Path) -> None:
        self._hf.save(str(path))

    @property
    def vocab_size(self) -> int:
        return int(self._hf.get_vocab_size())

    def encode(self, text: str) -> list[int]:
        return list(self._hf.encode(normalize(text), add_special_tokens=False).ids)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        encodings = self._hf.encode_batch([normalize(t) for t in texts], add_special_tokens=False)
        return [list(e.ids) for e in encodings]

    def decode_token(self, token_id: int) -> str:
        """One token's text as it reads inside a reply: a leading space is kept, and the bytes of a
        character cut between tokens read as U+FFFD."""
        return str(self._hf.decode([token_id], skip_special_tokens=False))

    def decode(self, ids: Iterable[int]) -> str:
        """Special tokens are dropped; a byte sequence cut mid-character is dropped too."""
        ids = [i for i in ids if i >= len(SPECIAL_TOKENS)]
        return self._hf.decode(ids, skip_special_tokens=True).replace("\ufffd", "").strip()


def _with_byte_fallback(hf: HFTokenizer) -> HFTokenizer:
    """The trained BPE with the 256 byte tokens appended to its vocabulary as ordinary tokens (so
    that decoding keeps them) and used for every character the vocabulary lacks."""
    data = json.loads(hf.to_str())
    vocab = data["model"]["vocab"]
    for token in BYTE_TOKENS:
        vocab.setdefault(token, len(vocab))
    data["model"]["byte_fallback"] = True
    data["decoder"] = {"type": "Sequence", "decoders": [{"type": "ByteFallback"}, {"type": "Fuse"}]}
    return HFTokenizer.from_str(json.dumps(data))
