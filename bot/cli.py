"""The `chatbot` command: run, chat, reply, train, eval and bench."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import replace
from pathlib import Path
from typing import NoReturn, get_args

from bot.settings import Settings, SettingsError, load_settings
from core_model.checkpoint import CheckpointError
from core_model.config import DecodeConfig, ModelConfig, Rerank, TrainConfig
from core_model.corpora import CorpusError
from core_model.numerics import use_huge_pages, use_large_kernel_cache
from core_model.presets import PRESETS
from core_model.tokenizer import MIN_VOCAB_SIZE


def _add_decode_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("decoding (defaults come from the settings)")
    group.add_argument("--strategy", choices=["greedy", "beam", "sample"])
    group.add_argument("--beam", type=int, dest="beam_width", metavar="WIDTH")
    group.add_argument("--length-penalty", type=float)
    group.add_argument("--rerank", choices=get_args(Rerank),
                       help="beam search's choice among its n-best: the most probable, or by consensus")
    group.add_argument("--neighbour-share", type=_share, metavar="SHARE",
                       help="share of each next-token distribution given to the nearest training prompts' replies")
    group.add_argument("--min-length", type=int)
    group.add_argument("--max-length", type=int)
    group.add_argument("--no-repeat-ngram", type=int, metavar="N")
    group.add_argument("--block-prompt-ngram", type=int, metavar="N")
    group.add_argument("--temperature", type=float)
    group.add_argument("--top-k", type=int)
    group.add_argument("--top-p", type=float)
    group.add_argument("--seed", type=int)

def _given(args: argparse.Namespace, names: tuple[str, ...]) -> dict[str, object]:
    """The options among names that were given on the command line (argparse leaves others None)."""
    return {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}


def decode_config(args: argparse.Namespace, settings: Settings) -> DecodeConfig:
    names = ("strategy", "beam_width", "length_penalty", "min_length", "max_length", "no_repeat_ngram",
             "block_prompt_ngram", "rerank", "neighbour_share", "temperature", "top_k", "top_p", "seed")
    return replace(settings.decode_config(), **_given(args, names))  # type: ignore[arg-type]


def _share(text: str) -> float:
    try:
        share = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid float value: {text!r}") from None
    if not 0 <= share < 1:
        raise argparse.ArgumentTypeError("must be at least 0 and below 1")
    return share


def _vocab_size(text: str) -> int:
    try:
        size = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
    if size < MIN_VOCAB_SIZE:
        raise argparse.ArgumentTypeError(f"must be at least {MIN_VOCAB_SIZE} (the special and byte tokens)")
    return size


def add_train_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", nargs="+", type=Path, required=True, metavar="FILE",
                        help="training pairs: .tsv (prompt, reply[, context]), .csv (Q,A) or .yml")
    parser.add_argument("--valid", nargs="+", type=Path, metavar="FILE",
                        help="validation pairs (default: a 5%% seeded hold-out of --data)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="default")
    parser.add_argument("--hidden", type=int, dest="hidden_size")
    parser.add_argument("--embedding", type=int, dest="embedding_dim")
    parser.add_argument("--layers", type=int, dest="num_layers")
    parser.add_argument("--vocab", type=_vocab_size, dest="vocab_size")
    parser.add_argument("--cell", choices=["gru", "lstm"])
    parser.add_argument("--attention", choices=["general", "dot", "additive"])
    parser.add_argument("--dropout", type=float)
    parser.add_argument("--prompt-spelling", type=int, dest="prompt_spelling", metavar="N",
                        help="spelling units (characters, character pairs) of the prompt embedding (0: none)")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--lr", type=float, dest="learning_rate")
    parser.add_argument("--label-smoothing", type=float)
    parser.add_argument("--token-dropout", type=float, dest="source_token_dropout",
                        help="share of prompt tokens replaced by <unk> while training")
    parser.add_argument("--token-deletion", type=float, dest="source_token_deletion",
                        help="share of prompt tokens deleted while training")
    parser.add_argument("--token-shuffle", type=int, dest="source_token_shuffle",
                        help="how far a prompt token may move when prompts are shuffled while training")
    parser.add_argument("--ema", type=float, dest="ema_decay", metavar="DECAY",
                        help="keep a moving average of the weights with this decay (0: off)")
    parser.add_argument("--epochs", type=int, dest="max_epochs")
    parser.add_argument("--patience", type=int, metavar="EPOCHS",
                        help="epochs without a better validation score before training stops")
    parser.add_argument("--max-seconds", type=float)
    parser.add_argument("--max-steps", type=int)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                        help="bf16 autocast (default: when the CPU supports it natively)")
    parser.add_argument("--train-seed", type=int, dest="train_seed")

def train_configs(args: argparse.Namespace, threads: int | None = None) -> tuple[ModelConfig, TrainConfig]:
    """The preset with the options given; `threads` (the TORCH_THREADS setting) unless --threads."""
    model, training = PRESETS[args.preset]
    if threads is not None:
        training = replace(training, threads=threads)
    model = replace(model, **_given(args, ("hidden_size", "embedding_dim", "num_layers", "vocab_size",  # type: ignore[arg-type]
                                           "cell", "attention", "dropout", "prompt_spelling")))
    training = replace(training, **_given(args, ("batch_size", "learning_rate", "max_epochs",  # type: ignore[arg-type]
                                                 "max_seconds", "max_steps", "threads", "bf16",
                                                 "label_smoothing", "source_token_dropout",
                                                 "source_token_deletion", "source_token_shuffle", "ema_decay",
                                                 "patience")))
    if args.train_seed is not None:
        training = replace(training, seed=args.train_seed)
    return model, training


class _Parser(argparse.ArgumentParser):
    """A bad option ends in one line naming it, as every other error does, not in the whole usage
    (subcommands' parsers are of this class too)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="chatbot", description="A Seq2Seq chatbot for group chats.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("run", help="run the bot (terminal chat when no platform token is set)")

    chat = sub.add_parser("chat", help="chat in the terminal")
    chat.add_argument("--model", type=Path, help="model folder (default: the active model)")
    _add_decode_options(chat)

    reply = sub.add_parser("reply", help="read prompts from stdin, one per line; write one reply per line")
    reply.add_argument("--model", type=Path, required=True)
    _add_decode_options(reply)

    train = sub.add_parser("train", help="train a model folder")
    add_train_options(train)
    train.add_argument("--out", type=Path, required=True, help="model folder to write")
    train.add_argument("--resume", action="store_true", help="continue a run saved in --out")
    train.add_argument("--json", action="store_true", help="end with one JSON line of results")

    evaluate = sub.add_parser("eval", help="generate replies for a pair file and score them")
    evaluate.add_argument("--model", type=Path, required=True)
    evaluate.add_argument("--data", type=Path, required=True)
    evaluate.add_argument("--limit", type=int, help="score only the first N pairs")
    evaluate.add_argument("--json", action="store_true")
    _add_decode_options(evaluate)

    bench = sub.add_parser("bench", help="measure training or serving speed")
    bench_sub = bench.add_subparsers(dest="bench", required=True)
    bench_train = bench_sub.add_parser("train", help="training throughput and GFLOP/s")
    add_train_options(bench_train)
    bench_train.set_defaults(preset="tutorial", max_steps=None, max_seconds=None)
    bench_train.add_argument("--steps", type=int, default=30, help="timed steps after warm-up")
    bench_train.add_argument("--json", action="store_true")
    bench_infer = bench_sub.add_parser("infer", help="reply latency, batching throughput, memory")
    bench_infer.add_argument("--model", type=Path, help="model folder (default: the active model)")
    bench_infer.add_argument("--concurrency", type=int, default=64)
    bench_infer.add_argument("--prompts", type=Path, help="a pair file to take prompts from")
    bench_infer.add_argument("--json", action="store_true")
    bench_storage = bench_sub.add_parser("storage", help="logging rate, concurrent writers, mining")
    bench_storage.add_argument("--url", help="database URL (default: a temporary SQLite file)")
    bench_storage.add_argument("--messages", type=int, default=1_000_000, help="messages to mine")
    bench_storage.add_argument("--log-count", type=int, default=5_000, help="messages to log one by one")
    bench_storage.add_argument("--data-dir", type=Path, default=Path("../shared/data"),
                               help="dialogue data for realistic texts (synthetic when missing)")
    bench_storage.add_argument("--json", action="store_true")

    bench_serve = bench_sub.add_parser("serve", help="group chats through a platform's real client and a fake")
    bench_serve.add_argument("--platform", choices=["telegram", "discord"], default="telegram")
    bench_serve.add_argument("--chats", type=int, default=64)
    bench_serve.add_argument("--seconds", type=float, default=20.0)
    bench_serve.add_argument("--json", action="store_true")

    retrain = sub.add_parser("retrain", help="retrain on the logged conversations now (in the foreground)")
    retrain.add_argument("--force", action="store_true", help="even with few new pairs")
    retrain.add_argument("--full", action="store_true", help="rebuild from scratch with a new tokenizer")
    retrain.add_argument("--wait", action="store_true", help="accepted for scripts; the run is always awaited")
    sub.add_parser("models", help="list the model versions, their status and metrics")
    rollback = sub.add_parser("rollback", help="serve an earlier version again")
    rollback.add_argument("version", nargs="?", help="e.g. v0003 (default: the active version's parent)")

    bench_retrain = bench_sub.add_parser("retrain", help="retrain on 10,000 mined pairs while serving")
    bench_retrain.add_argument("--pairs", type=int, default=10_000)
    bench_retrain.add_argument("--serve-seconds", type=float, default=15.0)
    bench_retrain.add_argument("--data-dir", type=Path, default=Path("../shared/data"),
                               help="where korean_chatbot/train.tsv is")
    bench_retrain.add_argument("--json", action="store_true")

    database = sub.add_parser("db", help="migrate the conversation database (DATABASE_URL)")
    database_sub = database.add_subparsers(dest="db", required=True)
    upgrade = database_sub.add_parser("upgrade", help="migrate up (to the newest schema by default)")
    upgrade.add_argument("revision", nargs="?", default="head")
    downgrade = database_sub.add_parser("downgrade", help="migrate down to a revision ('base': empty)")
    downgrade.add_argument("revision")
    database_sub.add_parser("current", help="show the database's schema revision")
    return parser

def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not (args.command == "bench" and args.bench == "infer"):  # it times serving as the bot's decoding process runs it
        use_huge_pages()  # before the first tensor exists
    use_large_kernel_cache()  # before the first matrix product
    try:
        settings = load_settings()
        logging.basicConfig(level="INFO" if args.verbose else settings.log_level,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        from bot import commands_cli  # torch is imported only once the arguments are known good

        return commands_cli.dispatch(args, settings)
    except Exception as error:
        if not _is_bad_input(error):
            raise
        # Database drivers write several lines (SQL, parameters, a link): the first one says it.
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        print(f"chatbot: error: {first_line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130

def _is_bad_input(error: Exception) -> bool:
    """A bad file, setting, option or database: a one-line message, not a traceback."""
    if isinstance(error, (SettingsError, CorpusError, CheckpointError, ValueError, OSError)):
        return True
    # The database libraries' errors can only come from them once they are loaded; importing them
    # here just to name their errors would cost every command 0.4 s and 30 MB.
    sql, migrations = sys.modules.get("sqlalchemy.exc"), sys.modules.get("alembic.util.exc")
    return bool((sql and isinstance(error, sql.SQLAlchemyError))
                or (migrations and isinstance(error, migrations.CommandError)))

def emit_json(result: dict[str, object]) -> None:
    print(json.dumps(result, ensure_ascii=False, default=str), flush=True)

if __name__ == "__main__":
    sys.exit(main())
