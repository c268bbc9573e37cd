"""Composition root: settings -> database -> engine -> service -> adapters, torn down in reverse."""

from __future__ import annotations

import asyncio
import logging
import signal
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger

from bot.adapters.console import CONSOLE, chat, console_user
from bot.database import Database, apply_retention, mining_rules, open_database
from bot.default_model import ensure_default_model
from bot.learning import LearningOptions, LearningService, RetrainOutcome, SwappableEngine
from bot.metrics import BotMetrics, OpsServer
from bot.model_choice import serving_model
from bot.permissions import Permissions
from bot.retrain_schedule import schedule_retraining
from bot.service import ChatService, ReplyEngine
from bot.settings import Settings
from core_model.checkpoint import load_memory
from core_model.config import DecodeConfig
from core_model.corpora import Pair, bundled_corpus
from core_model.engine import InferenceEngine
from core_model.process_engine import ProcessEngine
from core_model.serving import keep_collector_off_live_objects
from storage.registry import VersionRecord, active_version

log = logging.getLogger(__name__)


def model_path(settings: Settings) -> Path:
    if settings.model_dir is not None:
        return settings.model_dir  # an explicit folder is used as it is, never trained over
    return ensure_default_model(settings.active_model_dir, settings.default_train_seconds, settings.torch_threads)


def build_service(settings: Settings, engine: ReplyEngine, database: Database,
                  metrics: BotMetrics | None = None) -> ChatService:
    # Whoever runs the terminal chat owns the bot: they are its admin there.
    admins = {platform: settings.admin_ids(platform) for platform in ("telegram", "discord")}
    admins[CONSOLE] = frozenset({console_user()})
    return ChatService(engine, database, Permissions(admins), cooldown_seconds=settings.chat_cooldown_seconds,
                       metrics=metrics, context_window_seconds=settings.pair_window_seconds)


def wire_metrics(engine: InferenceEngine | ProcessEngine) -> BotMetrics:
    metrics = BotMetrics()
    metrics.watch_queue(engine.queue_depth)
    engine.batch_observers.append(metrics.batch_size.observe)
    metrics.model.info({"path": str(engine.model_path),
                        "trained_at": str(engine.metrics.get("trained_at", "unknown"))})
    metrics.watch_rate_limits()
    return metrics


def build_learning(settings: Settings, database: Database, engine: SwappableEngine,
                   service: ChatService | None = None) -> LearningService:
    options = LearningOptions(
        models_root=settings.data_dir / "models", min_new_pairs=settings.retrain_min_new_pairs,
        tolerance_bits=settings.retrain_tolerance_bits, train_seconds=settings.retrain_seconds,
        threads=settings.retrain_threads, replay_ratio=settings.retrain_replay_ratio,
        keep_versions=settings.keep_model_versions)
    learning = LearningService(database, engine, options, mining_rules(settings),
                               base_pairs=lambda: replay_pairs(engine.model_path))
    if service is not None:
        service.learning = learning
        learning.on_promoted.append(lambda version: setattr(service, "model_version_id", version.id))
        learning.on_outcome.append(lambda outcome: service.metrics.last_retrain.info(
            {"status": outcome.status, "version": outcome.version or ""}))
    return learning


def replay_pairs(model_dir: Path) -> list[Pair]:
    """The pairs a retrain replays so that the model keeps what it was built with: the live model's
    base pairs (its corpus, core_model/reply_memory.py), or the bundled corpus for a model folder
    that has none."""
    memory = load_memory(model_dir)
    return (memory.base_pairs() if memory is not None else []) or bundled_corpus()


async def follow_registry(database: Database, engine: SwappableEngine, every_seconds: float = 30.0) -> None:
    """Serve whatever version the registry says is active (e.g. after `chatbot rollback` elsewhere)."""
    while True:
        await asyncio.sleep(every_seconds)
        try:
            version = await asyncio.to_thread(_active, database)
            if version is not None and Path(version.folder) != Path(engine.model_path):
                log.info("registry: %s is active now; swapping it in", version.name)
                await engine.swap(version.folder)
        except Exception:
            log.exception("registry: could not follow the active version")


