"""Results from worker threads handed to an event loop, waking it once for a burst of them.

`asyncio.wrap_future` wakes the loop (a write to its self-pipe, then a read) for every result.
The database writer finishes its writes a group at a time, so under load a dozen results arrive
at once: here the first of them schedules one callback on the loop, and those that arrive before
it runs ride along with it.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")


class LoopBridge:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._ready: list[tuple[asyncio.Future[Any], Future[Any]]] = []

    def wrap(self, done: Future[T]) -> asyncio.Future[T]:
        """An asyncio future of the loop that gets done's result. Cancelling it does not cancel
        done: the work goes on, only its result has nobody to go to."""
        future: asyncio.Future[T] = self._loop.create_future()
        done.add_done_callback(lambda finished: self._deliver(future, finished))
        return future

    def _deliver(self, future: asyncio.Future[Any], finished: Future[Any]) -> None:
        with self._lock:
            self._ready.append((future, finished))
            first = len(self._ready) == 1
        if first and not self._loop.is_closed():  # a closed loop has nobody left to tell
            self._loop.call_soon_threadsafe(self._settle)

    def _settle(self) -> None:
        with self._lock:
            ready, self._ready = self._ready, []
        for future, finished in ready:
            if future.cancelled():
                continue
            if finished.cancelled():
                future.cancel()
            elif (error := finished.exception()) is not None:
                future.set_exception(error)
            else:
                future.set_result(finished.result())
