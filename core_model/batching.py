"""Turning pairs into token-id examples and length-bucketed, padded batches."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from core_model.config import ModelConfig
from core_model.corpora import Pair
from core_model.tokenizer import EOS_ID, GO_ID, PAD_ID, SEP_ID, Tokenizer


@dataclass(frozen=True, slots=True)
class Example:
    source: list[int]  # context <sep> prompt, truncated to its last max_source_tokens
    target: list[int]  # reply ids followed by <eos> (none after a reply cut to max_target_tokens)
    reply_chars: int  # characters of the reply the target encodes (for chars/s and bits/char)


@dataclass(frozen=True)
class Batch:
    src: Tensor  # [B, S]
    src_lengths: Tensor  # [B]
    tgt_in: Tensor  # [B, T]  <go> + reply
    targets: Tensor  # [B, T]  reply + <eos>
    reply_chars: int
    target_tokens: int


def prompt_text(text: str, config: ModelConfig) -> str:
    """A prompt or context as the encoder reads it."""
    return text.lower() if config.lowercase_prompts else text


def source_ids(tokenizer: Tokenizer, prompt: str, context: str, config: ModelConfig) -> list[int]:
    """The encoder's input: context <sep> prompt, truncated to its last max_source_tokens."""
    ids = tokenizer.encode(prompt_text(prompt, config))
    if context:
        ids = tokenizer.encode(prompt_text(context, config)) + [SEP_ID] + ids
    return ids[-config.max_source_tokens :]


def encode_pairs(pairs: Sequence[Pair], tokenizer: Tokenizer, config: ModelConfig) -> list[Example]:
    """Pairs whose prompt or reply encodes to nothing are dropped."""
    prompts = tokenizer.encode_batch([prompt_text(p.prompt, config) for p in pairs])
    replies = tokenizer.encode_batch([p.reply for p in pairs])
    contexts = tokenizer.encode_batch([prompt_text(p.context, config) for p in pairs])
    limit = config.max_target_tokens
    examples = []
    for pair, prompt, reply, context in zip(pairs, prompts, replies, contexts, strict=True):
        if not prompt or not reply:
            continue
        source = (context + [SEP_ID] + prompt if context else prompt)[-config.max_source_tokens :]
        fits = len(reply) < limit
        # A reply cut to fit gets no <eos>: the model must not learn to stop where a reply was cut.
        target = reply + [EOS_ID] if fits else reply[:limit]
        examples.append(Example(source, target, len(pair.reply) if fits else len(tokenizer.decode(target))))
    return examples


def collate(examples: Sequence[Example]) -> Batch:
    B = len(examples)
    S = max(len(e.source) for e in examples)
    T = max(len(e.target) for e in examples)
    src = torch.full((B, S), PAD_ID, dtype=torch.long)
    tgt_in = torch.full((B, T), PAD_ID, dtype=torch.long)
    targets = torch.full((B, T), PAD_ID, dtype=torch.long)
    for row, e in enumerate(examples):
        src[row, : len(e.source)] = torch.tensor(e.source)
        tgt_in[row, 0] = GO_ID
        tgt_in[row, 1 : len(e.target)] = torch.tensor(e.target[:-1])
        targets[row, : len(e.target)] = torch.tensor(e.target)
    lengths = torch.tensor([len(e.source) for e in examples])
    return Batch(
        src,
        lengths,
        tgt_in,
        targets,
        reply_chars=sum(e.reply_chars for e in examples),
        target_tokens=sum(len(e.target) for e in examples),
    )


def make_batches(
    examples: Sequence[Example], batch_size: int, *, shuffle: bool, seed: int = 0
) -> list[Batch]:
    """Similar lengths share a batch (little padding); batch order is shuffled when asked.

    The whole epoch is sorted by reply length, then prompt length, ties in shuffled order (so
    epochs still differ in which pairs meet). The encoder steps over the longest prompt of its
    batch: sorting within windows of 50 batches left Korean batches 8.3 prompt tokens long for
    5.4 on average, sorting all of them 6.7, and the tutorial preset trained 11% faster (5,330
    against 4,801 reply characters/s, mean of six alternating runs).
    """
    rng = random.Random(seed)
    order = list(range(len(examples)))
    if shuffle:
        rng.shuffle(order)
    order.sort(key=lambda i: (len(examples[i].target), len(examples[i].source)))  # stable: ties stay shuffled
    batches = [collate([examples[i] for i in order[b : b + batch_size]]) for b in range(0, len(order), batch_size)]
    if shuffle:
        rng.shuffle(batches)
    return batches