async def tell_admins(settings: Settings, service: ChatService, outcome: RetrainOutcome) -> None:
    """A scheduled run's result goes to every global admin, in a private chat."""
    for platform in ("telegram", "discord"):
        for admin in settings.admin_ids(platform):
            await service.notify(platform, admin, outcome.message, outcome.plot, private=True)


def _active(database: Database) -> VersionRecord | None:
    with database.reads.begin() as session:
        return active_version(session)


def open_store(settings: Settings) -> Database:
    """The conversation database, migrated to the newest schema, with old messages purged."""
    database = open_database(settings.database)
    purged = apply_retention(database, settings, datetime.now(UTC))
    if purged:
        log.info("retention: deleted %d messages older than %g days", purged, settings.retention_days)
    return database


async def run_console(settings: Settings, model: Path | None = None, decode: DecodeConfig | None = None) -> int:
    database = open_store(settings)
    engine = InferenceEngine.from_dir(model or serving_model(settings, database),
                                      decode or settings.decode_config(), threads=settings.torch_threads)
    try:
        service = build_service(settings, engine, database)
        if model is None:  # the bot's own model: it can learn; a folder given by hand is left alone
            learning = build_learning(settings, database, engine, service)
            service.model_version_id = (await learning.register_live_model()).id
        await chat(service)
    finally:
        await engine.close()
        database.close()
    return 0


class Adapter(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def build_adapters(settings: Settings, service: ChatService) -> list[Adapter]:
    adapters: list[Adapter] = []
    if settings.telegram_token:
        from bot.adapters.telegram import TelegramAdapter, TelegramOptions

        adapters.append(TelegramAdapter(service, TelegramOptions(
            token=settings.telegram_token, api_url=settings.telegram_api_url,
            overall_per_second=settings.telegram_rate_per_second,
            group_per_minute=settings.telegram_group_rate_per_minute,
            max_retries=settings.telegram_max_retries)))
    if settings.discord_token:
        from bot.adapters.discord import DiscordAdapter, DiscordOptions

        adapters.append(DiscordAdapter(service, DiscordOptions(token=settings.discord_token,
                                                               guild_id=settings.discord_guild_id)))
    return adapters


async def run_app(settings: Settings) -> int:
    """Every adapter whose token is set, in this one event loop; the terminal chat when none is."""
    if not (settings.telegram_token or settings.discord_token):
        return await run_console(settings)
    database = open_store(settings)
    # Decoding in its own process: the chat clients' Python on this loop would otherwise slow it
    # down (they share the GIL), and it never stalls the loop.
    engine = ProcessEngine.from_dir(serving_model(settings, database), settings.decode_config(),
                                    threads=settings.torch_threads or 1, workers=settings.decode_workers)
    metrics = wire_metrics(engine)
    service = build_service(settings, engine, database, metrics)
    learning = build_learning(settings, database, engine, service)
    service.model_version_id = (await learning.register_live_model()).id
    if interrupted := await learning.recover():
        log.warning("marked %d interrupted retraining run(s) as failed", interrupted)
    scheduler = AsyncIOScheduler()
    if settings.retrain_cron:
        schedule_retraining(scheduler, learning, CronTrigger.from_crontab(settings.retrain_cron),
                            report=lambda outcome: tell_admins(settings, service, outcome))
    adapters = build_adapters(settings, service)
    if settings.ops_port:
        adapters.insert(0, OpsServer(metrics, lambda: {"model": str(engine.model_path),
                                                       "queue_depth": engine.queue_depth()},
                                     port=settings.ops_port))
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, stopping.set)
    started: list[Adapter] = []
    following = asyncio.create_task(follow_registry(database, engine))
    try:
        for adapter in adapters:
            await adapter.start()
            started.append(adapter)
        scheduler.start()
        # The chat clients, the ORM and their caches are built now and live until the end: a full
        # collection scanning them stalled every reply in flight for up to 180 ms under load.
        keep_collector_off_live_objects()
        await stopping.wait()
        log.info("shutting down: no new updates, finishing the replies in flight")
    finally:
        # Reverse order: adapters stop taking updates and finish their handlers, then the engine
        # (which answers what is still queued) and the database close.
        if scheduler.running:
            scheduler.shutdown(wait=False)
        following.cancel()
        for adapter in reversed(started):
            await adapter.stop()
        await engine.close()
        database.close()
        metrics.unwatch_rate_limits()
    return 0
