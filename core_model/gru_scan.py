"""torch.nn.GRU's training forward and backward through a fused time loop (csrc/gru_scan.cpp).

PyTorch's CPU GRU runs a dozen small tensor operations per time step and layer, records each for
autograd and replays them one by one backward, summing the weight gradients step by step. At the
tutorial preset's size that was half of a training step, most of it per-operation overhead rather
than arithmetic. The fused loop does one matrix product and one vectorised pass over the gates per
step, each way, and the weight gradients as one product over all steps. Same equations, same
parameters (the nn.GRU module keeps them, so checkpoints and serving are unchanged); gradients
match nn.GRU's to float precision, and to bf16 rounding under autocast.

The loop is C++ built with PyTorch's extension builder on first use (about 30 s, then cached
under ~/.cache/torch_extensions). Where it cannot be built, e.g. on a machine without a C++
compiler, `fused_gru()` is None and training runs nn.GRU as before, after one warning.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import threading
from pathlib import Path
from types import ModuleType

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core_model.dropout import dropped

log = logging.getLogger(__name__)

_SOURCE = Path(__file__).with_name("csrc") / "gru_scan.cpp"
# -march=native: the build is per machine (the extension's name carries the CPU's flags).
# -ffast-math lets GCC vectorise expf and tanhf through glibc's libmvec. -fopenmp: at::parallel_for
# splits a step's rows, or a layer's two directions, over the cores (through the libgomp PyTorch loaded).
_CFLAGS = ["-O3", "-march=native", "-ffast-math", "-fopenmp"]
_LDFLAGS = ["-lmvec", "-fopenmp"]

_lock = threading.Lock()
_built: list[ModuleType | None] = []  # empty until the first build is tried


def fused_gru() -> ModuleType | None:
    """The built extension, building it on first call; None where it cannot be built."""
    with _lock:
        if not _built:
            _built.append(_build())
        return _built[0]


def _build() -> ModuleType | None:
    if os.environ.get("CHATBOT_FUSED_GRU", "1") == "0":
        return None
    try:
        from torch.utils.cpp_extension import load

        _put_ninja_on_path()
        return load(_extension_name(), [str(_SOURCE)], extra_cflags=_CFLAGS, extra_ldflags=_LDFLAGS)
    except Exception as error:  # no compiler, no headers, a failed build: train with nn.GRU
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        log.warning("the fused GRU kernel could not be built (%s); training uses torch.nn.GRU", first_line)
        return None


def _put_ninja_on_path() -> None:
    """PyTorch's builder runs `ninja` from PATH; the ninja package installs it beside Python."""
    try:
        import ninja

        directory = ninja.BIN_DIR
    except (ImportError, AttributeError):
        return
    if directory not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = directory + os.pathsep + os.environ.get("PATH", "")


def _extension_name() -> str:
    """A name per source, compiler flags, PyTorch version and CPU: a cached build made for another
    CPU (-march=native) or PyTorch is never loaded."""
    cpu_flags = ""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as cpuinfo:
            cpu_flags = next((line for line in cpuinfo if line.startswith("flags")), "")
    except OSError:
        cpu_flags = platform.processor()
    key = "|".join([_SOURCE.read_text(), *_CFLAGS, *_LDFLAGS, torch.__version__, cpu_flags])
    return "chatbot_gru_scan_" + hashlib.sha1(key.encode()).hexdigest()[:12]


class _Scan(torch.autograd.Function):
    """A unidirectional GRU layer over all time steps: (gi [T, B, 3H], h0 [B, H], w_hh, b_hh)
    -> (output [T, B, H], final state [B, H])."""

    @staticmethod
    def forward(ctx, gi: Tensor, h0: Tensor, w_hh: Tensor, b_hh: Tensor, sizes: list[int]) -> tuple[Tensor, Tensor]:
        extension = fused_gru()
        assert extension is not None
        output, state, *saved = extension.forward(gi, h0, w_hh, b_hh, sizes, False)
        ctx.save_for_backward(*saved)  # w_hh in gi's type first
        ctx.sizes = sizes
        return output, state

    @staticmethod
    def backward(ctx, d_output: Tensor, d_state: Tensor):
        extension = fused_gru()
        assert extension is not None
        d_gi, d_h0, d_w_hh, d_b_hh = extension.backward(d_output, d_state, *ctx.saved_tensors, ctx.sizes, False)
        return d_gi, d_h0, d_w_hh, d_b_hh, None


