"""Splitting a reply at a platform's length limit."""

from __future__ import annotations

import pytest

from bot.messages import split_text


def test_short_text_is_one_piece() -> None:
    assert split_text("hello", 10) == ["hello"]
    assert split_text("", 10) == [""]


def test_cuts_at_spaces_and_line_breaks() -> None:
    assert split_text("aaaa bbbb cccc", 9) == ["aaaa bbbb", "cccc"]
    assert split_text("line one\nline two", 12) == ["line one", "line two"]


def test_long_word_is_cut_hard() -> None:
    assert split_text("x" * 25, 10) == ["x" * 10, "x" * 10, "x" * 5]


@pytest.mark.parametrize("limit", [4096, 2000])
def test_every_piece_fits_and_nothing_but_spacing_is_lost(limit: int) -> None:
    text = ("안녕하세요 반가워요 😀 " * 900) + ("y" * 5000)
    pieces = split_text(text, limit)
    assert all(0 < len(piece) <= limit for piece in pieces)
    assert "".join(pieces).replace(" ", "") == text.replace(" ", "")


def test_bad_limit_is_refused() -> None:
    with pytest.raises(ValueError):
        split_text("x", 0)
