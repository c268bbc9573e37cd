"""The scheduled retraining job (APScheduler)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger

from bot.learning import LearningService, RetrainOutcome
from storage.models import RunTrigger

log = logging.getLogger(__name__)


def schedule_retraining(scheduler: AsyncIOScheduler, learning: LearningService, trigger: BaseTrigger,
                        report: Callable[[RetrainOutcome], Awaitable[None]] | None = None) -> None:
    """One scheduled job: never two at once, and missed firings (the bot was down) run once.
    `report` receives each outcome (the admins are told what the night's run did)."""
    async def scheduled() -> None:
        outcome = await learning.retrain(RunTrigger.SCHEDULE)
        log.info("scheduled retraining: %s", outcome.message)
        if report is not None and outcome.status != "skipped":
            await report(outcome)

    scheduler.add_job(scheduled, trigger, id="retrain", max_instances=1, coalesce=True, misfire_grace_time=3600,
                      replace_existing=True)

