"""Which texts may become training data."""

from __future__ import annotations

from pathlib import Path

import pytest

from storage.filters import BlocklistError, TextFilter, read_blocklist


@pytest.mark.parametrize("text", [
    "hello there", "안녕하세요 반가워요", "see https://example.com for more", "🙂🙂", "call me at 5",
])
def test_accepts_conversation(text: str) -> None:
    assert TextFilter().accepts(text)


@pytest.mark.parametrize("text, why", [
    ("", "empty"),
    ("   ", "blank"),
    ("x" * 301, "too long"),
    ("/start", "command"),
    ("/retrain@my_bot now", "command with bot name"),
    ("https://example.com/a?b=c", "link only"),
    ("www.example.com  https://x.org", "links only"),
    ("mail me: kim.minsu+chat@example.co.kr", "e-mail"),
    ("내 번호는 010-1234-5678 이야", "Korean mobile"),
    ("01012345678", "Korean mobile without dashes"),
    ("주민번호 900101-1234567", "resident registration number"),
    ("call +1 (415) 555-2671", "international phone"),
    ("office 02-312-4567", "area code phone"),
])
def test_refuses(text: str, why: str) -> None:
    assert not TextFilter().accepts(text), why


def test_blocklist_matches_inside_korean_words_and_ignores_case(tmp_path: Path) -> None:
    path = tmp_path / "blocked.txt"
    path.write_text("# comment\n바보\nBadWord\n\n", encoding="utf-8")
    words = read_blocklist(path)
    assert words == {"바보", "badword"}
    text_filter = TextFilter(blocklist=words)
    assert not text_filter.accepts("너 바보야")  # the particle is attached to the word
    assert not text_filter.accepts("what a BADWORD")
    assert text_filter.accepts("a good word")


def test_length_bounds_are_settings() -> None:
    assert not TextFilter(min_chars=3).accepts("hi")
    assert TextFilter(max_chars=1000).accepts("y" * 1000)


def test_unreadable_blocklist_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.txt"
    with pytest.raises(BlocklistError, match="nope.txt"):
        read_blocklist(missing)
