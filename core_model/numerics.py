"""Numeric precision on the CPU: whether to use bf16 autocast, and the context that applies it."""

from __future__ import annotations

import contextlib
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
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled)
