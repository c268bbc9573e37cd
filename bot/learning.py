"""The learning loop: retrain on mined pairs in a child process, promote only through the quality gate.

One run: take the retrain lease → snapshot the mined pairs (size and hash recorded) → hold out a
stable validation share → mix in a replay share of the active model's corpus → fine-tune the active model
in a child process → score candidate and active model on the same validation pairs and canary
prompts → promote (version row, engine swap) or reject, saying why → release the lease.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import shutil
import socket
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, Literal, Protocol

from bot.database import Database
from bot.forgetting import purge_memories
from bot.retrain_worker import RetrainJob, next_message, run_job
from bot.training_snapshot import write_snapshot
from core_model.corpora import Pair
from storage.lease import lease_holder, release_lease, renew_lease, take_lease
from storage.mining import MiningRules
from storage.models import RunStatus, RunTrigger, VersionStatus
from storage.registry import (
    VersionRecord,
    activate_version,
    active_version,
    add_run,
    add_version,
    delete_version,
    get_run,
    latest_run,
    list_versions,
    runs_in_progress,
    set_version_status,
    update_run,
)

log = logging.getLogger(__name__)

LEASE = "retrain"
Status = Literal["promoted", "rejected", "skipped", "busy", "failed"]


class SwappableEngine(Protocol):
    @property
    def model_path(self) -> Path: ...

    @property
    def metrics(self) -> dict[str, object]: ...

    async def swap(self, path: Path | str) -> None: ...


@dataclass(frozen=True)
class LearningOptions:
    models_root: Path
    min_new_pairs: int = 200  # fewer new pairs than this since the active version: skip (unless forced)
    valid_share: float = 0.1
    replay_ratio: float = 1.0  # base-corpus pairs mixed in per mined training pair, at most
    tolerance_bits: float = 0.02  # the candidate may be this much worse in bits/char and still win
    max_empty_rate: float = 0.34
    max_repeat_rate: float = 0.34
    train_seconds: float = 120.0
    train_steps: int | None = None  # a step budget as well, for runs that must not depend on the machine's speed
    threads: int = 1
    keep_versions: int = 10  # rejected and retired versions beyond this many are deleted, oldest first
    lease_ttl: timedelta = timedelta(minutes=5)


@dataclass(frozen=True)
class RetrainOutcome:
    status: Status
    message: str
    run_id: int | None = None
    version: str | None = None
    figures: dict[str, Any] | None = None

    @property
    def plot(self) -> Path | None:
        """The PNG of the training and validation curves, when the run trained."""
        path = (self.figures or {}).get("plot")
        return Path(path) if path and Path(path).exists() else None


class LearningService:
    def __init__(self, database: Database, engine: SwappableEngine, options: LearningOptions,
                 rules: MiningRules, base_pairs: Callable[[], Sequence[Pair]]) -> None:
        self.database = database
        self.engine = engine
        self.options = options
        self.rules = rules
        self.base_pairs = base_pairs
        self.holder = f"{socket.gethostname()}:{os.getpid()}"
        self.on_promoted: list[Callable[[VersionRecord], None]] = []
        # Told every run's outcome, whatever started it (e.g. the last-retrain metric).
        self.on_outcome: list[Callable[[RetrainOutcome], None]] = []
        self._task: asyncio.Task[RetrainOutcome] | None = None
        # The training process of the run in progress, if any.
        self.child: BaseProcess | None = None

    def start(self, trigger: RunTrigger, requested_by: str | None = None, *, force: bool = False,
              full: bool = False, on_done: Callable[[RetrainOutcome], Awaitable[None]] | None = None) -> bool:
        """Start a run in the background (for chat commands); False if this process already runs one.
        `on_done` receives the outcome, e.g. to tell whoever asked."""
        if self._task is not None and not self._task.done():
            return False

        async def run() -> RetrainOutcome:
            outcome = await self.retrain(trigger, requested_by, force=force, full=full)
            if on_done is not None:
                try:
                    await on_done(outcome)
                except Exception:
                    log.exception("could not report the outcome of retraining run %s", outcome.run_id)
            return outcome

        self._task = asyncio.create_task(run())
        return True

    async def wait(self) -> RetrainOutcome | None:
        """The outcome of the run started with `start`, once it ends."""
        return await self._task if self._task is not None else None

    async def register_live_model(self) -> VersionRecord:
        """Make sure the model being served has a version row (the first start, or a manual folder)."""
        def register() -> VersionRecord:
            with self.database.sessions.begin() as session:
                active = active_version(session)
                if active is not None and Path(active.folder) == Path(self.engine.model_path):
                    return active
                version = add_version(session, name=self._next_name(session), folder=str(self.engine.model_path),
                                      status=VersionStatus.CANDIDATE, parent_id=None,
                                      metrics=dict(self.engine.metrics))
                activate_version(session, version.id)
                return version
        return await asyncio.to_thread(register)

    async def recover(self) -> int:
        """At start: runs left "running" by a process that died are marked failed, once their lease
        has expired (a live run elsewhere keeps renewing it). Returns how many."""
        def mark() -> int:
            now = datetime.now(UTC)
            with self.database.sessions.begin() as session:
                if lease_holder(session, name=LEASE, now=now) is not None:
                    return 0
                stale = runs_in_progress(session)
                for run in stale:
                    update_run(session, run.id, status=RunStatus.FAILED, finished_at=now,
                               error="interrupted: the process running it stopped")
                return len(stale)
        return await asyncio.to_thread(mark)

    async def retrain(self, trigger: RunTrigger, requested_by: str | None = None, *,
                      force: bool = False, full: bool = False) -> RetrainOutcome:
        outcome = await self._retrain(trigger, requested_by, force, full)
        if outcome.status != "busy":  # a refused request is not a run
            for observer in self.on_outcome:
                observer(outcome)
        return outcome

    async def _retrain(self, trigger: RunTrigger, requested_by: str | None, force: bool,
                       full: bool) -> RetrainOutcome:
        now = datetime.now(UTC)
        busy = await asyncio.to_thread(self._take_lease, now)
        if busy is not None:
            return busy
        run_id = None
        try:
            active = await self.register_live_model()
            run_id = await asyncio.to_thread(self._add_run, trigger, requested_by)
            outcome = await self._run(run_id, active, force, full)
            await asyncio.to_thread(self._record_result, run_id, outcome.message)
            return outcome
        except Exception as error:
            log.exception("retrain run %s failed", run_id)
            if run_id is not None:
                await asyncio.to_thread(self._finish, run_id, RunStatus.FAILED, error=str(error))
            return RetrainOutcome("failed", f"Retraining failed: {error}", run_id)
        finally:
            await asyncio.to_thread(self._release_lease)

    async def _run(self, run_id: int, active: VersionRecord, force: bool, full: bool) -> RetrainOutcome:
        with tempfile.TemporaryDirectory(prefix="retrain-") as scratch:
            snapshot = await asyncio.to_thread(self._snapshot, Path(scratch))
            new_pairs = snapshot["pairs"] - active.data_pairs
            if not force and new_pairs < self.options.min_new_pairs:
                message = (f"Skipped: {max(new_pairs, 0)} new conversation pairs since {active.name}, "
                           f"{self.options.min_new_pairs} needed (an admin can force it).")
                await asyncio.to_thread(self._finish, run_id, RunStatus.REJECTED, error=message)
                return RetrainOutcome("skipped", message, run_id)
            name = await asyncio.to_thread(self._reserve_name)
            out = self.options.models_root / name
            job = RetrainJob(base=Path(active.folder), train_tsv=Path(scratch) / "train.tsv",
                             valid_tsv=Path(scratch) / "valid.tsv", out=out,
                             max_seconds=self.options.train_seconds, max_steps=self.options.train_steps,
                             threads=self.options.threads, full=full)
            figures = await self._train_in_child(run_id, job)
        promoted, why = self._gate(figures)
        status = VersionStatus.ACTIVE if promoted else VersionStatus.REJECTED
        metrics = {**figures, "valid_bits_per_char": figures["candidate_bits_per_char"]}
        version = await asyncio.to_thread(self._register, name, out, status, active, metrics, snapshot)
        if promoted:
            await self.engine.swap(out)
            for callback in self.on_promoted:
                callback(version)
        await asyncio.to_thread(self.prune)
        await asyncio.to_thread(self._finish, run_id, RunStatus.SUCCEEDED if promoted else RunStatus.REJECTED,
                                version_id=version.id, error=None if promoted else why)
        before, after = figures["active_bits_per_char"], figures["candidate_bits_per_char"]
        verdict = f"Promoted {name}" if promoted else f"Rejected {name}: {why}"
        return RetrainOutcome("promoted" if promoted else "rejected",
                              f"{verdict}. Validation {before:.3f} → {after:.3f} bits/char on "
                              f"{figures['valid_pairs']} held-out pairs; trained on {snapshot['pairs']} "
                              f"mined pairs in {figures['train_seconds']:.0f} s.",
                              run_id, name, figures)

    async def rollback(self, name: str | None = None) -> str:
        """Serve an earlier version again: the one named, or the active version's parent."""
        def choose() -> tuple[VersionRecord | None, str]:
            with self.database.reads.begin() as session:
                versions = {version.name: version for version in list_versions(session)}
                active = active_version(session)
            if name is not None:
                target = versions.get(name)
                if target is None or target.status is VersionStatus.REJECTED:
                    return None, f"No version {name} that may serve (see `chatbot models`)."
                return target, ""
            parent = next((v for v in versions.values() if active and v.id == active.parent_id), None)
            return (parent, "") if parent else (None, "The active version has no earlier version to go back to.")

        target, problem = await asyncio.to_thread(choose)
        if target is None:
            return problem
        await self.engine.swap(target.folder)  # raises, naming the file, if the folder is unusable

        def activate() -> None:
            with self.database.sessions.begin() as session:
                activate_version(session, target.id)

        await asyncio.to_thread(activate)
        return f"Rolled back: {target.name} answers now."

    async def forget_texts(self, texts: Sequence[str]) -> int:
        """Drop the learned pairs holding any of texts (a person's erased words) from the memory of
        every model version kept (bot/forgetting.py), and reload the live one if its memory changed.
        Returns the pairs the live memory lost."""
        live = Path(self.engine.model_path)
        dropped = await asyncio.to_thread(purge_memories, self.database, live, texts)
        if dropped:
            await self.engine.swap(live)
        return dropped

    async def status(self) -> str:
        def read() -> str:
            with self.database.reads.begin() as session:
                run = latest_run(session)
                active = active_version(session)
            serving = f"Serving {active.name}." if active else "Serving the default model."
            if run is None:
                return f"{serving} No retraining has run yet."
            if run.status in (RunStatus.QUEUED, RunStatus.RUNNING):
                progress = run.progress
                step = f" at step {progress['step']}, loss {progress['loss']}, about " \
                       f"{progress['eta_seconds']:.0f} s left" if "step" in progress else ""
                return f"{serving} Retraining run {run.id} is running{step}."
            result = run.progress.get("result") or run.error or run.status.value
            return f"{serving} Last retraining (run {run.id}, {run.status.value}): {result}"
        return await asyncio.to_thread(read)

    def prune(self) -> list[str]:
        """Delete the oldest rejected or retired versions beyond `keep_versions` (never the active one
        or its parent): their rows and folders. Returns the names deleted."""
        with self.database.sessions.begin() as session:
            versions = list_versions(session)
            active = active_version(session)
            protected = {active.id, active.parent_id} if active else set()
            old = [v for v in versions if v.status in (VersionStatus.REJECTED, VersionStatus.RETIRED)
                   and v.id not in protected]
            doomed = old[:max(len(old) - self.options.keep_versions, 0)]
            for version in doomed:
                delete_version(session, version.id)
        for version in doomed:
            folder = Path(version.folder)
            if folder.parent == self.options.models_root:  # only folders this service created
                shutil.rmtree(folder, ignore_errors=True)
        return [version.name for version in doomed]

    def _gate(self, figures: dict[str, Any]) -> tuple[bool, str]:
        """Promote only a candidate no worse than the active model, whose replies are not degenerate."""
        if figures["candidate_bits_per_char"] > figures["active_bits_per_char"] + self.options.tolerance_bits:
            return False, "validation got worse"
        if figures["canary_empty_rate"] > self.options.max_empty_rate:
            return False, "too many empty replies to the canary prompts"
        if figures["canary_repeat_rate"] > self.options.max_repeat_rate:
            return False, "too many repetitive replies to the canary prompts"
        return True, ""

    async def _train_in_child(self, run_id: int, job: RetrainJob) -> dict[str, Any]:
        context = multiprocessing.get_context("spawn")
        messages: multiprocessing.Queue[Any] = context.Queue()
        child = context.Process(target=run_job, args=(job, messages), name="retrain", daemon=True)
        child.start()
        self.child = child
        try:
            while True:
                kind, detail = await asyncio.to_thread(next_message, messages, child)
                if kind == "progress":
                    await asyncio.to_thread(self._progress, run_id, detail)
                elif kind == "done":
                    return dict(detail)
                else:
                    raise RuntimeError(str(detail).splitlines()[0])
        finally:
            await asyncio.to_thread(child.join, 10)
            if child.is_alive():
                child.kill()
            self.child = None

    # Database steps (each one short transaction, run on a worker thread) ----------------------

    def _take_lease(self, now: datetime) -> RetrainOutcome | None:
        with self.database.sessions.begin() as session:
            if take_lease(session, name=LEASE, holder=self.holder, ttl=self.options.lease_ttl, now=now):
                return None
            running = runs_in_progress(session)
        progress = running[-1].progress if running else {}
        detail = f" (step {progress['step']}, about {progress['eta_seconds']:.0f} s left)" if progress else ""
        return RetrainOutcome("busy", f"Retraining is already running{detail}.")

    def _release_lease(self) -> None:
        with self.database.sessions.begin() as session:
            release_lease(session, name=LEASE, holder=self.holder)

    def _add_run(self, trigger: RunTrigger, requested_by: str | None) -> int:
        with self.database.sessions.begin() as session:
            run = add_run(session, trigger=trigger, requested_by=requested_by)
            update_run(session, run.id, status=RunStatus.RUNNING, started_at=datetime.now(UTC))
            return run.id

    def _progress(self, run_id: int, progress: dict[str, Any]) -> None:
        now = datetime.now(UTC)
        with self.database.sessions.begin() as session:
            update_run(session, run_id, progress=progress)
            renew_lease(session, name=LEASE, holder=self.holder, ttl=self.options.lease_ttl, now=now)

    def _record_result(self, run_id: int, message: str) -> None:
        with self.database.sessions.begin() as session:
            run = get_run(session, run_id)
            update_run(session, run_id, progress={**(run.progress if run else {}), "result": message})

    def _finish(self, run_id: int, status: RunStatus, *, version_id: int | None = None,
                error: str | None = None) -> None:
        with self.database.sessions.begin() as session:
            update_run(session, run_id, status=status, finished_at=datetime.now(UTC), version_id=version_id,
                       error=error)

    def _snapshot(self, folder: Path) -> dict[str, Any]:
        return write_snapshot(self.database, self.rules, self.base_pairs, folder,
                              valid_share=self.options.valid_share, replay_ratio=self.options.replay_ratio)

    def _reserve_name(self) -> str:
        with self.database.reads.begin() as session:
            return self._next_name(session)

    def _next_name(self, session: Any) -> str:
        taken = {version.name for version in list_versions(session)}
        number = len(taken) + 1
        while f"v{number:04d}" in taken or (self.options.models_root / f"v{number:04d}").exists():
            number += 1
        return f"v{number:04d}"

    def _register(self, name: str, out: Path, status: VersionStatus, parent: VersionRecord,
                  metrics: dict[str, Any], snapshot: dict[str, Any]) -> VersionRecord:
        with self.database.sessions.begin() as session:
            version = add_version(session, name=name, folder=str(out), status=VersionStatus.CANDIDATE,
                                  parent_id=parent.id, metrics=metrics, data_pairs=snapshot["pairs"],
                                  data_sha256=snapshot["sha256"])
            if status is VersionStatus.ACTIVE:
                activate_version(session, version.id)
            else:
                set_version_status(session, version.id, status)
            return version

