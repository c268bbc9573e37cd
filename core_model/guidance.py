"""Decoding steered towards the replies of the nearest training prompts.

A prompt worded unlike any the model was trained on often gets a fluent reply that fits another
prompt. The replies that the training prompts nearest in characters got (core_model/reply_memory.py)
tell which replies fit this one. At each step, the decoder's next-token distribution is mixed with
the distribution of the tokens that continue those replies from the reply so far:

    p(token) = (1 - share) * p_model(token) + share * p_guide(token)
        while the reply so far begins at least one of those replies, p_model(token) after, where
    p_guide(token) = (sum of w_k over the replies k that the reply so far begins and that token
                      continues, <eos> where reply k ends there) / (sum of w_k over the replies k
                      that the reply so far begins),

w_k being reply k's weight (its prompt's similarity ** 16, normalised over the neighbours, as the
reranking weighs them).
This is kNN-LM's interpolation (Khandelwal et al. 2020) with whole replies as the neighbours. The
decoder still writes every token, and where no neighbour reply continues the reply so far, the
model's own distribution decides alone. A far-fetched neighbour has little pull, since it needs the
model's probability to be chosen over a continuation the model prefers.

p_guide is the next token's distribution given the reply so far: the replies it has left no longer
count. Without that division, a reply that had left all neighbours but one kept only that one's
weight of the share. With three equally near neighbours (21 bundled prompts read "심심해"), a third
of the share could not outweigh the model's wish to stop, and the default model answered "심심해"
with a neighbour's joke cut mid-word: "입을 벌리고 모든 의혹을 없애는 것보다 침묵하". Measured on one
model each: ccc_chitchat's valid.tsv chrF 11.65 against 9.76 (a neighbour's reply cut short: 769
replies against 1,540); Korean 28.02 against 28.16 on valid.tsv and 28.24 against 28.17 on 600
held-out training pairs, within what two models differ by.

Likewise, a reply that has left every neighbour's is scored by the model's distribution alone, not
by (1 - share) times it, so that beam search's scores stay log-probabilities of the replies (this
changed chrF by 0.05 at most: 12.04 against 11.99 on 1,200 ccc_chitchat pairs, 28.26 against 28.24
on the held-out Korean pairs).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor

from core_model.reply_memory import Neighbour
from core_model.reranking import neighbour_weights
from core_model.tokenizer import EOS_ID, PAD_ID, Tokenizer

_MARGIN = 1e-4  # see GuideRows.forced

# A source's neighbour replies: (token ids ending in <eos>, weight) with weights summing to 1.
Guide = list[tuple[list[int], float]]


def guide(tokenizer: Tokenizer, neighbours: Sequence[Neighbour]) -> Guide:
    """The replies of neighbours as a decoding guide (empty when they have no weight)."""
    weights = neighbour_weights(neighbours)
    if not any(weights):
        return []
    return [((n.reply_ids if n.reply_ids is not None else tokenizer.encode(n.reply)) + [EOS_ID], weight)
            for n, weight in zip(neighbours, weights, strict=True)]


@dataclass(frozen=True)
class GuideRows:
    """The guides of a decoding batch, one row per decoder row, selected as the rows are, and
    advanced a token at a time as the replies grow."""

    replies: Tensor  # [R, K, L] token ids, PAD_ID after each reply's <eos> and for missing replies
    # [R, K] each neighbour reply's weight while the reply so far is its beginning, else 0 (a reply
    # that has left a neighbour's never comes back to it).
    pulls: Tensor
    step: int = 0  # the length of the replies so far
    active: bool = True  # whether any pull is left

    @classmethod
    def of(cls, guides: Sequence[Guide]) -> GuideRows:
        K = max((len(g) for g in guides), default=0)
        lengths = np.array([len(ids) for g in guides for ids, _ in g], dtype=np.int64)
        L = int(lengths.max(initial=0))
        # Each reply's ids put in place in one assignment: padded nested lists through
        # torch.tensor() took 1 ms for 64 prompts of ten neighbours.
        slots = np.array([row * K + k for row, g in enumerate(guides) for k in range(len(g))], dtype=np.int64)
        ids = np.fromiter((i for g in guides for reply, _ in g for i in reply), dtype=np.int64, count=int(lengths.sum()))
        replies = np.full((len(guides) * K, L), PAD_ID, dtype=np.int64)
        replies[np.repeat(slots, lengths), np.arange(ids.size) - np.repeat(np.cumsum(lengths) - lengths, lengths)] = ids
        pulls = np.zeros(len(guides) * K, dtype=np.float32)
        pulls[slots] = [weight for g in guides for _, weight in g]
        return cls(torch.from_numpy(replies).view(len(guides), K, L), torch.from_numpy(pulls).view(len(guides), K))

    def select(self, index: Tensor) -> GuideRows:
        return replace(self, replies=self.replies[index], pulls=self.pulls[index])

    def advance(self, tokens: Tensor) -> GuideRows:
        """The guides once each row's reply has grown by tokens [R]."""
        step = self.step + 1
        if not self.active:
            return replace(self, step=step)
        pulls = self.pulls * (self.replies[:, :, self.step] == tokens.unsqueeze(1))
        return replace(self, pulls=pulls, step=step, active=step < self.replies.size(2) and bool(pulls.any()))

    def forced(self, share: float) -> Tensor:
        """[R] the token each row's greedy choice is bound to whatever the model's distribution,
        -1 where the model decides. The mixture gives a token share * its pull (its replies'
        weight over that of the replies still followed) at least: above one half, no other token
        can have as much, since the mixture sums to 1. A row following one reply is bound to its
        next token (share > 1/2), and the decoder need not compute that row's distribution."""
        if not self.active:
            return torch.full((self.pulls.size(0),), -1, dtype=torch.long)
        pull, next_tokens = self._pull()  # [R, K]
        best, which = pull.max(dim=-1)  # [R]
        token = next_tokens.gather(1, which.unsqueeze(1)).squeeze(1)
        # the margin keeps rounding in the mixture's log-space sums from ever deciding
        return torch.where(share * best > 0.5 + _MARGIN, token, -1)

    def bound_rests(self, share: float, forced: Tensor | None = None) -> list[list[int] | None]:
        """Per row, the rest of the reply (to its <eos>) when the guides bind every token still to
        come (GuideRows.forced): the replies the row follows go on alike once the token they bind
        next is written (whether they all begin with it, or the near reply binds it and the far
        ones that do not are left), so each next token is bound in turn. None where the model
        still has a say. forced: self.forced(share), if the caller has it already."""
        if not self.active or share <= 0.5 + _MARGIN:
            return [None] * self.pulls.size(0)
        token = self.forced(share) if forced is None else forced  # -1 where not bound: no reply followed after
        after = self.advance(token)
        rests = after._alike_rests() if after.active else [None] * self.pulls.size(0)
        return [[EOS_ID] if first == EOS_ID else [first, *rest] if rest is not None else None
                for first, rest in zip(token.tolist(), rests, strict=True)]

    def _alike_rests(self) -> list[list[int] | None]:
        """Per row, the rest of the replies it follows (to its <eos>) when they all go on alike."""
        followed = self.pulls > 0  # [R, K]
        rest = self.replies[:, :, self.step :]  # [R, K, L']: PAD_ID after each <eos>
        first = rest.gather(1, followed.int().argmax(dim=1).view(-1, 1, 1).expand(-1, 1, rest.size(2)))  # [R, 1, L']
        alike = ((rest == first).all(dim=-1) | ~followed).all(dim=-1) & followed.any(dim=-1)  # [R]
        return [_to_eos(first[r, 0].tolist()) if bound else None for r, bound in enumerate(alike.tolist())]

    def _pull(self) -> tuple[Tensor, Tensor]:
        """([R, K] each neighbour reply's next token's pull, [R, K] those tokens): two neighbour
        replies may continue with the same token, and each of those gets their sum, over the sum
        of the replies still followed (0 in a row following none)."""
        followed = self.pulls.sum(dim=-1, keepdim=True)  # [R, 1]
        next_tokens = self.replies[:, :, self.step]  # [R, K]
        same = next_tokens.unsqueeze(2) == next_tokens.unsqueeze(1)  # [R, K, K]
        return (same * self.pulls.unsqueeze(1)).sum(dim=-1) / followed.clamp_min(1e-30), next_tokens

    def mix(self, log_probs: Tensor, share: float) -> Tensor:
        """log_probs [R, V] of the model's next token -> those of the mixture (log_probs itself
        when no row follows a neighbour's reply any more)."""
        if not self.active:
            return log_probs
        # In a row still following a neighbour's reply, only the K tokens that continue one get more
        # than (1 - share) * p: the rest of the row is shifted by log(1 - share), and those K are
        # computed apart. A row following none keeps the model's distribution.
        keep = torch.where(self.pulls.sum(dim=-1, keepdim=True) > 0, math.log1p(-share), 0.0)  # [R, 1]
        pull, next_tokens = self._pull()  # [R, K]
        own = log_probs.gather(1, next_tokens)  # [R, K]
        mixed = log_probs + keep
        return mixed.scatter_(1, next_tokens, torch.logaddexp(own + keep, (share * pull).log()))


def _to_eos(ids: list[int]) -> list[int]:
    return ids[: ids.index(EOS_ID) + 1] if EOS_ID in ids else ids
