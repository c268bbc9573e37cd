"""The inference engine: owns the live model and decodes concurrent requests in micro-batches.

Callers on an asyncio loop `await engine.reply(...)`; requests that arrive within `max_wait_ms`
of each other are decoded as one batch on a worker thread, so the event loop never runs torch.
`swap()` loads a new model folder and replaces the live one between batches: a batch that has
started finishes on the model it started with, and no request is dropped.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from core_model.checkpoint import LoadedModel
from core_model.config import DecodeConfig
from core_model.replies import reply_texts_as_done
from core_model.serving import keep_collector_off_live_objects, load_for_serving, served_source

log = logging.getLogger(__name__)


@dataclass
class _Request:
    prompt: str
    context: str
    decode: DecodeConfig
    future: asyncio.Future[str]
    loop: asyncio.AbstractEventLoop
    queued_at: float = field(default_factory=time.perf_counter)


@dataclass
class EngineStats:
    batches: int = 0
    replies: int = 0
    largest_batch: int = 0
    swaps: int = 0


_STOP = object()


class InferenceEngine:
    def __init__(self, loaded: LoadedModel, decode: DecodeConfig | None = None, *, max_batch: int = 64,
                 max_wait_ms: float = 2.0, threads: int | None = None) -> None:
        self._live = loaded
        self.decode = decode or DecodeConfig()
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000
        self.threads = threads
        self.stats = EngineStats()
        # Called on the worker thread with each batch's size (metrics); must be quick and thread-safe.
        self.batch_observers: list[Callable[[int], None]] = []
        self._queue: queue.Queue[_Request | object] = queue.Queue()
        self._worker: threading.Thread | None = None
        keep_collector_off_live_objects()

    @classmethod
    def from_dir(cls, path: Path | str, decode: DecodeConfig | None = None, **options: object) -> InferenceEngine:
        return cls(load_for_serving(path), decode, **options)  # type: ignore[arg-type]

    @property
    def model_path(self) -> Path:
        return self._live.path

    @property
    def metrics(self) -> dict[str, object]:
        return self._live.metrics

    def queue_depth(self) -> int:
        return self._queue.qsize()

    def start(self) -> None:
        if self._worker is None:
            self._worker = threading.Thread(target=self._run, name="inference", daemon=True)
            self._worker.start()

    async def reply(self, prompt: str, context: str = "", decode: DecodeConfig | None = None) -> str:
        """The model's reply to prompt ("" when the prompt has no tokens at all)."""
        self.start()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[str] = loop.create_future()
        self._queue.put(_Request(prompt, context, decode or self.decode, future, loop))
        return await future

    async def swap(self, path: Path | str) -> None:
        """Load the model folder off the loop, then make it live for every later batch."""
        loaded = await asyncio.to_thread(load_for_serving, path)
        self._live = loaded  # one reference assignment: the worker reads it once per batch
        keep_collector_off_live_objects()
        self.stats.swaps += 1
        log.info("model swapped to %s", loaded.path)

    async def close(self) -> None:
        """Finish what is queued, then stop the worker."""
        if self._worker is not None:
            self._queue.put(_STOP)
            await asyncio.to_thread(self._worker.join)
            self._worker = None

    def _run(self) -> None:
        if self.threads:
            torch.set_num_threads(self.threads)
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                break
            batch = [first]
            deadline = time.perf_counter() + self.max_wait
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get(timeout=max(deadline - time.perf_counter(), 0))
                except queue.Empty:
                    break
                if item is _STOP:
                    stopping = True
                    break
                batch.append(item)
            self._decode([r for r in batch if isinstance(r, _Request)])

    def _decode(self, requests: list[_Request]) -> None:
        live = self._live
        groups: dict[DecodeConfig, list[_Request]] = defaultdict(list)
        for request in requests:
            groups[request.decode].append(request)
        for decode, group in groups.items():
            answered: set[int] = set()
            try:
                sources = [served_source(live, r.prompt, r.context) for r in group]
                # Each reply is delivered as soon as it is complete, while the longer ones decode on.
                for finished in reply_texts_as_done(live.model, live.tokenizer, sources, decode, live.memory):
                    answered.update(index for index, _ in finished)
                    settle_together((group[index].loop, (group[index].future, text, None)) for index, text in finished)
            except Exception as error:  # a decoding bug must fail these requests, not the worker
                log.exception("decoding failed for a batch of %d", len(group))
                settle_together((request.loop, (request.future, None, error))
                                for index, request in enumerate(group) if index not in answered)
        self.stats.batches += 1
        self.stats.replies += len(requests)
        self.stats.largest_batch = max(self.stats.largest_batch, len(requests))
        for observe in self.batch_observers:
            observe(len(requests))


# A request's future, with its reply or the error that stopped it.
Outcome = tuple[asyncio.Future[str], str | None, BaseException | None]


def settle_together(deliveries: Iterable[tuple[asyncio.AbstractEventLoop, Outcome]]) -> None:
    """From a worker thread: settle the futures that finished together, waking each loop once."""
    by_loop: dict[asyncio.AbstractEventLoop, list[Outcome]] = defaultdict(list)
    for loop, outcome in deliveries:
        by_loop[loop].append(outcome)
    for loop, outcomes in by_loop.items():
        loop.call_soon_threadsafe(_settle_all, outcomes)


def _settle_all(outcomes: list[Outcome]) -> None:
    for future, text, error in outcomes:
        settle_future(future, text, error)


def settle_future(future: asyncio.Future[str], text: str | None, error: BaseException | None) -> None:
    if future.done():  # the caller gave up (cancelled); nothing to deliver
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(text or "")
