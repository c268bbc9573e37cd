"""Which model folder the bot serves at start: MODEL_DIR, else the registry's active version, else the default."""

from __future__ import annotations

import logging
from pathlib import Path

from bot.database import Database
from bot.default_model import ensure_default_model
from bot.settings import Settings
from core_model import checkpoint
from storage.models import VersionStatus
from storage.registry import activate_version, list_versions

log = logging.getLogger(__name__)


def serving_model(settings: Settings, database: Database) -> Path:
    """The folder to serve. An active version whose files are missing or corrupt is passed over for
    the newest earlier good one (with a warning naming the bad file); with none, the default model."""
    if settings.model_dir is not None:
        return settings.model_dir  # an explicit folder is used as it is, never trained over
    with database.reads.begin() as session:
        versions = list_versions(session)
    usable = [v for v in versions if v.status in (VersionStatus.ACTIVE, VersionStatus.RETIRED)]
    usable.sort(key=lambda v: (v.status is VersionStatus.ACTIVE, v.id), reverse=True)
    for version in usable:
        try:
            checkpoint.load(version.folder)
        except checkpoint.CheckpointError as error:
            log.warning("model version %s is unusable, passing it over: %s", version.name, error)
            continue
        if version.status is not VersionStatus.ACTIVE:
            with database.sessions.begin() as session:
                activate_version(session, version.id)
            log.warning("serving %s, the newest good version, instead", version.name)
        return Path(version.folder)
    return ensure_default_model(settings.active_model_dir, settings.default_train_seconds, settings.torch_threads)


class FolderModel:
    """The live model as the registry sees it, for commands that run without serving (retrain,
    rollback from the CLI): a swap checks the folder and moves the pointer; a running bot follows
    the registry's active version by itself."""

    def __init__(self, path: Path) -> None:
        self._path = Path(path)
        self._metrics = checkpoint.load(self._path).metrics

    @property
    def model_path(self) -> Path:
        return self._path

    @property
    def metrics(self) -> dict[str, object]:
        return self._metrics

    async def swap(self, path: Path | str) -> None:
        self._metrics = checkpoint.load(path).metrics
        self._path = Path(path)
