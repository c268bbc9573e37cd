"""Composition root: settings -> model -> engine -> service -> adapters, torn down in reverse."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

from bot.adapters.console import chat
from bot.database import apply_retention, open_database
from bot.default_model import ensure_default_model
from bot.service import ChatService
from bot.settings import Settings
from core_model.config import DecodeConfig
from core_model.engine import InferenceEngine

log = logging.getLogger(__name__)


def model_path(settings: Settings) -> Path:
    if settings.model_dir is not None:
        return settings.model_dir  # an explicit folder is used as it is, never trained over
    return ensure_default_model(settings.active_model_dir, settings.default_train_seconds, settings.torch_threads)


async def run_console(settings: Settings, model: Path | None = None, decode: DecodeConfig | None = None) -> int:
    engine = InferenceEngine.from_dir(model or model_path(settings), decode or settings.decode_config(),
                                      threads=settings.torch_threads)
    try:
        await chat(ChatService(engine))
    finally:
        await engine.close()
    return 0


async def run_app(settings: Settings) -> int:
    """For now the terminal chat; the platform adapters join here when their tokens are set."""
    database = open_database(settings.database)  # brings the schema up to date first
    try:
        purged = apply_retention(database, settings, datetime.now(UTC))
        if purged:
            log.info("retention: deleted %d messages older than %g days", purged, settings.retention_days)
        return await run_console(settings)
    finally:
        database.close()
