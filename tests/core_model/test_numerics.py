import ctypes
import os

import pytest

from core_model import numerics


class _RecordingLibc:
    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def mallopt(self, option: int, value: int) -> int:
        self.calls.append((option, value))
        return 1


def test_malloc_thresholds_fit_in_a_c_int(monkeypatch: pytest.MonkeyPatch) -> None:
    """mallopt takes a C int: a larger threshold wraps (1 << 34 became 0, trimming on every free)."""
    libc = _RecordingLibc()
    monkeypatch.setattr(ctypes, "CDLL", lambda name: libc)
    numerics.keep_freed_memory()
    assert libc.calls, "no malloc threshold was set"
    for _, value in libc.calls:
        assert 0 < value == ctypes.c_int(value).value
    assert dict(libc.calls)[-1] >= 1 << 30  # the trim threshold: a gigabyte at least stays mapped


def test_huge_pages_are_asked_for_unless_the_environment_says(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("THP_MEM_ALLOC_ENABLE", raising=False)
    numerics.use_huge_pages()
    assert numerics.os.environ["THP_MEM_ALLOC_ENABLE"] == "1"
    monkeypatch.setenv("THP_MEM_ALLOC_ENABLE", "0")
    numerics.use_huge_pages()
    assert numerics.os.environ["THP_MEM_ALLOC_ENABLE"] == "0"


def test_a_large_kernel_cache_is_asked_for_unless_the_environment_says(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", raising=False)
    numerics.use_large_kernel_cache()
    assert int(numerics.os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"]) > 1024  # oneDNN's default
    monkeypatch.setenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "16")
    numerics.use_large_kernel_cache()
    assert numerics.os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == "16"


@pytest.mark.parametrize("before", [None, "1"])
def test_a_decoding_process_is_started_without_huge_pages(monkeypatch: pytest.MonkeyPatch, before: str | None) -> None:
    if before is None:
        monkeypatch.delenv("THP_MEM_ALLOC_ENABLE", raising=False)
    else:
        monkeypatch.setenv("THP_MEM_ALLOC_ENABLE", before)
    with numerics.serving_environment():
        assert os.environ["THP_MEM_ALLOC_ENABLE"] == "0"
    assert os.environ.get("THP_MEM_ALLOC_ENABLE") == before  # the parent's own setting is back

