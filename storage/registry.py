"""Records of model versions and training runs (the files themselves live in the model folder)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from storage.models import ModelVersion, RunStatus, RunTrigger, TrainingRun, VersionStatus


@dataclass(frozen=True, slots=True)
class VersionRecord:
    id: int
    name: str
    folder: str
    status: VersionStatus
    parent_id: int | None
    metrics: dict[str, Any]
    data_pairs: int
    data_sha256: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class RunRecord:
    id: int
    trigger: RunTrigger
    requested_by: str | None
    status: RunStatus
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    progress: dict[str, Any]
    error: str | None
    version_id: int | None


def _version(row: ModelVersion) -> VersionRecord:
    return VersionRecord(row.id, row.name, row.folder, row.status, row.parent_id, dict(row.metrics),
                         row.data_pairs, row.data_sha256, row.created_at)


def _run(row: TrainingRun) -> RunRecord:
    return RunRecord(row.id, row.trigger, row.requested_by, row.status, row.created_at,
                     row.started_at, row.finished_at, dict(row.progress), row.error, row.version_id)


def add_version(session: Session, *, name: str, folder: str, status: VersionStatus,
                parent_id: int | None, metrics: dict[str, Any], data_pairs: int = 0,
                data_sha256: str | None = None) -> VersionRecord:
    row = ModelVersion(name=name, folder=folder, status=status, parent_id=parent_id, metrics=metrics,
                       data_pairs=data_pairs, data_sha256=data_sha256)
    session.add(row)
    session.flush()
    return _version(row)


def get_version(session: Session, version_id: int) -> VersionRecord | None:
    row = session.get(ModelVersion, version_id)
    return None if row is None else _version(row)


def find_version(session: Session, name: str) -> VersionRecord | None:
    row = session.execute(select(ModelVersion).where(ModelVersion.name == name)).scalar()
    return None if row is None else _version(row)


def active_version(session: Session) -> VersionRecord | None:
    row = session.execute(select(ModelVersion).where(ModelVersion.status == VersionStatus.ACTIVE)
                          .order_by(ModelVersion.id.desc())).scalars().first()
    return None if row is None else _version(row)


def list_versions(session: Session) -> list[VersionRecord]:
    rows = session.execute(select(ModelVersion).order_by(ModelVersion.id)).scalars()
    return [_version(row) for row in rows]


def activate_version(session: Session, version_id: int) -> None:
    """Make one version active; the one that was active becomes retired."""
    session.execute(update(ModelVersion)
                    .where(ModelVersion.status == VersionStatus.ACTIVE, ModelVersion.id != version_id)
                    .values(status=VersionStatus.RETIRED))
    session.execute(update(ModelVersion).where(ModelVersion.id == version_id)
                    .values(status=VersionStatus.ACTIVE))


def set_version_status(session: Session, version_id: int, status: VersionStatus) -> None:
    session.execute(update(ModelVersion).where(ModelVersion.id == version_id).values(status=status))


def delete_version(session: Session, version_id: int) -> None:
    row = session.get(ModelVersion, version_id)
    if row is not None:
        session.delete(row)


def add_run(session: Session, *, trigger: RunTrigger, requested_by: str | None = None) -> RunRecord:
    row = TrainingRun(trigger=trigger, requested_by=requested_by, status=RunStatus.QUEUED)
    session.add(row)
    session.flush()
    return _run(row)


def update_run(session: Session, run_id: int, **values: Any) -> None:
    """Set any of status, started_at, finished_at, progress, error, version_id."""
    unknown = set(values) - {"status", "started_at", "finished_at", "progress", "error", "version_id"}
    if unknown:
        raise ValueError(f"not a training-run field: {', '.join(sorted(unknown))}")
    session.execute(update(TrainingRun).where(TrainingRun.id == run_id).values(**values))


def get_run(session: Session, run_id: int) -> RunRecord | None:
    row = session.get(TrainingRun, run_id)
    return None if row is None else _run(row)


def latest_run(session: Session) -> RunRecord | None:
    row = session.execute(select(TrainingRun).order_by(TrainingRun.id.desc())).scalars().first()
    return None if row is None else _run(row)


def runs_in_progress(session: Session) -> list[RunRecord]:
    rows = session.execute(select(TrainingRun)
                           .where(TrainingRun.status.in_([RunStatus.QUEUED, RunStatus.RUNNING]))
                           .order_by(TrainingRun.id)).scalars()
    return [_run(row) for row in rows]
