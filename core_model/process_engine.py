"""The inference engine in its own process: the same API as InferenceEngine, without sharing the GIL.

In a bot, the event loop thread is busy with the chat clients' Python; a decoding thread in the
same process then waits for the GIL at every tensor operation (measured: a batch that takes 93 ms
alone took 323 ms beside a busy loop). A child process decodes at full speed. Requests and
replies cross as small tuples (text in, text out); the child micro-batches as the thread engine
does, with `workers` batches decoding side by side, and each reply crosses back as soon as it is
complete. A swap applies to the batches gathered after it, in order, so no request is dropped.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import multiprocessing
import queue
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from core_model.checkpoint import CheckpointError, LoadedModel
from core_model.config import DecodeConfig
from core_model.engine import EngineStats, settle_together
from core_model.numerics import serving_environment

log = logging.getLogger(__name__)

_STOP = "stop"
START_TIMEOUT_S = 120.0


class ProcessEngine:
    def __init__(self, path: Path | str, decode: DecodeConfig | None = None, *, max_batch: int = 64,
                 max_wait_ms: float = 2.0, threads: int | None = 1, workers: int = 1) -> None:
        self.decode = decode or DecodeConfig()
        self.stats = EngineStats()
        # Called on the reader thread with each batch's size; must be quick and thread-safe.
        self.batch_observers: list[Callable[[int], None]] = []
        self._path = Path(path)
        self._metrics: dict[str, Any] = {}
        self._options = (max_batch, max_wait_ms / 1000, threads, workers)
        context = multiprocessing.get_context("spawn")
        self._requests: multiprocessing.Queue[Any] = context.Queue()
        self._results: multiprocessing.Queue[Any] = context.Queue()
        self._process: BaseProcess = context.Process(
            target=_serve, args=(str(self._path), *self._options, self._requests, self._results),
            name="inference", daemon=True)
        self._pending: dict[int, tuple[asyncio.Future[str], asyncio.AbstractEventLoop]] = {}
        self._swaps: dict[str, tuple[asyncio.Future[None], asyncio.AbstractEventLoop]] = {}
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self._reader: threading.Thread | None = None

    @classmethod
    def from_dir(cls, path: Path | str, decode: DecodeConfig | None = None, **options: Any) -> ProcessEngine:
        """Start the decoding process on a model folder; a bad folder raises CheckpointError."""
        engine = cls(path, decode, **options)
        engine.start()
        return engine

    @property
    def model_path(self) -> Path:
        return self._path

    @property
    def metrics(self) -> dict[str, object]:
        return self._metrics

    def queue_depth(self) -> int:
        return len(self._pending)

    def start(self) -> None:
        """Start the child and wait until its model is loaded (blocking: call before serving)."""
        if self._reader is not None:
            return
        with serving_environment():
            self._process.start()
        try:
            kind, *rest = self._results.get(timeout=START_TIMEOUT_S)
        except queue.Empty:
            self._process.kill()
            raise CheckpointError(f"{self._path}: the decoding process did not start") from None
        if kind != "ready":
            self._process.join()
            raise CheckpointError(rest[0])
        self._metrics = rest[1]
        self._reader = threading.Thread(target=self._read, name="inference-results", daemon=True)
        self._reader.start()

    async def reply(self, prompt: str, context: str = "", decode: DecodeConfig | None = None) -> str:
        """The model's reply to prompt ("" when the prompt has no tokens at all)."""
        if self._reader is None:
            await asyncio.to_thread(self.start)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[str] = loop.create_future()
        request_id = next(self._ids)
        with self._lock:
            self._pending[request_id] = (future, loop)
        self._requests.put(("reply", request_id, prompt, context, decode or self.decode))
        return await future

    async def swap(self, path: Path | str) -> None:
        """Make another model folder live after the requests already queued; raises if it is bad."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        with self._lock:
            self._swaps[str(path)] = (done, loop)
        self._requests.put(("swap", str(path)))
        await done

    async def close(self) -> None:
        """Answer what is queued, then stop the child."""
        if self._reader is None:
            return
        self._requests.put((_STOP,))
        await asyncio.to_thread(self._reader.join)
        await asyncio.to_thread(self._process.join)
        self._reader = None

    def _read(self) -> None:
        """Reader thread: settle futures as the child's answers arrive."""
        while True:
            kind, *rest = self._results.get()
            if kind == "answers":
                with self._lock:
                    settled = [(self._pending.pop(request_id), text, error)
                               for request_id, text, error in rest[0]]
                # Each waiting loop is woken once for all the replies that finished together.
                settle_together((loop, (future, text, RuntimeError(error) if error is not None else None))
                                for (future, loop), text, error in settled)
            elif kind == "batch":
                size = rest[0]
                self.stats.batches += 1
                self.stats.replies += size
                self.stats.largest_batch = max(self.stats.largest_batch, size)
                for observe in self.batch_observers:
                    observe(size)
            elif kind in ("swapped", "swap_failed"):
                path, detail = rest
                with self._lock:
                    done, loop = self._swaps.pop(path)
                if kind == "swapped":
                    self._path, self._metrics = Path(path), detail
                    self.stats.swaps += 1
                    loop.call_soon_threadsafe(_resolve, done, None)
                else:
                    loop.call_soon_threadsafe(_resolve, done, CheckpointError(detail))
            elif kind == "stopped":
                return


