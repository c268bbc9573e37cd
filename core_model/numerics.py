"""Numeric precision on the CPU: whether to use bf16 autocast, and the context that applies it."""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Iterator
from functools import cache

import torch


@cache
def cpu_has_native_bf16() -> bool:
    """True when the CPU multiplies bf16 in hardware (AVX-512 BF16 or AMX); emulated bf16 is slower."""
    probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    if probe is not None:
        with contextlib.suppress(Exception):
            return bool(probe()) or bool(getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)())
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as cpuinfo:
            flags = cpuinfo.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def use_bf16(requested: bool | None) -> bool:
    return cpu_has_native_bf16() if requested is None else requested


def autocast(enabled: bool) -> contextlib.AbstractContextManager[object]:
    """bf16 for the matrix products of linear layers and attention, and of the GRUs too: the GRU's
    inputs, state and outputs stay fp32, but autocast reaches the products inside it (its outputs
    differ from fp32's by 3e-3 to 6e-3). Two GRU layers of the tutorial's size (500, batches of 64,
    6 steps) take 40-45 ms forward and backward so, against 73-89 ms in fp32 (benchmarks/gru_autocast.py).
    Training's fused GRU loop (core_model/gru_scan.py) multiplies in bf16 under autocast too."""
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled)


def use_huge_pages() -> None:
    """Ask PyTorch to back its large tensors with transparent huge pages (THP_MEM_ALLOC_ENABLE),
    unless the environment says otherwise: for training.

    A fresh 27 MB logits tensor otherwise costs 6,700 page faults, and the CPU's TLB misses on
    small pages; training the default preset ran 8.6% faster with huge pages. PyTorch reads the
    setting at its first tensor allocation, so call this before any (the setting is inherited by
    child processes, the retraining one included). Serving runs without them (serving_environment).
    """
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")


@contextlib.contextmanager
def serving_environment() -> Iterator[None]:
    """The environment without PyTorch's huge pages, while a decoding process is started (it
    inherits the environment as it is then): a batch's tensors are small and short-lived, and fresh
    huge pages for them cost more than they save. `chatbot bench infer`'s 64 concurrent requests
    ran 1,420-1,513 English replies/s without them against 1,024-1,215 with them, and 3,253-3,273
    Korean ones against 3,037-3,128 (single replies: 3.18-3.21 ms at the median against 3.06-3.08
    English, the same Korean)."""
    before = os.environ.get("THP_MEM_ALLOC_ENABLE")
    os.environ["THP_MEM_ALLOC_ENABLE"] = "0"
    try:
        yield
    finally:
        if before is None:
            del os.environ["THP_MEM_ALLOC_ENABLE"]
        else:
            os.environ["THP_MEM_ALLOC_ENABLE"] = before


def use_large_kernel_cache() -> None:
    """Let oneDNN keep 4,096 compiled matrix-product kernels (ONEDNN_PRIMITIVE_CACHE_CAPACITY; 1,024
    by default), unless the environment says otherwise. Call it before the first product.

    oneDNN compiles a kernel for each new shape of product, and training's shapes vary with each
    batch's lengths (the tokens of its prompts and replies). On a CPU with AMX, compiling costs
    about 3 ms a kernel. The default preset's training met 2,800 shapes in its first 900 steps and
    about 100 new ones per 500 steps after 2,500: with room for them, its steps took 65-67 ms
    against 84-86 with the default capacity, which kept evicting and recompiling (3,000 steps; the
    tutorial's preset: 108-119 against 130-168 ms). The kernels cost about 0.33 MB each: peak RSS
    3.1 GB against 1.9 after those 3,000 steps, about 1.4 GB more when the cache is full.
    """
    os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "4096")


def keep_freed_memory() -> None:
    """Ask glibc to keep large freed blocks instead of returning them to the OS.

    Every training step allocates the same large tensors (logits, embedding gradients); by default
    glibc unmaps them on free and the next step pays page faults to map them again, a fifth of the
    step time at the tutorial's size. A no-op where glibc is not the allocator.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        # mallopt takes a C int: a larger value wraps (1 << 34 became 0, which trimmed on every free).
        libc.mallopt(_M_MMAP_THRESHOLD, _ONE_GIB)
        libc.mallopt(_M_TRIM_THRESHOLD, _INT_MAX)
    except (OSError, AttributeError):
        pass


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_ONE_GIB, _INT_MAX = 1 << 30, (1 << 31) - 1
