"""The retrain lease: one holder at a time across connections, with expiry and renewal."""

from __future__ import annotations

import threading
from datetime import timedelta

from bot.database import Database
from storage.lease import lease_holder, release_lease, renew_lease, take_lease
from tests.storage.conftest import at

TTL = timedelta(seconds=60)


def take(db: Database, holder: str, seconds: float) -> bool:
    with db.sessions.begin() as session:
        return take_lease(session, name="retrain", holder=holder, ttl=TTL, now=at(seconds))


def test_second_holder_is_refused_until_expiry(db: Database) -> None:
    assert take(db, "a", 0)
    assert not take(db, "b", 30)
    assert take(db, "a", 30)  # renewing by taking again is allowed
    assert not take(db, "b", 89)
    assert take(db, "b", 91)  # a's lease (taken at 30) expired at 90
    with db.sessions.begin() as session:
        assert lease_holder(session, name="retrain", now=at(92)) == "b"
        assert not renew_lease(session, name="retrain", holder="a", ttl=TTL, now=at(92))


def test_renew_and_release(db: Database) -> None:
    assert take(db, "a", 0)
    with db.sessions.begin() as session:
        assert renew_lease(session, name="retrain", holder="a", ttl=TTL, now=at(50))
    assert not take(db, "b", 100)  # renewed at 50: valid until 110
    with db.sessions.begin() as session:
        release_lease(session, name="retrain", holder="a")
        assert lease_holder(session, name="retrain", now=at(100)) is None
    assert take(db, "b", 100)


def test_only_one_of_many_concurrent_takers_wins(db: Database) -> None:
    winners: list[str] = []
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def contend(holder: str) -> None:
        try:
            start.wait()
            if take(db, holder, 0):
                winners.append(holder)
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=contend, args=(f"p{i}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and len(winners) == 1
