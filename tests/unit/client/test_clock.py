"""SteppedClock: timers kept in clock time, fired by a jump."""

from __future__ import annotations

import asyncio
import threading

import pytest

from pinnace.client.clock import SteppedClock
from pinnace.client.workqueue import WorkQueue


async def test_advance_fires_due_timers_in_order_and_leaves_the_rest() -> None:
    clock = SteppedClock()
    fired: list[str] = []
    clock.call_later(3600, fired.append, "hour")
    clock.call_later(60, fired.append, "minute")
    clock.call_later(86400, fired.append, "day")
    cancelled = clock.call_later(30, fired.append, "cancelled")
    cancelled.cancel()
    before = clock.time()
    await clock.advance_async(4000)
    await asyncio.sleep(0.01)
    assert fired == ["minute", "hour"]
    assert clock.time() - before >= 4000
    await clock.advance_async(90000)
    await asyncio.sleep(0.01)
    assert fired == ["minute", "hour", "day"]


async def test_timers_still_fire_in_real_time() -> None:
    clock = SteppedClock()
    fired = asyncio.Event()
    clock.call_later(0.02, fired.set)
    await asyncio.wait_for(fired.wait(), 1)


async def test_sleep_wakes_on_a_jump_from_another_thread() -> None:
    clock = SteppedClock()
    seen: list[float] = []

    async def hook(seconds: float) -> None:
        seen.append(seconds)

    clock.on_advance(hook)
    sleeper = asyncio.create_task(clock.sleep(300))
    await asyncio.sleep(0.01)
    thread = threading.Thread(target=clock.advance, args=(301,))
    thread.start()
    await asyncio.wait_for(sleeper, 2)
    await asyncio.to_thread(thread.join)
    assert seen == [301]


async def test_a_workqueue_on_the_clock_gets_its_delayed_items_after_a_jump() -> None:
    clock = SteppedClock()
    queue = WorkQueue(call_later=clock.call_later)
    queue.add_after("cronjob/nightly", 24 * 3600)
    await clock.advance_async(24 * 3600)
    assert await asyncio.wait_for(queue.get(), 1) == "cronjob/nightly"


async def test_time_never_goes_back() -> None:
    with pytest.raises(ValueError):
        await SteppedClock().advance_async(-1)


async def _cancelled_while_set(wait: object) -> bool:
    """Whether a loop waiting on an event stops when it is cancelled just as
    the event is set."""
    event = asyncio.Event()

    async def loop() -> None:
        while True:
            event.clear()
            await wait(event, 1.0)  # type: ignore[operator]

    task = asyncio.create_task(loop())
    await asyncio.sleep(0.01)
    event.set()
    await asyncio.sleep(0)  # the event's waiter is woken ...
    task.cancel()  # ... and the cancellation lands in the same turn
    try:
        await asyncio.wait_for(asyncio.shield(task), 0.5)
    except asyncio.CancelledError:
        return True
    except TimeoutError:
        task.cancel()
        return False
    return task.cancelled()


async def test_wait_event_never_swallows_a_cancellation() -> None:
    from pinnace.client.clock import wait_event

    assert await _cancelled_while_set(wait_event)
