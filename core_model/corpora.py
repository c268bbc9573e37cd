"""Dialogue corpora: TSV, CSV (Q,A) and chatterbot-corpus YAML files read into (prompt, reply) pairs."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from core_model.tokenizer import normalize


class CorpusError(ValueError):
    """A corpus file is missing or not in a layout we can read; the message names the file."""


@dataclass(frozen=True, slots=True)
class Pair:
    prompt: str
    reply: str
    context: str = ""  # the turn(s) before the prompt, if the corpus has them


def load_pairs(paths: Sequence[Path | str]) -> list[Pair]:
    """Read every file, by extension: .tsv, .csv, .yml/.yaml; empty sides are skipped."""
    pairs: list[Pair] = []
    for raw in paths:
        path = Path(raw)
        if not path.is_file():
            raise CorpusError(f"{path}: no such file")
        readers = {".tsv": _read_tsv, ".csv": _read_csv, ".yml": _read_yaml, ".yaml": _read_yaml}
        reader = readers.get(path.suffix.lower())
        if reader is None:
            raise CorpusError(f"{path}: unknown corpus format (expected .tsv, .csv or .yml)")
        try:
            pairs.extend(_clean(reader(path)))
        except (UnicodeDecodeError, yaml.YAMLError, csv.Error) as error:
            raise CorpusError(f"{path}: unreadable ({type(error).__name__}: {error})") from None
    return pairs


def bundled_corpus(languages: Iterable[str] = ("english", "korean")) -> list[Pair]:
    """The chatterbot-corpus package's dialogues, read from its installed files, and this project's
    small talk (core_model/data/small_talk.yml: the first things people say to a chatbot)."""
    root = resources.files("chatterbot_corpus") / "data"
    paths = []
    for language in languages:
        folder = root / language
        if not folder.is_dir():
            raise CorpusError(f"chatterbot-corpus has no language {language!r}")
        paths.extend(sorted(Path(str(p)) for p in folder.iterdir() if p.name.endswith(".yml")))
    paths.append(Path(str(resources.files("core_model") / "data" / "small_talk.yml")))
    # Each exchange once: the package repeats some a hundred times over (eight tech-support
    # answers made up 28% of it), and a model trained on that answers "hello" with a USB port.
    return list(dict.fromkeys(load_pairs(paths)))


def _clean(pairs: Iterable[Pair]) -> Iterator[Pair]:
    for pair in pairs:
        prompt, reply = normalize(pair.prompt), normalize(pair.reply)
        if prompt and reply:
            yield Pair(prompt, reply, normalize(pair.context))


def _read_tsv(path: Path) -> Iterator[Pair]:
    with path.open(encoding="utf-8-sig") as handle:  # a spreadsheet's export may start with a BOM
        header = handle.readline().rstrip("\n").split("\t")
        if header[:2] != ["prompt", "reply"]:
            raise CorpusError(f"{path}: first line must be 'prompt<TAB>reply[<TAB>context]'")
        for number, line in enumerate(handle, start=2):
            cells = line.rstrip("\n").split("\t")
            if len(cells) < 2:
                raise CorpusError(f"{path}:{number}: expected prompt<TAB>reply")
            yield Pair(cells[0], cells[1], cells[2] if len(cells) > 2 else "")


def _read_csv(path: Path) -> Iterator[Pair]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        rows = csv.DictReader(handle)
        if not rows.fieldnames or not {"Q", "A"} <= set(rows.fieldnames):
            raise CorpusError(f"{path}: expected a header with Q and A columns")
        for row in rows:
            yield Pair(row["Q"] or "", row["A"] or "")


def _read_yaml(path: Path) -> Iterator[Pair]:
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(document, dict) or not isinstance(document.get("conversations"), list):
        raise CorpusError(f"{path}: expected a 'conversations' list (chatterbot-corpus layout)")
    for conversation in document["conversations"]:
        turns = [str(turn) for turn in conversation or [] if turn is not None]
        for index in range(len(turns) - 1):
            yield Pair(turns[index], turns[index + 1], turns[index - 1] if index else "")
