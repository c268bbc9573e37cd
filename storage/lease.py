"""A lock row with an expiry, so that only one process at a time holds a named job (the retrain)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from storage.db import rows_affected
from storage.models import Lease


def take_lease(session: Session, *, name: str, holder: str, ttl: timedelta, now: datetime) -> bool:
    """Take (or renew) the lease if it is free, expired or already ours; True when we hold it.

    Commit right after: the lease counts for others only once committed. The conditional UPDATE
    is what makes this safe across processes: the database lets one of two racers match.
    """
    taken = rows_affected(session.execute(
        update(Lease)
        .where(Lease.name == name, or_(Lease.expires_at <= now, Lease.holder == holder))
        .values(holder=holder, acquired_at=now, expires_at=now + ttl)
    ))
    if taken:
        return True
    if session.execute(select(Lease.name).where(Lease.name == name)).first() is not None:
        return False
    try:
        with session.begin_nested():
            session.add(Lease(name=name, holder=holder, acquired_at=now, expires_at=now + ttl))
        return True
    except IntegrityError:  # another process created it first
        return False


def renew_lease(session: Session, *, name: str, holder: str, ttl: timedelta, now: datetime) -> bool:
    """Push the expiry out while still holding the lease; False if it was lost (expired and taken)."""
    return bool(rows_affected(session.execute(
        update(Lease).where(Lease.name == name, Lease.holder == holder)
        .values(expires_at=now + ttl)
    )))


def release_lease(session: Session, *, name: str, holder: str) -> None:
    session.execute(delete(Lease).where(Lease.name == name, Lease.holder == holder))


def lease_holder(session: Session, *, name: str, now: datetime) -> str | None:
    """Who holds the lease now, or None when it is free or expired."""
    return session.execute(
        select(Lease.holder).where(Lease.name == name, Lease.expires_at > now)).scalar()

