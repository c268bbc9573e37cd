"""The retraining child process: fine-tune a candidate, then score it and the active model alike.

It runs apart from the bot (its own process and thread count), so replies never wait for it. It
talks back through a queue: ("progress", {...}) while training, then ("done", {...}) or
("error", message). Nothing here touches the database.
"""

from __future__ import annotations

import multiprocessing
import queue
import traceback
from dataclasses import dataclass, replace
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from bot.training_plot import plot_curves

PLOT = "curves.png"
CANARIES = ("안녕하세요", "오늘 뭐 해?", "hello", "how are you?", "고마워", "what do you like?")


@dataclass(frozen=True)
class RetrainJob:
    base: Path  # the active model folder, fine-tuned from
    train_tsv: Path
    valid_tsv: Path
    out: Path  # the candidate folder to write
    max_seconds: float
    threads: int
    max_steps: int | None = None
    seed: int = 0
    # A rebuild from scratch with a new tokenizer, instead of fine-tuning the active model.
    full: bool = False


def run_job(job: RetrainJob, messages: multiprocessing.Queue[Any]) -> None:
    """Child entry point."""
    try:
        messages.put(("done", _train_and_score(job, messages)))
    except BaseException as error:  # report every failure, then let the process end
        messages.put(("error", f"{type(error).__name__}: {error}\n{traceback.format_exc(limit=3)}"))


def _train_and_score(job: RetrainJob, messages: multiprocessing.Queue[Any]) -> dict[str, Any]:
    from core_model import checkpoint
    from core_model.batching import source_ids
    from core_model.config import DecodeConfig
    from core_model.corpora import load_pairs
    from core_model.metrics import repeats_an_ngram
    from core_model.pipeline import bits_per_char, fine_tune, fit
    from core_model.presets import PRESETS
    from core_model.replies import reply_texts
    from core_model.reply_memory import ReplyMemory
    from core_model.serving import load_for_serving
    from core_model.training import Callbacks, EvalStats, StepStats

    train_pairs, valid_pairs = load_pairs([job.train_tsv]), load_pairs([job.valid_tsv])

    losses: list[tuple[int, float]] = []
    validations: list[tuple[int, float]] = []

    def on_step(stats: StepStats) -> None:
        losses.append((stats.step, stats.loss))
        if stats.step % 10 == 0:
            remaining = stats.elapsed * (1 - stats.progress) / max(stats.progress, 1e-6)
            messages.put(("progress", {"step": stats.step, "loss": round(stats.loss, 4),
                                       "eta_seconds": round(remaining, 1)}))

    def on_eval(stats: EvalStats) -> None:
        validations.append((stats.step, stats.bits_per_char))

    model_config, train_config = PRESETS["default"]
    # the gate compares validation loss, so the kept epoch is the one with the lowest
    train_config = replace(train_config, select_by="valid_loss", max_seconds=job.max_seconds,
                           max_steps=job.max_steps, threads=job.threads, seed=job.seed, max_epochs=1000, patience=1000)
    callbacks = Callbacks(on_step=on_step, on_eval=on_eval)
    # The bot answers from the active model's base pairs (its corpus) and from the chats' pairs as
    # the logs hold them now, not as an earlier retrain learned them (/forget may have erased some).
    # The validation share only chooses the epoch and feeds the gate: its pairs are the bot's to
    # answer from too (a lesson that fell to that share was otherwise missing from the memory).
    active = checkpoint.load_memory(job.base)
    active = active if active is not None else ReplyMemory([], [])
    memory = active.with_learned(train_pairs + valid_pairs)
    if job.full:
        fitted = fit(train_pairs, valid_pairs, model_config, train_config, job.out, callbacks, memory=memory)
    else:
        fitted = fine_tune(job.base, train_pairs, valid_pairs, train_config, job.out, callbacks, memory=memory)
    plot = plot_curves(losses, validations, job.out / PLOT, title=f"Retraining {job.out.name}")
    candidate = load_for_serving(job.out)
    sources = [source_ids(candidate.tokenizer, prompt, "", candidate.model.config)
               for prompt in CANARIES]
    # as the bot would answer them: the model as served, default decoding, guided by the new memory
    replies = reply_texts(candidate.model, candidate.tokenizer, sources, DecodeConfig(), candidate.memory)
    return {
        "candidate_bits_per_char": bits_per_char(job.out, valid_pairs),
        "active_bits_per_char": bits_per_char(job.base, valid_pairs),
        "canary_replies": replies,
        "canary_empty_rate": sum(not reply.strip() for reply in replies) / len(replies),
        "canary_repeat_rate": sum(any(repeats_an_ngram(reply.split(), n) for n in (1, 2, 3))
                                  for reply in replies) / len(replies),
        "steps": fitted.result.steps,
        "train_seconds": round(fitted.result.train_seconds, 1),
        "train_pairs": fitted.train_pairs,
        "valid_pairs": fitted.valid_pairs,
        "plot": str(plot),
    }


def next_message(messages: multiprocessing.Queue[Any], child: BaseProcess) -> tuple[str, Any]:
    """The child's next message, waiting for it; ("error", why) if the child ended without one."""
    while True:
        try:
            kind, detail = messages.get(timeout=1.0)
            return kind, detail
        except queue.Empty:  # nothing yet: make sure the child is still there
            if not child.is_alive() and messages.empty():
                return "error", f"the training process ended unexpectedly (exit code {child.exitcode})"
