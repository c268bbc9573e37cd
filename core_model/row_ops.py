"""Row-wise selections over a [rows, vocabulary] score matrix, faster than ATen's on the CPU.

ATen's argmax and topk over the last dimension run a scalar loop per row, while amax is
vectorised. Both functions here first find each row's best blocks of `block` scores with amax,
then search inside those blocks only: the decode step's selection at [64, 8000] drops from
0.9 ms to 0.14 ms (argmax), and beam search's top-k likewise.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

NEG_INF = float("-inf")


def argmax_rows(scores: Tensor, block: int = 64) -> Tensor:
    """scores [R, V] -> [R], the same indices as scores.argmax(-1) (first maximum on ties)."""
    R = scores.size(0)
    if R == 1:
        return scores.argmax(dim=-1)  # one row: the plain loop is quicker than the extra ops
    blocks = _blocks(scores, block)  # [R, V/block, block]
    best = blocks.amax(dim=-1).argmax(dim=-1)  # [R] the first block holding the row's maximum
    return best * block + blocks[torch.arange(R), best].argmax(dim=-1)


def topk_rows(scores: Tensor, k: int, block: int = 64) -> tuple[Tensor, Tensor]:
    """scores [R, V] -> (values, indices) [R, k], largest first: the values of scores.topk(k).

    Exact: a row's k largest scores lie in at most k blocks, and those blocks are among the k
    with the largest maxima. Among equal scores the index chosen may differ from topk's, and an
    index whose value is -inf is unspecified.
    """
    R, V = scores.shape
    # Too few blocks to skip many (the k blocks searched again are an eighth of the row or more),
    # or one row. The default model's 3,000 tokens make 47 blocks: 5 beams' top 10 by topk made
    # its beam-5 replies 4% faster (20.91 ms against 21.72 at the median, interleaved in one process).
    if R == 1 or -(-V // block) < 8 * k:
        return scores.topk(k, dim=-1)
    blocks = _blocks(scores, block)  # [R, V/block, block]
    best = blocks.amax(dim=-1).topk(k, dim=-1).indices  # [R, k] the blocks holding the top k
    inside = blocks.gather(1, best.unsqueeze(-1).expand(R, k, block)).view(R, k * block)
    values, position = inside.topk(k, dim=-1)  # [R, k]
    return values, best.gather(1, position // block) * block + position % block


def _blocks(scores: Tensor, block: int) -> Tensor:
    R, V = scores.shape
    if V % block:
        scores = F.pad(scores, (0, -V % block), value=NEG_INF)
    return scores.view(R, -1, block)
