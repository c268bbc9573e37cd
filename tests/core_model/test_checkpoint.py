import json
from pathlib import Path

import pytest
import torch

from core_model import checkpoint
from core_model.checkpoint import CheckpointError
from core_model.model import Seq2Seq
from core_model.tokenizer import Tokenizer
from tests.conftest import PAIRS


def test_round_trip_gives_identical_logits(model_dir: Path, trained: Seq2Seq, tokenizer: Tokenizer) -> None:
    loaded = checkpoint.load(model_dir)
    src = torch.tensor([tokenizer.encode("안녕하세요 hello 😀")])
    tgt = torch.tensor([[1, 10, 11, 12]])
    expected, _ = trained(src, torch.tensor([src.size(1)]), tgt)
    got, _ = loaded.model(src, torch.tensor([src.size(1)]), tgt)
    assert torch.equal(expected, got)
    assert loaded.metrics == {"train_pairs": 8}
    assert loaded.tokenizer.encode("hello") == tokenizer.encode("hello")
    assert loaded.memory is not None
    assert (loaded.memory.prompts, loaded.memory.replies) == ([p.prompt for p in PAIRS], [p.reply for p in PAIRS])


def test_a_folder_without_a_memory_loads_without_one(tmp_path: Path, trained: Seq2Seq, tokenizer: Tokenizer) -> None:
    assert checkpoint.load(checkpoint.save(tmp_path / "m", trained, tokenizer)).memory is None


def test_folder_holds_only_data_files(model_dir: Path) -> None:
    assert sorted(p.name for p in model_dir.iterdir()) == [
        "config.json", "memory.json", "metrics.json", "model.safetensors", "tokenizer.json"]
    assert not list(model_dir.parent.glob(".tiny.*")), "no staging folder is left behind"


def test_saving_over_a_folder_replaces_it(tmp_path: Path, trained: Seq2Seq, tokenizer: Tokenizer) -> None:
    checkpoint.save(tmp_path / "m", trained, tokenizer, {"version": 1})
    checkpoint.save(tmp_path / "m", trained, tokenizer, {"version": 2})
    assert checkpoint.load(tmp_path / "m").metrics == {"version": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["m"]


def _copy(model_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    target.mkdir()
    for file in model_dir.iterdir():
        (target / file.name).write_bytes(file.read_bytes())
    return target


@pytest.mark.parametrize("name", ["model.safetensors", "config.json", "tokenizer.json"])
def test_missing_file_is_named(model_dir: Path, tmp_path: Path, name: str) -> None:
    broken = _copy(model_dir, tmp_path)
    (broken / name).unlink()
    with pytest.raises(CheckpointError, match=name):
        checkpoint.load(broken)


@pytest.mark.parametrize("name", ["model.safetensors", "config.json", "tokenizer.json", "memory.json"])
def test_corrupt_file_is_named(model_dir: Path, tmp_path: Path, name: str) -> None:
    broken = _copy(model_dir, tmp_path)
    data = (broken / name).read_bytes()
    (broken / name).write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointError, match=name):
        checkpoint.load(broken)


def test_shape_mismatch_is_named(model_dir: Path, tmp_path: Path) -> None:
    broken = _copy(model_dir, tmp_path)
    config = json.loads((broken / "config.json").read_text())
    config["hidden_size"] *= 2
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="model.safetensors.*expected"):
        checkpoint.load(broken)


@pytest.mark.parametrize(("setting", "value", "message"), [
    ("num_layers", 0, "num_layers must be at least 1"), ("dropout", 1.5, "dropout must be at least 0"),
    ("hidden_size", "wide", "not supported between"), ("colour", "red", "unknown model settings: colour")])
def test_a_setting_config_json_cannot_hold_is_named_with_the_file(model_dir: Path, tmp_path: Path, setting: str,
                                                                 value: object, message: str) -> None:
    broken = _copy(model_dir, tmp_path)
    config = json.loads((broken / "config.json").read_text())
    config[setting] = value
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=f"config.json: .*{message}"):
        checkpoint.load(broken)


def test_vocabulary_mismatch_is_named(model_dir: Path, tmp_path: Path) -> None:
    broken = _copy(model_dir, tmp_path)
    config = json.loads((broken / "config.json").read_text())
    config["vocab_size"] += 1
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="tokenizer.json"):
        checkpoint.load(broken)


def test_missing_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="nowhere"):
        checkpoint.load(tmp_path / "nowhere")
