"""Shared fixtures: a small mixed-language corpus, a tokenizer and a model that has memorised it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from core_model import checkpoint
from core_model.batching import encode_pairs, make_batches
from core_model.config import TrainConfig
from core_model.corpora import Pair
from core_model.model import Seq2Seq
from core_model.presets import PRESETS
from core_model.reply_memory import ReplyMemory
from core_model.tokenizer import Tokenizer

PAIRS = [
    Pair("hello there", "hi! how are you?"),
    Pair("how are you", "i am fine, thanks"),
    Pair("what is your name", "i am a chatbot"),
    Pair("안녕하세요", "안녕하세요! 반가워요."),
    Pair("배고파", "맛있는 거 드세요."),
    Pair("오늘 날씨 어때?", "맑고 따뜻해요 ☀️"),
    Pair("good night 🌙", "sweet dreams 😴"),
    Pair("커피 좋아해?", "네, coffee 정말 좋아요"),
]

TINY_MODEL, _ = PRESETS["tiny"]


@pytest.fixture(scope="session")
def tokenizer() -> Tokenizer:
    return Tokenizer.train((t for p in PAIRS for t in (p.prompt, p.reply)) , vocab_size=TINY_MODEL.vocab_size)


@pytest.fixture(scope="session")
def trained(tokenizer: Tokenizer) -> Seq2Seq:
    """A tiny model trained until it reproduces every reply of PAIRS."""
    torch.manual_seed(0)
    config = replace(TINY_MODEL, vocab_size=tokenizer.vocab_size, dropout=0.0)
    model = Seq2Seq(config)
    batch = make_batches(encode_pairs(PAIRS, tokenizer, config), len(PAIRS), shuffle=False)[0]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(300):
        _, loss = model(batch.src, batch.src_lengths, batch.tgt_in, batch.targets)
        assert loss is not None
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory, trained: Seq2Seq, tokenizer: Tokenizer) -> Path:
    return checkpoint.save(tmp_path_factory.mktemp("models") / "tiny", trained, tokenizer, {"train_pairs": len(PAIRS)},
                           memory=ReplyMemory([p.prompt for p in PAIRS], [p.reply for p in PAIRS]))


@pytest.fixture()
def tiny_train_config() -> TrainConfig:
    return replace(PRESETS["tiny"][1], max_steps=20, bf16=False)
