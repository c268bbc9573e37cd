"""What each `chatbot` subcommand does, once its arguments are parsed."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TYPE_CHECKING

from bot.cli import decode_config, emit_json, train_configs
from bot.progress import progress_callbacks
from bot.settings import Settings

if TYPE_CHECKING:
    from bot.database import Database
    from bot.learning import LearningService
from core_model.corpora import load_pairs
from core_model.engine import InferenceEngine
from core_model.pipeline import fit, split_validation
from core_model.reply_memory import ReplyMemory


def dispatch(args: argparse.Namespace, settings: Settings) -> int:
    handlers = {"run": run, "chat": chat, "reply": reply, "train": train, "eval": evaluate,
                "bench": bench, "db": database, "retrain": retrain, "models": models, "rollback": rollback}
    return handlers[args.command](args, settings)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from bot.app import run_app

    return asyncio.run(run_app(settings))


def chat(args: argparse.Namespace, settings: Settings) -> int:
    from bot.app import run_console

    return asyncio.run(run_console(settings, args.model, decode_config(args, settings)))


def reply(args: argparse.Namespace, settings: Settings) -> int:
    engine = InferenceEngine.from_dir(args.model, decode_config(args, settings), threads=settings.torch_threads)

    async def answer_all() -> None:
        # Lines are read and answered in order; the engine batches whatever is in flight.
        lines = sys.stdin.read().splitlines()
        replies = await asyncio.gather(*(engine.reply(line) for line in lines))
        for text in replies:
            print(text.replace("\n", " "), flush=False)
        sys.stdout.flush()
        await engine.close()

    asyncio.run(answer_all())
    return 0


def train(args: argparse.Namespace, settings: Settings) -> int:
    model_config, train_config = train_configs(args, settings.torch_threads)
    pairs = load_pairs(args.data)
    if not pairs:  # said before the progress bar starts, and naming the files
        raise ValueError(f"{', '.join(map(str, args.data))}: no pairs to train on")
    # A --valid file measures the model, so its pairs stay out of the memory; a share split off
    # the data only chooses the epoch, and the memory keeps it (see fit).
    if args.valid:
        train_pairs, valid_pairs = pairs, load_pairs(args.valid)
    else:
        train_pairs, valid_pairs = split_validation(pairs)
    result = fit(train_pairs, valid_pairs, model_config, train_config, args.out,
                 progress_callbacks(), resume=args.resume, memory=ReplyMemory.of(pairs))
    metrics = {"out": str(result.out), **result.metrics()}
    if args.json:
        emit_json(metrics)
    else:
        print(f"saved {result.out} (valid {result.result.valid_bits_per_char:.3f} bits/char, "
              f"{result.result.target_chars_per_s:.0f} reply chars/s)")
    return 0


def evaluate(args: argparse.Namespace, settings: Settings) -> int:
    from core_model.evaluation import evaluate_model

    result = evaluate_model(args.model, args.data, decode_config(args, settings), limit=args.limit)
    if args.json:
        emit_json(result)
    else:
        for key, value in result.items():
            print(f"{key:>16}: {value:.4g}" if isinstance(value, float) else f"{key:>16}: {value}")
    return 0


def bench(args: argparse.Namespace, settings: Settings) -> int:
    if args.bench == "retrain":
        from bot.retrain_benchmark import bench_retrain

        result = asyncio.run(bench_retrain(settings, args.data_dir, pairs=args.pairs,
                                           serve_seconds=args.serve_seconds))
    elif args.bench == "serve":
        from bot.serve_benchmark import bench_serve

        result = asyncio.run(bench_serve(settings, args.platform, chats=args.chats, seconds=args.seconds))
    elif args.bench == "storage":
        from bot.storage_benchmark import bench_storage

        result = bench_storage(args.url, args.data_dir, messages=args.messages, log_count=args.log_count)
    else:
        from bot import benchmarking

        if args.bench == "train":
            result = benchmarking.bench_train(args, settings.torch_threads)
        else:
            model = args.model or settings.active_model_dir
            result = benchmarking.bench_infer(model, settings.decode_config(), args.concurrency, args.prompts)
    if args.json:
        emit_json(result)
    else:
        for key, value in result.items():
            print(f"{key:>26}: {value}")
    return 0


def database(args: argparse.Namespace, settings: Settings) -> int:
    from bot import database as db

    url = settings.database
    if args.db == "upgrade":
        db.upgrade(url, args.revision)
    elif args.db == "downgrade":
        db.downgrade(url, args.revision)
    current, head = db.current_revision(url)
    print(f"database revision: {current or 'empty'} (newest: {head})")
    return 0


def _learning(settings: Settings) -> tuple[Database, LearningService]:
    from bot.app import build_learning, open_store
    from bot.model_choice import FolderModel, serving_model

    store = open_store(settings)
    return store, build_learning(settings, store, FolderModel(serving_model(settings, store)))


def retrain(args: argparse.Namespace, settings: Settings) -> int:
    import getpass

    from storage.models import RunTrigger

    store, learning = _learning(settings)
    try:
        outcome = asyncio.run(learning.retrain(RunTrigger.CLI, f"cli:{getpass.getuser()}",
                                               force=args.force or args.full, full=args.full))
    finally:
        store.close()
    print(outcome.message)
    return 1 if outcome.status in ("failed", "busy") else 0


def models(args: argparse.Namespace, settings: Settings) -> int:
    from bot.app import open_store
    from storage.registry import list_versions

    store = open_store(settings)
    with store.reads.begin() as session:
        versions = list_versions(session)
    store.close()
    if not versions:
        print("No model versions yet: the first start registers the model it serves.")
    for version in versions:
        bits = version.metrics.get("valid_bits_per_char")
        quality = f"{bits:.3f} bits/char" if isinstance(bits, float) else "—"
        print(f"{version.name}  {version.status.value:<9} {version.created_at:%Y-%m-%d %H:%M}  "
              f"{version.data_pairs:>7} pairs  {quality:>15}  {version.folder}")
    return 0


def rollback(args: argparse.Namespace, settings: Settings) -> int:
    store, learning = _learning(settings)
    try:
        print(asyncio.run(learning.rollback(args.version)))
    finally:
        store.close()
    return 0
