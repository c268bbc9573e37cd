import math
from dataclasses import replace

import pytest
import torch

from core_model.batching import encode_pairs, make_batches
from core_model.model import Seq2Seq
from core_model.tokenizer import Tokenizer
from tests.conftest import PAIRS, TINY_MODEL


def _batch(tokenizer: Tokenizer, config):
    return make_batches(encode_pairs(PAIRS, tokenizer, config), len(PAIRS), shuffle=False)[0]


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("attention", ["general", "dot", "additive"])
def test_shapes(tokenizer: Tokenizer, cell: str, attention: str) -> None:
    config = replace(TINY_MODEL, vocab_size=tokenizer.vocab_size, cell=cell, attention=attention, num_layers=2)
    batch = _batch(tokenizer, config)
    model = Seq2Seq(config)
    logits, loss = model(batch.src, batch.src_lengths, batch.tgt_in)
    assert logits.shape == (*batch.tgt_in.shape, tokenizer.vocab_size)
    assert loss is None
    picked, loss = model(batch.src, batch.src_lengths, batch.tgt_in, batch.targets)
    assert picked.shape == (batch.target_tokens, tokenizer.vocab_size)
    assert loss is not None and loss.ndim == 0


def test_initial_loss_is_about_log_vocab(tokenizer: Tokenizer) -> None:
    torch.manual_seed(0)
    config = replace(TINY_MODEL, vocab_size=tokenizer.vocab_size)
    batch = _batch(tokenizer, config)
    _, loss = Seq2Seq(config)(batch.src, batch.src_lengths, batch.tgt_in, batch.targets)
    assert loss is not None
    assert abs(float(loss.detach()) - math.log(tokenizer.vocab_size)) < 0.5


def test_padding_does_not_change_the_logits(tokenizer: Tokenizer) -> None:
    config = replace(TINY_MODEL, vocab_size=tokenizer.vocab_size, dropout=0.0)
    model = Seq2Seq(config).eval()
    src = torch.tensor([tokenizer.encode("hello there")])
    padded = torch.cat([src, torch.zeros(1, 5, dtype=torch.long)], dim=1)
    tgt = torch.tensor([[1, 7, 8]])
    a, _ = model(src, torch.tensor([src.size(1)]), tgt)
    b, _ = model(padded, torch.tensor([src.size(1)]), tgt)
    torch.testing.assert_close(a, b)


def test_overfits_one_batch(trained: Seq2Seq, tokenizer: Tokenizer) -> None:
    batch = _batch(tokenizer, trained.config)
    _, loss = trained(batch.src, batch.src_lengths, batch.tgt_in, batch.targets)
    assert loss is not None and float(loss.detach()) < 0.05


def test_output_layer_shares_the_embedding_matrix(tokenizer: Tokenizer) -> None:
    model = Seq2Seq(replace(TINY_MODEL, vocab_size=tokenizer.vocab_size))
    names = [name for name, _ in model.named_parameters()]
    assert sum("embedding" in n and n.endswith("weight") and "to_embedding" not in n for n in names) == 1


@pytest.mark.parametrize(("setting", "value"), [
    ("vocab_size", 0), ("embedding_dim", 0), ("num_layers", 0), ("dropout", 1.0), ("max_target_tokens", 1),
    ("cell", "rnn"), ("attention", "bahdanau")])
def test_model_settings_out_of_range_are_refused_by_name(setting: str, value: object) -> None:
    with pytest.raises(ValueError, match=setting):
        replace(TINY_MODEL, **{setting: value})
