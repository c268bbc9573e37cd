"""Model folders: safetensors weights, config.json, tokenizer.json, metrics.json, and memory.json
(the training pairs, for reranking; optional); written atomically."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_model

from core_model.config import ModelConfig
from core_model.model import Seq2Seq
from core_model.reply_memory import ReplyMemory
from core_model.tokenizer import Tokenizer

WEIGHTS, CONFIG, TOKENIZER, METRICS = "model.safetensors", "config.json", "tokenizer.json", "metrics.json"
MEMORY = "memory.json"
TRAIN_STATE = "train_state.pt"


class CheckpointError(ValueError):
    """A model folder is missing a file or holds a bad one; the message names the file."""


@dataclass
class LoadedModel:
    model: Seq2Seq
    tokenizer: Tokenizer
    metrics: dict[str, Any]
    path: Path
    memory: ReplyMemory | None = None  # absent from folders saved without one

    @property
    def reads_context(self) -> bool:
        """Whether the model learned from pairs with a context (the turn before the prompt): only
        then is a reply's context put before its prompt. A model that never saw the separator reads
        a context as noise."""
        return bool(self.metrics.get("context_pairs", 0))


def save(path: Path, model: Seq2Seq, tokenizer: Tokenizer, metrics: dict[str, Any] | None = None,
         extra_files: dict[str, bytes] | None = None, memory: ReplyMemory | None = None) -> Path:
    """Write the folder under a temporary name beside it, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        save_model(model, str(staging / WEIGHTS))
        (staging / CONFIG).write_text(json.dumps(model.config.to_dict(), indent=2) + "\n")
        tokenizer.save(staging / TOKENIZER)
        (staging / METRICS).write_text(json.dumps(metrics or {}, indent=2, default=str) + "\n")
        if memory is not None:
            (staging / MEMORY).write_text(memory.to_json(), encoding="utf-8")
        for name, data in (extra_files or {}).items():
            (staging / name).write_bytes(data)
        for file in staging.iterdir():
            with open(file, "rb") as handle:
                os.fsync(handle.fileno())
        if path.exists():
            retired = path.with_name(f".{path.name}.old")
            shutil.rmtree(retired, ignore_errors=True)
            path.rename(retired)
            staging.rename(path)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            staging.rename(path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return path


def load(path: Path | str) -> LoadedModel:
    """Load and check a model folder; any problem raises CheckpointError naming the file."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such model folder")
    settings = _read_json(path / CONFIG)
    try:
        config = ModelConfig.from_dict(settings)
    except (ValueError, TypeError) as error:  # unknown settings, or values out of range or of the wrong type
        raise CheckpointError(f"{path / CONFIG}: {error}") from None
    tokenizer_path = _existing(path / TOKENIZER)
    try:
        tokenizer = Tokenizer.load(tokenizer_path)
    except Exception as error:
        raise CheckpointError(f"{tokenizer_path}: not a valid tokenizer file ({error})") from None
    if tokenizer.vocab_size != config.vocab_size:
        raise CheckpointError(
            f"{tokenizer_path}: vocabulary of {tokenizer.vocab_size} does not match "
            f"vocab_size {config.vocab_size} in {path / CONFIG}"
        )
    model = Seq2Seq(config)
    weights_path = _existing(path / WEIGHTS)
    try:
        weights = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{weights_path}: unreadable weights ({error})") from None
    expected = model.state_dict()
    for name, tensor in expected.items():
        got = weights.get(name)
        if got is None or got.shape != tensor.shape:
            shape = None if got is None else tuple(got.shape)
            raise CheckpointError(f"{weights_path}: tensor {name} is {shape}, expected {tuple(tensor.shape)}")
    unexpected = sorted(set(weights) - set(expected))
    if unexpected:
        raise CheckpointError(f"{weights_path}: unexpected tensors {', '.join(unexpected[:3])}")
    model.load_state_dict(weights)
    model.eval()
    metrics = _read_json(path / METRICS) if (path / METRICS).exists() else {}
    return LoadedModel(model, tokenizer, metrics, path, _read_memory(path / MEMORY))


def save_train_state(path: Path, state: dict[str, Any]) -> None:
    """Optimizer and counters, for --resume; tensors and plain values only (loaded weights_only)."""
    staging = path.with_name(path.name + ".tmp")
    torch.save(state, staging)
    staging.replace(path)


def load_train_state(path: Path) -> dict[str, Any]:
    try:
        return dict(torch.load(path, weights_only=True))
    except Exception as error:
        raise CheckpointError(f"{path}: unreadable training state ({error})") from None


def _existing(path: Path) -> Path:
    if not path.is_file():
        raise CheckpointError(f"{path}: missing")
    return path


def save_memory(path: Path | str, memory: ReplyMemory) -> None:
    """Replace the memory of the model folder path (written under a temporary name, then renamed)."""
    staging = Path(path) / (MEMORY + ".tmp")
    staging.write_text(memory.to_json(), encoding="utf-8")
    staging.replace(Path(path) / MEMORY)


def load_memory(path: Path | str) -> ReplyMemory | None:
    """The memory of the model folder path, without loading its weights (None if it has none)."""
    return _read_memory(Path(path) / MEMORY)


def _read_memory(path: Path) -> ReplyMemory | None:
    if not path.exists():
        return None
    try:
        return ReplyMemory.from_json(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:  # JSONDecodeError is a ValueError
        raise CheckpointError(f"{path}: not a valid memory of training pairs ({error})") from None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(_existing(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    return data
