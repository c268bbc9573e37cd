import asyncio
import threading
from concurrent.futures import Future

import pytest

from bot.loop_bridge import LoopBridge


async def test_results_and_errors_arrive_on_the_loop() -> None:
    bridge = LoopBridge(asyncio.get_running_loop())
    good: Future[int] = Future()
    bad: Future[int] = Future()
    waiting = [bridge.wrap(good), bridge.wrap(bad)]
    threading.Thread(target=lambda: (good.set_result(7), bad.set_exception(ValueError("no")))).start()
    assert await waiting[0] == 7
    with pytest.raises(ValueError, match="no"):
        await waiting[1]


async def test_a_burst_wakes_the_loop_once() -> None:
    loop = asyncio.get_running_loop()
    bridge = LoopBridge(loop)
    wakes = 0
    original = loop.call_soon_threadsafe

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        nonlocal wakes
        wakes += 1
        return original(*args, **kwargs)

    loop.call_soon_threadsafe = counting  # type: ignore[method-assign]
    try:
        work: list[Future[int]] = [Future() for _ in range(20)]
        waiting = [bridge.wrap(done) for done in work]

        def finish_all() -> None:
            for number, done in enumerate(work):
                done.set_result(number)

        thread = threading.Thread(target=finish_all)
        thread.start()
        thread.join()  # all twenty finish before the loop gets to run again
        assert await asyncio.gather(*waiting) == list(range(20))
    finally:
        del loop.call_soon_threadsafe
    assert wakes == 1


async def test_a_caller_that_stops_waiting_does_not_cancel_the_work() -> None:
    bridge = LoopBridge(asyncio.get_running_loop())
    work: Future[str] = Future()
    waiting = bridge.wrap(work)
    waiting.cancel()
    assert not work.cancelled()
    work.set_result("written")  # the result is dropped quietly, nobody left to take it
    await asyncio.sleep(0)
    assert waiting.cancelled()
