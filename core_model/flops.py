"""Analytic FLOP counts of the model, and the machine's measured matrix-product peak."""

from __future__ import annotations

import time

import torch

from core_model.batching import Batch
from core_model.config import ModelConfig
from core_model.tokenizer import PAD_ID


def training_flops(config: ModelConfig, batch: Batch) -> float:
    """Multiply-adds x2 of one forward and backward pass (backward ~ 2x forward) on real tokens."""
    E, H, V = config.embedding_dim, config.hidden_size, config.vocab_size
    gates = 3 if config.cell == "gru" else 4
    h = H // 2
    src_tokens = int((batch.src != PAD_ID).sum())
    tgt_tokens = batch.target_tokens
    encoder = sum(2 * 2 * (E if layer == 0 else H) * gates * h + 2 * 2 * h * gates * h
                  for layer in range(config.num_layers))
    decoder = sum(2 * (E if layer == 0 else H) * gates * H + 2 * H * gates * H
                  for layer in range(config.num_layers))
    mean_src = src_tokens / max(batch.src.size(0), 1)
    attention = 4 * mean_src * H + (2 * H * H * src_tokens / max(tgt_tokens, 1))
    output = 2 * 2 * H * H + 2 * H * E + 2 * E * V
    forward = encoder * src_tokens + (decoder + attention + output) * tgt_tokens
    return 3.0 * forward


def matmul_peak_gflops(dtype: torch.dtype, size: int = 2048, seconds: float = 1.0) -> float:
    a = torch.randn(size, size).to(dtype)
    b = torch.randn(size, size).to(dtype)
    a @ b  # warm-up
    runs, began = 0, time.perf_counter()
    while time.perf_counter() - began < seconds:
        a @ b
        runs += 1
    return 2 * size**3 * runs / (time.perf_counter() - began) / 1e9
