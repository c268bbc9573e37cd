"""The fused GRU loop trains as torch.nn.GRU does: same outputs, states and gradients."""

from __future__ import annotations

import logging
import shutil

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from core_model import gru_scan
from core_model.config import ModelConfig
from core_model.gru_scan import fused_gru, scan_gru
from core_model.model import Seq2Seq
from core_model.numerics import autocast

pytestmark = pytest.mark.skipif(shutil.which("c++") is None, reason="no C++ compiler to build the fused GRU")


@pytest.fixture(scope="module", autouse=True)
def built() -> None:
    assert fused_gru() is not None, "the fused GRU kernel did not build"


def reference(rnn: nn.GRU, x: torch.Tensor, h0: torch.Tensor | None, lengths: torch.Tensor | None):
    if lengths is None:
        return rnn(x, h0)
    packed, h_n = rnn(pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False), h0)
    return pad_packed_sequence(packed, batch_first=True, total_length=x.shape[1])[0], h_n


def outputs_and_gradients(run, rnn: nn.GRU, x: torch.Tensor, h0: torch.Tensor | None, bf16: bool = False):
    """Output, h_n and the gradients of x, h0 and every parameter, for a fixed random loss."""
    rnn.zero_grad()
    x = x.clone().requires_grad_()
    h0 = h0.clone().requires_grad_() if h0 is not None else None
    with autocast(bf16):
        output, h_n = run(x, h0)
    generator = torch.Generator().manual_seed(7)
    loss = (output.float() * torch.randn(output.shape, generator=generator)).sum() \
        + (h_n.float() * torch.randn(h_n.shape, generator=generator)).sum()
    loss.backward()
    grads = [x.grad] + ([h0.grad] if h0 is not None else []) + [p.grad for p in rnn.parameters()]
    return [output.detach().float(), h_n.detach().float()] + [g.float() for g in grads]


def relative_differences(a: list[torch.Tensor], b: list[torch.Tensor]) -> list[float]:
    return [float((x - y).norm() / y.norm().clamp_min(1e-12)) for x, y in zip(a, b, strict=True)]


@pytest.mark.parametrize("bidirectional, ragged, with_state", [
    (False, False, True),  # the decoder: every row steps every time, from the encoder's state
    (True, True, False),  # the encoder: prompts of mixed lengths, in no order
    (True, False, False),
    (False, True, True),
])
def test_matches_nn_gru_in_float32(bidirectional: bool, ragged: bool, with_state: bool) -> None:
    torch.manual_seed(0)
    rnn = nn.GRU(12, 10, num_layers=2, batch_first=True, bidirectional=bidirectional)
    B, T = 7, 6
    x = torch.randn(B, T, 12)
    lengths = torch.tensor([3, 6, 1, 6, 4, 2, 5]) if ragged else None
    h0 = torch.randn(2 * (2 if bidirectional else 1), B, 10) if with_state else None
    fused = outputs_and_gradients(lambda x, h: scan_gru(rnn, x, h, lengths), rnn, x, h0)
    expected = outputs_and_gradients(lambda x, h: reference(rnn, x, h, lengths), rnn, x, h0)
    assert max(relative_differences(fused, expected)) < 1e-5
    if ragged:  # zeros after each row's length, as pad_packed_sequence gives
        assert lengths is not None
        assert all(bool((fused[0][b, int(n):] == 0).all()) for b, n in enumerate(lengths))


def test_under_bf16_autocast_it_is_as_close_to_float32_as_nn_gru() -> None:
    torch.manual_seed(1)
    rnn = nn.GRU(64, 48, num_layers=2, batch_first=True, bidirectional=True)
    x, lengths = torch.randn(16, 9, 64), torch.randint(1, 10, (16,))
    exact = outputs_and_gradients(lambda x, h: reference(rnn, x, h, lengths), rnn, x, None)
    fused = outputs_and_gradients(lambda x, h: scan_gru(rnn, x, h, lengths), rnn, x, None, bf16=True)
    torch_bf16 = outputs_and_gradients(lambda x, h: reference(rnn, x, h, lengths), rnn, x, None, bf16=True)
    for ours, theirs in zip(relative_differences(fused, exact), relative_differences(torch_bf16, exact), strict=True):
        assert ours < max(2 * theirs, 0.01)


def test_a_model_trains_alike_fused_or_not() -> None:
    torch.manual_seed(2)
    model = Seq2Seq(ModelConfig(vocab_size=60, embedding_dim=16, hidden_size=24, num_layers=2, dropout=0.0)).train()
    src = torch.randint(4, 60, (5, 7))
    lengths = torch.tensor([7, 2, 5, 7, 1])
    for row, length in enumerate(lengths):
        src[row, length:] = 0
    tgt_in, targets = torch.randint(4, 60, (5, 6)), torch.randint(4, 60, (5, 6))
    results = []
    for fused in (True, False):
        model.fused_training = fused
        model.zero_grad()
        _, loss = model(src, lengths, tgt_in, targets, label_smoothing=0.1)
        assert loss is not None
        loss.backward()
        results.append([loss.detach()] + [p.grad.clone() for p in model.parameters() if p.grad is not None])
    assert len(results[0]) == len(results[1]) > 10
    assert max(relative_differences(results[0], results[1])) < 1e-5


def test_dropout_between_layers_drops_in_training_only_through_the_fused_loop() -> None:
    torch.manual_seed(3)
    rnn = nn.GRU(8, 8, num_layers=2, batch_first=True, dropout=0.5)
    x = torch.randn(4, 5, 8)
    first, _ = scan_gru(rnn, x)
    second, _ = scan_gru(rnn, x)
    assert not torch.equal(first, second)  # fresh masks each call
    rnn.dropout = 0.0
    assert torch.equal(scan_gru(rnn, x)[0], scan_gru(rnn, x)[0])


def test_without_a_build_training_falls_back_to_nn_gru(monkeypatch: pytest.MonkeyPatch,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    def no_compiler(*args: object, **kwargs: object) -> None:
        raise RuntimeError("Error building extension 'chatbot_gru_scan': c++: not found")

    monkeypatch.setattr("torch.utils.cpp_extension.load", no_compiler)
    with caplog.at_level(logging.WARNING, logger="core_model.gru_scan"):
        assert gru_scan._build() is None
    assert "could not be built (Error building extension 'chatbot_gru_scan': c++: not found)" in caplog.text
    monkeypatch.setenv("CHATBOT_FUSED_GRU", "0")
    assert gru_scan._build() is None

    monkeypatch.setattr("core_model.model.fused_gru", lambda: None)
    model = Seq2Seq(ModelConfig(vocab_size=40, embedding_dim=8, hidden_size=8, num_layers=1, dropout=0.0)).train()
    monkeypatch.setattr("core_model.model.scan_gru", lambda *a, **k: pytest.fail("the fused loop ran"))
    _, loss = model(torch.randint(4, 40, (2, 3)), torch.tensor([3, 3]), torch.randint(4, 40, (2, 4)),
                    torch.randint(4, 40, (2, 4)))
    assert loss is not None and torch.isfinite(loss)
