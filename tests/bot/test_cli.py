"""The `chatbot` command, run as a user runs it: a separate process, files in and out."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

CORPUS = "prompt\treply\n" + "".join(
    f"{p}\t{r}\n" for p, r in [("hello", "hi there"), ("안녕", "반가워요"), ("how are you", "fine 😀"),
                               ("배고파", "밥 먹어요"), ("bye", "see you"), ("고마워", "천만에요")] * 5)


def chatbot(*args: str, stdin: str = "", cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bot.cli", *args], input=stdin, capture_output=True,
                          text=True, timeout=300, cwd=cwd)


@pytest.fixture(scope="module")
def trained_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cli")
    (folder / "train.tsv").write_text(CORPUS, encoding="utf-8")
    result = chatbot("train", "--data", str(folder / "train.tsv"), "--preset", "tiny", "--max-steps", "30",
                     "--out", str(folder / "model"), "--json")
    assert result.returncode == 0, result.stderr
    return folder


def test_train_prints_its_results_as_json(trained_dir: Path) -> None:
    metrics = json.loads((trained_dir / "model" / "metrics.json").read_text())
    assert metrics["steps"] == 30
    for key in ("train_seconds", "train_pairs", "target_chars_per_s", "target_tokens_per_s",
                "valid_loss", "valid_bits_per_char"):
        assert metrics[key] > 0


def test_reply_answers_each_line(trained_dir: Path) -> None:
    result = chatbot("reply", "--model", str(trained_dir / "model"), "--strategy", "greedy",
                     stdin="hello\n안녕\n\n" + "x" * 50_000 + "\n")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 4


def test_eval_reports_quality_as_json(trained_dir: Path) -> None:
    result = chatbot("eval", "--model", str(trained_dir / "model"), "--data", str(trained_dir / "train.tsv"), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    assert report["pairs"] == 30
    for key in ("chrf", "bits_per_char", "distinct_1", "distinct_2", "repeat_rate", "empty_rate", "reply_p50_ms"):
        assert key in report


def test_bench_infer_reports_latency_throughput_and_memory(trained_dir: Path) -> None:
    result = chatbot("bench", "infer", "--model", str(trained_dir / "model"), "--concurrency", "8",
                     "--prompts", str(trained_dir / "train.tsv"), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    assert report["concurrency"] == 8 and report["threads"] == 1
    for key in ("greedy_p50_ms", "beam5_p50_ms", "default_p50_ms", "batch1_replies_per_s",
                "concurrent_replies_per_s", "speedup", "rss_mb"):
        assert report[key] > 0, key


def test_bench_train_times_the_steps_asked_for_after_a_warm_up_epoch(trained_dir: Path) -> None:
    # 30 pairs in batches of 16 (the tiny preset): an epoch of 2 batches, so the 20 steps timed
    # take ten more shufflings of them
    result = chatbot("bench", "train", "--data", str(trained_dir / "train.tsv"), "--preset", "tiny",
                     "--steps", "20", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    assert report["steps"] == 20 and report["preset"] == "tiny"
    for key in ("train_seconds", "target_chars_per_s", "target_tokens_per_s", "gflops", "peak_gflops"):
        assert report[key] > 0, key
    # the reply characters of 20 batches of 14 to 16 pairs, of 4 to 9 characters each (both rounded)
    assert 20 * 14 * 4 * 0.98 <= report["target_chars_per_s"] * report["train_seconds"] <= 20 * 16 * 9 * 1.02


def test_chat_reads_stdin(trained_dir: Path) -> None:
    result = chatbot("chat", "--model", str(trained_dir / "model"), stdin="/help\nhello\n", cwd=trained_dir)
    assert result.returncode == 0, result.stderr
    assert "/help" in result.stdout and len(result.stdout.strip().splitlines()) >= 4


@pytest.mark.parametrize(("args", "message"), [
    (["train", "--data", "nowhere.tsv", "--out", "x"], "nowhere.tsv: no such file"),
    (["reply", "--model", "no_model_here"], "no_model_here: no such model folder"),
    (["eval", "--model", "no_model_here", "--data", "x.tsv"], "no_model_here"),
    (["train", "--data", "x.tsv", "--vocab", "100", "--out", "x"], "argument --vocab: must be at least 262"),
    (["train", "--data", "x.tsv", "--hidden", "many", "--out", "x"], "argument --hidden"),
    (["bench", "infer", "--concurrency", "x"], "argument --concurrency"),
    (["reply", "--model", "x", "--neighbour-share", "1"], "argument --neighbour-share: must be at least 0 and below 1"),
    (["reply", "--model", "x", "--neighbour-share", "half"], "argument --neighbour-share: invalid float value"),
    (["reply", "--model", "x", "--max-length", "-5"], "max_length must be at least 1, not -5"),
    (["chat", "--model", "x", "--top-p", "2"], "top_p must be at most 1, not 2.0"),
    (["train", "--data", "header_only.tsv", "--out", "x"], "header_only.tsv: no pairs to train on"),
])
def test_errors_are_one_line_without_traceback(args: list[str], message: str, tmp_path: Path) -> None:
    (tmp_path / "header_only.tsv").write_text("prompt\treply\n")
    result = chatbot(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert message in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("setting", ["BEAM_WIDTH=lots", "NEIGHBOUR_SHARE=1.5"])
def test_bad_setting_is_named(setting: str, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(setting + "\n")
    result = chatbot("chat", "--model", "x", cwd=tmp_path)
    assert result.returncode == 2
    assert setting.split("=")[0] in result.stderr and "Traceback" not in result.stderr


def test_db_commands_migrate_the_configured_database(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(f"DATABASE_URL=sqlite:///{tmp_path / 'chat.db'}\n")
    assert "revision: empty" in chatbot("db", "current", cwd=tmp_path).stdout
    upgraded = chatbot("db", "upgrade", cwd=tmp_path)
    assert upgraded.returncode == 0, upgraded.stderr
    assert "revision: 0001" in upgraded.stdout and (tmp_path / "chat.db").exists()
    assert "revision: empty" in chatbot("db", "downgrade", "base", cwd=tmp_path).stdout


@pytest.mark.parametrize(("url", "message"), [
    ("not a url", "DATABASE_URL"),
    ("postgresql+psycopg://nobody:wrong@127.0.0.1:1/none", "127.0.0.1"),
])
def test_bad_database_url_is_one_line(url: str, message: str, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(f"DATABASE_URL={url}\n")
    result = chatbot("db", "upgrade", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert message in result.stderr and "Traceback" not in result.stderr


def test_run_brings_the_database_up_to_date(trained_dir: Path, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(f"MODEL_DIR={trained_dir / 'model'}\nDATA_DIR={tmp_path / 'var'}\n")
    result = chatbot("run", stdin="hello\n", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    current = chatbot("db", "current", cwd=tmp_path)
    assert "revision: 0001 (newest: 0001)" in current.stdout


def test_the_memory_keeps_a_split_off_validation_share_but_not_a_valid_file(trained_dir: Path) -> None:
    split = json.loads((trained_dir / "model" / "memory.json").read_text(encoding="utf-8"))
    assert len(split["prompts"]) == len(CORPUS.splitlines()) - 1  # all 30 pairs
    (trained_dir / "valid.tsv").write_text("prompt\treply\nunseen prompt\tunseen reply\n", encoding="utf-8")
    result = chatbot("train", "--data", str(trained_dir / "train.tsv"), "--valid", str(trained_dir / "valid.tsv"),
                     "--preset", "tiny", "--max-steps", "2", "--out", str(trained_dir / "measured"))
    assert result.returncode == 0, result.stderr
    measured = json.loads((trained_dir / "measured" / "memory.json").read_text(encoding="utf-8"))
    assert len(measured["prompts"]) == 30 and "unseen prompt" not in measured["prompts"]


def test_first_run_trains_the_default_model_on_the_bundled_corpus_then_chats(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(f"DATA_DIR={tmp_path / 'var'}\nDEFAULT_TRAIN_SECONDS=4\n")
    first = chatbot("run", stdin="hello\n안녕하세요\n", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "No model yet: training the default model on the bundled corpus" in first.stderr
    model = tmp_path / "var" / "models" / "default"
    metrics = json.loads((model / "metrics.json").read_text())
    assert metrics["train_pairs"] > 1000 and metrics["steps"] > 0  # the whole bundled corpus, both languages
    memory = json.loads((model / "memory.json").read_text(encoding="utf-8"))
    # every bundled pair, the share held out to choose the epoch included
    assert len(memory["prompts"]) == metrics["train_pairs"] + metrics["valid_pairs"]
    assert "넌 누구야?" in memory["prompts"] and "What time is it?" in memory["prompts"]
    assert "Traceback" not in first.stderr
    assert len(first.stdout.splitlines()) == 2 and all(line.strip() for line in first.stdout.splitlines())
    again = chatbot("run", stdin="hello\n", cwd=tmp_path)  # the model is there now: no training
    assert again.returncode == 0 and "No model yet" not in again.stderr
    assert json.loads((model / "metrics.json").read_text())["trained_at"] == metrics["trained_at"]


def test_retrain_models_and_rollback_commands(trained_dir: Path, tmp_path: Path) -> None:
    import shutil
    from datetime import UTC, datetime, timedelta

    from bot.database import open_database
    from storage.messages import log_incoming
    from storage.models import ChatKind

    shutil.copytree(trained_dir / "model", tmp_path / "var" / "models" / "default")
    (tmp_path / ".env").write_text("RETRAIN_SECONDS=2\nRETRAIN_TOLERANCE_BITS=100\nRETRAIN_MIN_NEW_PAIRS=100\n")
    database = open_database(f"sqlite:///{tmp_path / 'var' / 'chatbot.db'}")
    with database.sessions.begin() as session:
        start = datetime(2026, 5, 1, tzinfo=UTC)
        for i, line in enumerate(CORPUS.splitlines()[1:]):
            for offset, text in enumerate(line.split("\t")):
                log_incoming(session, platform="telegram", chat_id=f"g{i}", chat_kind=ChatKind.GROUP,
                             chat_title=None, author_id=f"u{i}-{offset}", author_name=None, message_id=f"{offset}",
                             text=text, created_at=start + timedelta(minutes=i, seconds=offset))
    database.close()
    assert "No model versions yet" in chatbot("models", cwd=tmp_path).stdout
    skipped = chatbot("retrain", cwd=tmp_path)
    assert skipped.returncode == 0 and "Skipped: 6 new conversation pairs" in skipped.stdout
    forced = chatbot("retrain", "--force", cwd=tmp_path)
    assert forced.returncode == 0 and forced.stdout.startswith("Promoted v0002"), forced.stdout + forced.stderr
    listing = chatbot("models", cwd=tmp_path).stdout.splitlines()
    assert [line.split()[:2] for line in listing] == [["v0001", "retired"], ["v0002", "active"]]
    assert chatbot("rollback", cwd=tmp_path).stdout.strip() == "Rolled back: v0001 answers now."
    assert chatbot("models", cwd=tmp_path).stdout.split()[:2] == ["v0001", "active"]


@pytest.mark.parametrize(("option", "setting", "threads"), [([], 3, 3), (["--threads", "1"], 3, 1), ([], None, None)])
def test_training_threads_come_from_the_option_then_the_setting(option: list[str], setting: int | None,
                                                                 threads: int | None) -> None:
    from bot.cli import build_parser, train_configs

    args = build_parser().parse_args(["train", "--data", "pairs.tsv", "--out", "model", *option])
    assert train_configs(args, setting)[1].threads == threads


def test_regularisation_options_override_the_preset() -> None:
    from bot.cli import build_parser, train_configs

    parser = build_parser()
    given = parser.parse_args(["train", "--data", "p.tsv", "--out", "m", "--label-smoothing", "0", "--token-dropout", "0.4",
                               "--token-deletion", "0.1"])
    default = parser.parse_args(["train", "--data", "p.tsv", "--out", "m"])
    training, preset = train_configs(given)[1], train_configs(default)[1]
    assert (training.label_smoothing, training.source_token_dropout, training.source_token_deletion) == (0.0, 0.4, 0.1)
    assert (preset.label_smoothing, preset.source_token_dropout, preset.source_token_deletion) == (0.1, 0.2, 0.35)


def test_patience_option_overrides_the_preset() -> None:
    from bot.cli import build_parser, train_configs

    parser = build_parser()
    given = parser.parse_args(["train", "--data", "p.tsv", "--out", "m", "--patience", "25"])
    default = parser.parse_args(["train", "--data", "p.tsv", "--out", "m"])
    assert (train_configs(given)[1].patience, train_configs(default)[1].patience) == (25, 10)