def _resolve(future: asyncio.Future[None], error: BaseException | None) -> None:
    if not future.done():
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)


def _serve(path: str, max_batch: int, max_wait: float, threads: int | None, workers: int,
           requests: multiprocessing.Queue[Any], results: multiprocessing.Queue[Any]) -> None:
    """The child: load the model, then decode micro-batches until told to stop."""
    import torch

    from core_model.serving import keep_collector_off_live_objects, load_for_serving

    torch.set_num_threads(threads or 1)
    try:
        live = load_for_serving(path)
    except CheckpointError as error:
        results.put(("failed", str(error)))
        return
    keep_collector_off_live_objects()
    results.put(("ready", path, live.metrics))
    # Each worker decodes one batch at a time (tensor operations release the GIL, so two run side
    # by side on two cores). A batch is gathered only when a worker is free, so under load the
    # requests that queue meanwhile make one large batch rather than many small ones.
    free = threading.Semaphore(workers)
    pool = ThreadPoolExecutor(workers, thread_name_prefix="decode")

    def decode_batch(model: LoadedModel, batch: list[tuple[Any, ...]]) -> None:
        try:
            for answers in _answer(model, batch):  # each reply goes back as soon as it is complete
                results.put(("answers", answers))
            results.put(("batch", len(batch)))
        finally:
            free.release()

    while True:
        free.acquire()
        batch, control = _gather(requests, max_batch, max_wait)
        if batch:
            pool.submit(decode_batch, live, batch)
        else:
            free.release()
        if control is None:
            continue
        if control[0] == _STOP:
            pool.shutdown(wait=True)  # the batches already taken are answered first
            results.put(("stopped",))
            return
        if control[0] == "swap":
            try:
                live = load_for_serving(control[1])
                keep_collector_off_live_objects()
                results.put(("swapped", control[1], live.metrics))
            except CheckpointError as error:
                results.put(("swap_failed", control[1], str(error)))


def _gather(requests: multiprocessing.Queue[Any], max_batch: int,
            max_wait: float) -> tuple[list[tuple[Any, ...]], tuple[Any, ...] | None]:
    """The next batch of reply requests (those arriving within max_wait of the first), and the
    control message (swap, stop) that ended it, if one did."""
    first = requests.get()
    if first[0] != "reply":
        return [], first
    batch = [first]
    deadline = time.perf_counter() + max_wait
    while len(batch) < max_batch:
        try:
            item = requests.get(timeout=max(deadline - time.perf_counter(), 0))
        except queue.Empty:
            break
        if item[0] != "reply":
            return batch, item
        batch.append(item)
    return batch, None


Answer = tuple[int, str | None, str | None]  # (request id, reply, error)


def _answer(live: LoadedModel, batch: list[tuple[Any, ...]]) -> Iterator[list[Answer]]:
    """The batch's answers, as they are complete; requests with other decode settings decode apart."""
    from core_model.replies import reply_texts_as_done
    from core_model.serving import served_source

    groups: dict[DecodeConfig, list[tuple[Any, ...]]] = defaultdict(list)
    for item in batch:
        groups[item[4]].append(item)
    for decode, group in groups.items():
        answered: set[int] = set()
        try:
            sources = [served_source(live, item[2], item[3]) for item in group]
            for finished in reply_texts_as_done(live.model, live.tokenizer, sources, decode, live.memory):
                answered.update(index for index, _ in finished)
                yield [(group[index][1], text, None) for index, text in finished]
        except Exception as error:  # fail these requests, not the process
            log.exception("decoding failed for a batch of %d", len(group))
            yield [(item[1], None, f"decoding failed: {error}") for index, item in enumerate(group)
                   if index not in answered]