class _ScanBoth(torch.autograd.Function):
    """Both directions of a bidirectional GRU layer, side by side on two threads (a direction's
    products, 64 rows of 250 at the tutorial's size, are too small to split well between two
    cores: its encoder took 12.6-13.9 ms a batch against 15.3-15.5 one direction after the other)."""

    @staticmethod
    def forward(ctx, gi_forward: Tensor, gi_reverse: Tensor, h0_forward: Tensor, h0_reverse: Tensor,
                w_forward: Tensor, w_reverse: Tensor, b_forward: Tensor, b_reverse: Tensor,
                sizes: list[int]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        extension = fused_gru()
        assert extension is not None
        forward, reverse = extension.forward_both(gi_forward, gi_reverse, h0_forward, h0_reverse, w_forward,
                                                  w_reverse, b_forward, b_reverse, sizes)
        ctx.save_for_backward(*forward[2:], *reverse[2:])
        ctx.sizes = sizes
        return forward[0], forward[1], reverse[0], reverse[1]

    @staticmethod
    def backward(ctx, d_out_forward: Tensor, d_state_forward: Tensor, d_out_reverse: Tensor,
                 d_state_reverse: Tensor):
        extension = fused_gru()
        assert extension is not None
        saved = ctx.saved_tensors
        half = len(saved) // 2
        forward, reverse = extension.backward_both([d_out_forward, d_state_forward, *saved[:half]],
                                                   [d_out_reverse, d_state_reverse, *saved[half:]], ctx.sizes)
        return (forward[0], reverse[0], forward[1], reverse[1], forward[2], reverse[2], forward[3], reverse[3],
                None)


def scan_gru(rnn: nn.GRU, x: Tensor, h0: Tensor | None = None,
             lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """rnn(x, h0) for a batch_first nn.GRU with biases, in training: x [B, T, I] -> output
    [B, T, D*H], h_n [L*D, B, H]. With lengths [B], as for a packed sequence: each row steps over
    its first lengths[b] inputs only, its output is zero after them, and h_n is its state there.
    Dropout between layers as rnn's (the cheaper mask of core_model/dropout.py)."""
    if not (rnn.batch_first and rnn.bias):
        raise ValueError("scan_gru takes a batch_first nn.GRU with biases")
    B, T, _ = x.shape
    H, D = rnn.hidden_size, 2 if rnn.bidirectional else 1
    sizes: list[int] = []  # rows stepping at each time, for rows sorted longest first
    order = None
    if lengths is not None:
        order = torch.argsort(lengths, descending=True, stable=True)
        x = x.index_select(0, order)
        h0 = h0.index_select(1, order) if h0 is not None else None
        sizes = (lengths[order].unsqueeze(0) > torch.arange(T).unsqueeze(1)).sum(dim=1).tolist()
    layer_input = x.transpose(0, 1)  # [T, B, I]: each step's rows side by side
    finals: list[Tensor] = []

    def start(index: int) -> Tensor:
        return h0[index] if h0 is not None else x.new_zeros(B, H, dtype=torch.float32)

    def weights(layer: int, direction: int) -> list[Tensor]:
        suffix = f"_l{layer}" + ("_reverse" if direction else "")
        return [getattr(rnn, name + suffix) for name in ("weight_ih", "bias_ih", "weight_hh", "bias_hh")]

    for layer in range(rnn.num_layers):
        if D == 2:
            (wi_f, bi_f, wh_f, bh_f), (wi_r, bi_r, wh_r, bh_r) = weights(layer, 0), weights(layer, 1)
            out_f, final_f, out_r, final_r = _ScanBoth.apply(
                F.linear(layer_input, wi_f, bi_f), F.linear(layer_input, wi_r, bi_r), start(2 * layer),
                start(2 * layer + 1), wh_f, wh_r, bh_f, bh_r, sizes)
            layer_input, finals = torch.cat([out_f, out_r], dim=-1), finals + [final_f, final_r]
        else:
            w_ih, b_ih, w_hh, b_hh = weights(layer, 0)
            layer_input, final = _Scan.apply(F.linear(layer_input, w_ih, b_ih), start(layer), w_hh, b_hh, sizes)
            finals.append(final)
        if layer < rnn.num_layers - 1:
            layer_input = dropped(layer_input, rnn.dropout)
    output, h_n = layer_input.transpose(0, 1), torch.stack(finals)
    if order is not None:
        restore = torch.argsort(order)
        output, h_n = output.index_select(0, restore), h_n.index_select(1, restore)
    return output, h_n
