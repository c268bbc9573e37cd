"""Group commit: writes that queue up while one transaction runs are written together in the next.

A busy bot logs every message, every reply and every reply's platform id: three tiny
transactions per answered message. Their fixed cost (a session, BEGIN IMMEDIATE, COMMIT) was most
of the writer's time under load, so each writer thread takes everything waiting in the queue and
writes it in one transaction. A caller's future resolves only after that commit, so "logged"
still means durable. If the group fails, each write is retried in a transaction of its own, so
one bad write fails alone and the others land.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from queue import Empty, SimpleQueue
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

MAX_GROUP = 64  # bounds one transaction's length, and so the wait of the writes behind it


@dataclass(frozen=True, slots=True)
class _Write:
    action: Callable[[Session], Any]
    done: Future[Any]


class GroupCommitWriter:
    """Runs `action(session, ...)` calls on `threads` writer threads, grouped into transactions.

    With one thread (SQLite: one writer at a time anyway) the writes land in the order submitted.
    """

    def __init__(self, sessions: sessionmaker[Session], *, threads: int = 1, name: str = "db-write") -> None:
        self._sessions = sessions
        self._queue: SimpleQueue[_Write | None] = SimpleQueue()
        self._closed = False
        self._threads = [threading.Thread(target=self._run, name=f"{name}-{n}", daemon=True)
                         for n in range(threads)]
        for thread in self._threads:
            thread.start()

    def submit(self, action: Callable[Concatenate[Session, P], T], /, *args: P.args,
               **kwargs: P.kwargs) -> Future[T]:
        if self._closed:
            raise RuntimeError("the database writer is closed")
        def write(session: Session) -> T:
            return action(session, *args, **kwargs)

        done: Future[T] = Future()
        self._queue.put(_Write(write, done))
        return done

    def close(self) -> None:
        """Write everything already submitted, then stop the threads."""
        if self._closed:
            return
        self._closed = True
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            group, stopping = [first], False
            while len(group) < MAX_GROUP:
                try:
                    write = self._queue.get_nowait()
                except Empty:
                    break
                if write is None:
                    stopping = True
                    break
                group.append(write)
            self._write(group)
            if stopping:
                return

    def _write(self, group: list[_Write]) -> None:
        # A caller that stopped waiting (cancelled) still gets its write: a message is logged
        # even when its handler was interrupted. Only the result has nobody to go to.
        for write in group:
            write.done.set_running_or_notify_cancel()
        try:
            with self._sessions.begin() as session:
                results = [_fresh(session, write.action) for write in group]
        except Exception as error:
            if len(group) == 1:
                _settle(group[0].done, error=error)
                return
            log.warning("a grouped database write failed (%s); writing the %d one by one", error, len(group))
            for write in group:
                self._write_alone(write)
            return
        for write, result in zip(group, results, strict=True):
            _settle(write.done, result=result)

    def _write_alone(self, write: _Write) -> None:
        try:
            with self._sessions.begin() as session:
                result = write.action(session)
        except Exception as error:
            _settle(write.done, error=error)
        else:
            _settle(write.done, result=result)


def _fresh(session: Session, action: Callable[[Session], Any]) -> Any:
    # Each write sees the rows as stored, not as an earlier write of the group loaded them.
    session.expire_all()
    return action(session)


def _settle(done: Future[Any], *, result: Any = None, error: BaseException | None = None) -> None:
    if done.cancelled():
        return
    if error is not None:
        done.set_exception(error)
    else:
        done.set_result(result)
