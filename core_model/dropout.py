"""Dropout whose mask costs a fraction of what torch's does on the CPU.

torch's CPU dropout draws one Mersenne Twister number per element (`bernoulli_`): 2.7 ms for a
64 x 12 x 500 activation on this machine, where the multiply itself takes 0.04 ms. Here each 64-bit
draw is cut into four 16-bit lanes, and an element is kept when its lane clears a threshold: a
quarter of the draws, and the compare and multiply run vectorised (1.1 ms for the same activation).
Training steps of the tutorial's size took 142.9 ms against 147.1 (alternating blocks of 20 steps
in one process, 10 rounds), the default preset's 81.9 against 82.7. The drop rate is p rounded to
a multiple of 1/65536; draws come from torch's generator, so `torch.manual_seed` still makes
training repeatable.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

_LANES = 65536  # values a 16-bit lane takes
_FULL_RANGE = (-(2**63), 2**63 - 1)  # every int64 (the upper bound is exclusive: one value short)


def keep_mask(shape: torch.Size, p: float) -> Tensor:
    """True with probability 1 - p (rounded to a multiple of 1/65536), independently per element."""
    count = shape.numel()
    draws = torch.randint(*_FULL_RANGE, ((count + 3) // 4,), dtype=torch.int64)
    lanes = draws.view(torch.int16)[:count].view(shape)  # each uniform over [-32768, 32767]
    return lanes >= round(p * _LANES) - _LANES // 2


def dropped(x: Tensor, p: float) -> Tensor:
    """x with a share p of its elements zeroed and the rest scaled by 1 / (1 - p) (x itself if p is 0)."""
    if p == 0:
        return x
    # Scaled after masking, so that a bf16 activation is rounded once, not scaled by a rounded 1 / (1 - p).
    return (x * keep_mask(x.shape, p).to(x.dtype)).mul_(1 / (1 - p))


class Dropout(nn.Module):
    """nn.Dropout's behaviour (zero a share p of elements while training, scale the rest by
    1 / (1 - p); the identity in eval mode) with a cheaper mask."""

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"dropout must be at least 0 and below 1, not {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        return dropped(x, self.p) if self.training else x

    def extra_repr(self) -> str:
        return f"p={self.p}"
