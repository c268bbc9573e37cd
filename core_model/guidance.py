"""Decoding steered towards the replies of the nearest training prompts.

A prompt worded unlike any the model was trained on often gets a fluent reply that fits another
prompt. The replies that the training prompts nearest in characters got (core_model/reply_memory.py)
tell which replies fit this one. At each step, the decoder's next-token distribution is mixed with
the distribution of the tokens that continue those replies from the reply so far:

    p(token) = (1 - share) * p_model(token) + share * sum of w_k over the replies k that the reply
               so far begins, and that token continues (<eos> where reply k ends there),

w_k being reply k's weight (its prompt's similarity ** 4, normalised over the neighbours, as the
reranking weighs them).
This is kNN-LM's interpolation (Khandelwal et al. 2020) with whole replies as the neighbours. The
decoder still writes every token, and where no neighbour reply continues the reply so far, the
model's own distribution decides alone. A far-fetched neighbour has little pull, since it needs the
model's probability to be chosen over a continuation the model prefers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from core_model.reply_memory import Neighbour
from core_model.reranking import SHARPNESS
from core_model.tokenizer import EOS_ID, PAD_ID, Tokenizer

# A source's neighbour replies: (token ids ending in <eos>, weight) with weights summing to 1.
Guide = list[tuple[list[int], float]]


def guide(tokenizer: Tokenizer, neighbours: Sequence[Neighbour]) -> Guide:
    """The replies of neighbours as a decoding guide (empty when they have no weight)."""
    weights = [n.similarity**SHARPNESS for n in neighbours]
    total = sum(weights)
    if total <= 0:
        return []
    return [(tokenizer.encode(n.reply) + [EOS_ID], weight / total)
            for n, weight in zip(neighbours, weights, strict=True)]


@dataclass(frozen=True)
class GuideRows:
    """The guides of a decoding batch, one row per decoder row, selected as the rows are."""

    replies: Tensor  # [R, K, L] token ids, PAD_ID after each reply's <eos> and for missing replies
    weights: Tensor  # [R, K]

    @classmethod
    def of(cls, guides: Sequence[Guide]) -> GuideRows:
        K = max((len(g) for g in guides), default=0)
        L = max((len(ids) for g in guides for ids, _ in g), default=0)
        replies = torch.full((len(guides), K, L), PAD_ID, dtype=torch.long)
        weights = torch.zeros((len(guides), K))
        for row, rows_guide in enumerate(guides):
            for k, (ids, weight) in enumerate(rows_guide):
                replies[row, k, : len(ids)] = torch.tensor(ids, dtype=torch.long)
                weights[row, k] = weight
        return cls(replies, weights)

    def select(self, index: Tensor) -> GuideRows:
        return GuideRows(self.replies[index], self.weights[index])

    def mix(self, log_probs: Tensor, generated: Tensor, share: float) -> Tensor:
        """log_probs [R, V] of the model's next token -> those of the mixture, given the replies so
        far generated [R, t]."""
        t = generated.size(1)
        if t >= self.replies.size(2):  # past the end of every neighbour reply
            return log_probs + torch.log1p(torch.tensor(-share))
        follows = (self.replies[:, :, :t] == generated.unsqueeze(1)).all(dim=-1)  # [R, K]
        next_tokens = self.replies[:, :, t]  # [R, K]
        pull = torch.zeros_like(log_probs).scatter_add_(1, next_tokens, self.weights * follows)
        pull[:, PAD_ID] = 0.0  # a reply that has ended (or is missing) continues with nothing
        return torch.log((1 - share) * log_probs.exp() + share * pull)
