"""Subword tokenizer: byte-level BPE (no unknown words) with the special tokens the model needs."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

PAD, GO, EOS, UNK, SEP = "<pad>", "<go>", "<eos>", "<unk>", "<sep>"
SPECIAL_TOKENS = [PAD, GO, EOS, UNK, SEP]
PAD_ID, GO_ID, EOS_ID, UNK_ID, SEP_ID = range(len(SPECIAL_TOKENS))

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2064\ufeff\ufffd]")
_SPACES = re.compile(r"\s+")


def normalize(text: str) -> str:
    """NFKC, control and zero-width characters removed, whitespace runs collapsed, ends stripped."""
    text = unicodedata.normalize("NFKC", text)
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
        hf = HFTokenizer(models.BPE())
        hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        hf.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=SPECIAL_TOKENS,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        hf.train_from_iterator((normalize(t) for t in texts), trainer=trainer)
        return cls(hf)

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
