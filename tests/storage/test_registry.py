"""Model-version and training-run records."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from storage.models import RunStatus, RunTrigger, VersionStatus
from storage.registry import (
    activate_version,
    active_version,
    add_run,
    add_version,
    delete_version,
    find_version,
    get_run,
    latest_run,
    list_versions,
    runs_in_progress,
    update_run,
)
from tests.storage.conftest import at


def test_activating_a_version_retires_the_previous_one(session: Session) -> None:
    base = add_version(session, name="v1", folder="/m/v1", status=VersionStatus.ACTIVE, parent_id=None,
                       metrics={"bits_per_char": 3.2})
    child = add_version(session, name="v2", folder="/m/v2", status=VersionStatus.CANDIDATE,
                        parent_id=base.id, metrics={"bits_per_char": 3.1}, data_pairs=1200,
                        data_sha256="ab" * 32)
    assert active_version(session) == base
    activate_version(session, child.id)
    statuses = {version.name: version.status for version in list_versions(session)}
    assert statuses == {"v1": VersionStatus.RETIRED, "v2": VersionStatus.ACTIVE}
    active = active_version(session)
    assert active is not None and active.parent_id == base.id
    assert (active.metrics, active.data_pairs) == ({"bits_per_char": 3.1}, 1200)
    delete_version(session, base.id)
    assert find_version(session, "v1") is None
    assert find_version(session, "v2") is not None


def test_run_lifecycle_and_progress(session: Session) -> None:
    run = add_run(session, trigger=RunTrigger.ADMIN, requested_by="telegram:42")
    assert run.status == RunStatus.QUEUED and runs_in_progress(session) == [run]
    update_run(session, run.id, status=RunStatus.RUNNING, started_at=at(0),
               progress={"step": 10, "loss": 2.5, "eta_seconds": 30})
    running = get_run(session, run.id)
    assert running is not None and running.progress["step"] == 10 and running.started_at == at(0)
    update_run(session, run.id, status=RunStatus.FAILED, finished_at=at(5), error="killed")
    assert runs_in_progress(session) == []
    latest = latest_run(session)
    assert latest is not None and (latest.status, latest.error) == (RunStatus.FAILED, "killed")


def test_unknown_run_field_is_refused(session: Session) -> None:
    run = add_run(session, trigger=RunTrigger.CLI)
    with pytest.raises(ValueError, match="colour"):
        update_run(session, run.id, colour="red")
