"""Which texts may become training data: length, commands, bare links, blocked words, personal data."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
# Personal data. A pair that contains any of these is dropped whole rather than redacted: a
# redaction placeholder would teach the model to say it, and a partial miss would leak the rest.
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_TWO_DIGITS = re.compile(r"\d\d")  # every number pattern below has two digits in a row
_NUMBERS = re.compile(
    "|".join([
        r"\b\d{6}\s*-\s*[1-8]\d{6}\b",  # Korean resident registration number (or foreigner number)
        r"\b01[016789][\s.-]?\d{3,4}[\s.-]?\d{4}\b",  # Korean mobile number
        r"\+\d{1,3}[\s.-]?\(?\d{1,4}\)?(?:[\s.-]?\d{2,4}){2,4}",  # international number
        r"\b\(?0\d{1,3}\)?[\s.-]\d{3,4}[\s.-]\d{4}\b",  # national number with area code
    ])
)


class BlocklistError(ValueError):
    """The blocklist file cannot be read; the message names it."""


def read_blocklist(path: Path) -> frozenset[str]:
    """One word or phrase per line; blank lines and lines starting with # are skipped."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise BlocklistError(f"blocklist file {path}: {error}") from None
    return frozenset(line.strip().casefold() for line in lines
                     if line.strip() and not line.lstrip().startswith("#"))


@dataclass(frozen=True)
class TextFilter:
    """Accepts a text for training only if it passes every rule."""

    min_chars: int = 1
    max_chars: int = 300
    blocklist: frozenset[str] = frozenset()
    _blocked: re.Pattern[str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Substring match, not whole words: Korean attaches particles to the word they follow.
        pattern = _alternation(self.blocklist)
        object.__setattr__(self, "_blocked", pattern)

    def accepts(self, text: str) -> bool:
        stripped = text.strip()
        if not self.min_chars <= len(stripped) <= self.max_chars:
            return False
        if stripped.startswith("/"):  # a bot command, not conversation
            return False
        # The cheap substring tests skip the costlier patterns for most texts (mining runs this on
        # every logged message).
        if ("://" in stripped or "www." in stripped.lower()) and not _URL.sub("", stripped).strip():
            return False  # nothing but links
        if self._blocked is not None and self._blocked.search(stripped.casefold()):
            return False
        if "@" in stripped and _EMAIL.search(stripped):
            return False
        return not (_TWO_DIGITS.search(stripped) and _NUMBERS.search(stripped))


def _alternation(words: Iterable[str]) -> re.Pattern[str] | None:
    ordered = sorted({word.casefold() for word in words if word}, key=len, reverse=True)
    return re.compile("|".join(map(re.escape, ordered))) if ordered else None
