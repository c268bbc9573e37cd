"""The learning loop end to end with a tiny model: seed a store, retrain in a child process, gate."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.database import Database
from bot.learning import LEASE, RetrainOutcome
from bot.retrain_worker import CANARIES
from core_model.corpora import Pair
from core_model.engine import InferenceEngine
from storage.lease import take_lease
from storage.models import RunStatus, RunTrigger, VersionStatus
from storage.registry import active_version, latest_run, list_versions
from tests.bot.learning.conftest import learning
from tests.conftest import PAIRS


async def test_retrain_promotes_a_candidate_and_swaps_it_in(database: Database, engine: InferenceEngine,
                                                            tmp_path: Path) -> None:
    service = learning(database, engine, tmp_path)
    observed: list[RetrainOutcome] = []
    service.on_outcome.append(observed.append)
    outcome = await service.retrain(RunTrigger.CLI)
    assert outcome.status == "promoted", outcome.message
    assert observed == [outcome]  # every run's outcome reaches the observers (the last-retrain metric)
    assert engine.model_path == tmp_path / "models" / "v0002"
    with database.reads.begin() as session:
        active = active_version(session)
        versions = {version.name: version.status for version in list_versions(session)}
        run = latest_run(session)
    assert active is not None and active.name == "v0002" and active.data_pairs == 15  # duplicates kept once
    assert active.data_sha256 and active.parent_id is not None
    assert versions == {"v0001": VersionStatus.RETIRED, "v0002": VersionStatus.ACTIVE}
    assert run is not None and run.status == RunStatus.SUCCEEDED and run.progress.get("step", 0) >= 0
    assert "bits/char" in outcome.message


async def test_the_gate_reads_the_canaries_replies_as_the_bot_would_give_them(
        database: Database, engine: InferenceEngine, tmp_path: Path) -> None:
    from core_model.reply_memory import ReplyMemory

    # The live model's corpus answers a canary prompt in words its weights never learned: only
    # decoding guided by the memory (the bot's) writes them. (A canary no chat prompt resembles, so
    # that no other neighbour's reply competes with the taught one.)
    taught = Pair("what do you like?", "greetings, friend")
    (engine.model_path / "memory.json").write_text(ReplyMemory.of([*PAIRS, taught]).to_json(), encoding="utf-8")
    outcome = await learning(database, engine, tmp_path).retrain(RunTrigger.CLI)
    assert outcome.status == "promoted", outcome.message
    canaries = dict(zip(CANARIES, (outcome.figures or {})["canary_replies"], strict=True))
    assert canaries[taught.prompt] == await engine.reply(taught.prompt) == taught.reply


async def test_rejected_candidate_never_serves(database: Database, engine: InferenceEngine, tmp_path: Path) -> None:
    before = engine.model_path
    service = learning(database, engine, tmp_path, tolerance_bits=-100.0)
    outcome = await service.retrain(RunTrigger.ADMIN, "telegram:1")
    assert outcome.status == "rejected" and "validation got worse" in outcome.message
    assert engine.model_path == before
    with database.reads.begin() as session:
        statuses = {version.name: version.status for version in list_versions(session)}
        run = latest_run(session)
    assert statuses["v0002"] == VersionStatus.REJECTED and statuses["v0001"] == VersionStatus.ACTIVE
    assert run is not None and run.status == RunStatus.REJECTED


async def test_too_few_new_pairs_is_skipped_unless_forced(database: Database, engine: InferenceEngine,
                                                          tmp_path: Path) -> None:
    service = learning(database, engine, tmp_path, min_new_pairs=10_000)
    outcome = await service.retrain(RunTrigger.SCHEDULE)
    assert outcome.status == "skipped" and "10000 needed" in outcome.message


async def test_a_second_run_is_refused_while_one_holds_the_lease(database: Database, engine: InferenceEngine,
                                                                 tmp_path: Path) -> None:
    with database.sessions.begin() as session:
        take_lease(session, name=LEASE, holder="other-process", ttl=timedelta(minutes=5), now=datetime.now(UTC))
    outcome = await learning(database, engine, tmp_path).retrain(RunTrigger.ADMIN)
    assert outcome.status == "busy" and "already running" in outcome.message


async def test_a_crashing_child_fails_the_run_and_frees_the_lease(database: Database, engine: InferenceEngine,
                                                                  tmp_path: Path) -> None:
    service = learning(database, engine, tmp_path)
    await service.register_live_model()
    shutil.rmtree(engine.model_path)  # the child cannot load the model it should fine-tune
    outcome = await service.retrain(RunTrigger.CLI)
    assert outcome.status == "failed" and "CheckpointError" in outcome.message
    with database.sessions.begin() as session:
        run = latest_run(session)
        assert run is not None and run.status == RunStatus.FAILED and run.error
        assert take_lease(session, name=LEASE, holder="next", ttl=timedelta(minutes=1), now=datetime.now(UTC))


async def test_admin_commands_drive_retrain_status_and_rollback(database: Database, engine: InferenceEngine,
                                                                tmp_path: Path) -> None:
    from bot.messages import IncomingMessage
    from bot.permissions import Permissions
    from bot.service import ChatService

    service = ChatService(engine, database, Permissions({"telegram": frozenset({"1"})}))
    service.learning = learning(database, engine, tmp_path)
    base = engine.model_path
    notified: list[tuple[str, str, Path | None]] = []

    async def notifier(chat_id: str, text: str, image: Path | None, private: bool) -> None:
        notified.append((chat_id, text, image))

    service.set_notifier("telegram", notifier)

    async def say(text: str) -> str:
        reply = await service.handle(IncomingMessage("telegram", "dm", "private", "1", "Admin", text))
        assert reply is not None
        return reply.text

    assert "Retraining started" in await say("/retrain")
    assert "already running" in await say("/retrain")
    outcome = await service.learning.wait()
    assert outcome is not None and outcome.status == "promoted"
    # Whoever asked hears the result, with the curves as a PNG.
    [(chat_id, text, image)] = notified
    assert chat_id == "dm" and text.startswith("Promoted v0002") and image is not None
    assert image.read_bytes().startswith(b"\x89PNG")
    status = await say("/retrain status")
    assert "Promoted v0002" in status and status.startswith("Serving v0002")
    assert await say("/rollback") == "Rolled back: v0001 answers now."
    assert engine.model_path == base
    assert "No version v0099" in await say("/rollback v0099")


def test_serving_model_passes_over_a_broken_active_version(database: Database, model_dir: Path,
                                                           tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from bot.model_choice import serving_model
    from bot.settings import Settings
    from storage.registry import activate_version, add_version

    good, broken = tmp_path / "good", tmp_path / "broken"
    shutil.copytree(model_dir, good)
    shutil.copytree(model_dir, broken)
    (broken / "model.safetensors").write_bytes(b"not weights")
    with database.sessions.begin() as session:
        first = add_version(session, name="v0001", folder=str(good), status=VersionStatus.CANDIDATE,
                            parent_id=None, metrics={})
        activate_version(session, first.id)
        second = add_version(session, name="v0002", folder=str(broken), status=VersionStatus.CANDIDATE,
                             parent_id=first.id, metrics={})
        activate_version(session, second.id)
    assert serving_model(Settings(data_dir=tmp_path / "var"), database) == good
    assert any("model.safetensors" in record.getMessage() for record in caplog.records)
    with database.reads.begin() as session:
        active = active_version(session)
    assert active is not None and active.name == "v0001"


async def test_a_run_left_by_a_dead_process_is_failed_once_its_lease_expires(
        database: Database, engine: InferenceEngine, tmp_path: Path) -> None:
    from storage.registry import add_run, get_run, update_run

    with database.sessions.begin() as session:
        run = add_run(session, trigger=RunTrigger.SCHEDULE)
        update_run(session, run.id, status=RunStatus.RUNNING)
        take_lease(session, name=LEASE, holder="dead", ttl=timedelta(minutes=5), now=datetime.now(UTC))
    service = learning(database, engine, tmp_path)
    assert await service.recover() == 0  # the lease is still valid: maybe it is alive elsewhere
    with database.sessions.begin() as session:
        take_lease(session, name=LEASE, holder="dead", ttl=timedelta(minutes=5),
                   now=datetime.now(UTC) - timedelta(minutes=10))  # as if it stopped renewing
    assert await service.recover() == 1
    with database.reads.begin() as session:
        failed = get_run(session, run.id)
    assert failed is not None and failed.status == RunStatus.FAILED and "interrupted" in (failed.error or "")
    assert (await service.retrain(RunTrigger.CLI)).status == "promoted"  # and a new run can start


async def test_a_scheduled_run_fires(database: Database, engine: InferenceEngine, tmp_path: Path) -> None:
    import asyncio

    from apscheduler.schedulers.asyncio import AsyncIOScheduler
    from apscheduler.triggers.date import DateTrigger

    from bot.retrain_schedule import schedule_retraining

    scheduler = AsyncIOScheduler()
    fire_at = datetime.now(UTC) + timedelta(seconds=0.3)
    reported: list[str] = []

    async def report(outcome: RetrainOutcome) -> None:
        reported.append(outcome.message)

    schedule_retraining(scheduler, learning(database, engine, tmp_path), DateTrigger(run_date=fire_at), report)
    scheduler.start()
    try:
        for _ in range(300):  # until the first scheduled run has finished and reported, at most 30 s
            with database.reads.begin() as session:
                run = latest_run(session)
            if run is not None and run.finished_at is not None and reported:
                break
            await asyncio.sleep(0.1)
    finally:
        # Only once the job has reported: shutting down cancels a job still running, and the run is
        # recorded as finished a moment before the report is sent.
        scheduler.shutdown(wait=False)
    assert run is not None and run.trigger == RunTrigger.SCHEDULE and run.status == RunStatus.SUCCEEDED
    assert reported and reported[0].startswith("Promoted v0002")  # the admins are told


def test_prune_keeps_the_newest_old_versions_and_never_the_active_or_its_parent(
        database: Database, engine: InferenceEngine, tmp_path: Path) -> None:
    from storage.registry import activate_version, add_version

    root = tmp_path / "models"
    with database.sessions.begin() as session:
        parent = None
        for number in range(1, 7):
            folder = root / f"v{number:04d}"
            folder.mkdir(parents=True)
            version = add_version(session, name=folder.name, folder=str(folder), status=VersionStatus.CANDIDATE,
                                  parent_id=parent, metrics={})
            activate_version(session, version.id)  # each becomes active; the one before retires
            parent = version.id
    service = learning(database, engine, tmp_path, keep_versions=2)
    assert service.prune() == ["v0001", "v0002"]  # v0003 and v0004 kept; v0005 is the parent of v0006
    assert not (root / "v0001").exists() and (root / "v0003").exists() and (root / "v0006").exists()
    with database.reads.begin() as session:
        assert [version.name for version in list_versions(session)] == ["v0003", "v0004", "v0005", "v0006"]


async def test_full_rebuild_trains_a_new_tokenizer(database: Database, engine: InferenceEngine,
                                                   tmp_path: Path) -> None:
    from core_model import checkpoint

    outcome = await learning(database, engine, tmp_path).retrain(RunTrigger.ADMIN, full=True)
    assert outcome.status == "promoted", outcome.message
    rebuilt = checkpoint.load(tmp_path / "models" / "v0002")
    assert rebuilt.model.config.hidden_size != checkpoint.load(tmp_path / "models" / "base").model.config.hidden_size


async def test_a_killed_child_fails_the_run_and_leaves_the_active_model(
        database: Database, engine: InferenceEngine, tmp_path: Path) -> None:
    import asyncio

    before = engine.model_path
    service = learning(database, engine, tmp_path, train_seconds=60)
    run = asyncio.create_task(service.retrain(RunTrigger.CLI))
    for _ in range(600):  # until training has started (a first progress report)
        with database.reads.begin() as session:
            latest = latest_run(session)
        if latest is not None and latest.progress.get("step"):
            break
        await asyncio.sleep(0.05)
    assert service.child is not None
    service.child.kill()
    outcome = await run
    assert outcome.status == "failed" and "ended unexpectedly" in outcome.message
    assert engine.model_path == before
    with database.sessions.begin() as session:
        versions = [version.name for version in list_versions(session)]
        assert versions == ["v0001"]  # nothing half-written was registered
        assert take_lease(session, name=LEASE, holder="next", ttl=timedelta(minutes=1), now=datetime.now(UTC))


async def test_a_failed_write_registers_nothing(database: Database, engine: InferenceEngine,
                                                tmp_path: Path) -> None:
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the model folders should go")
    outcome = await learning(database, engine, tmp_path, models_root=blocked).retrain(RunTrigger.CLI)
    assert outcome.status == "failed"
    with database.reads.begin() as session:
        assert [version.name for version in list_versions(session)] == ["v0001"]
        run = latest_run(session)
    assert run is not None and run.status == RunStatus.FAILED
