"""The workqueue's three rules, and rate-limited retries."""

from __future__ import annotations

import asyncio

import pytest

from pinnace.client.workqueue import ExponentialBackoff, ShutDown, WorkQueue


async def test_order_and_deduplication() -> None:
    q = WorkQueue()
    for item in ("a", "b", "a", "c", "b"):
        q.add(item)
    assert [await q.get() for _ in range(3)] == ["a", "b", "c"]
    assert len(q) == 0


async def test_item_added_while_processing_runs_again_after_done() -> None:
    q = WorkQueue()
    q.add("x")
    item = await q.get()
    q.add("x")  # arrives while a worker holds it
    assert len(q) == 0  # never handed to a second worker at once
    q.done(item)
    assert await asyncio.wait_for(q.get(), 1) == "x"


async def test_rate_limited_retries_back_off_exponentially() -> None:
    limiter = ExponentialBackoff(base=0.01, cap=1)
    assert [limiter.when("k") for _ in range(4)] == [0.01, 0.02, 0.04, 0.08]
    limiter.forget("k")
    assert limiter.when("k") == 0.01
    q = WorkQueue(ExponentialBackoff(base=0.01))
    q.add_rate_limited("late")
    assert len(q) == 0
    assert await asyncio.wait_for(q.get(), 1) == "late"


async def test_shutdown_wakes_waiting_workers() -> None:
    q = WorkQueue()
    waiter = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    await q.shutdown()
    with pytest.raises(ShutDown):
        await waiter


async def test_every_item_reaches_one_waiting_worker() -> None:
    q = WorkQueue()
    seen: list[str] = []

    async def worker() -> None:
        while True:
            try:
                item = await q.get()
            except ShutDown:
                return
            seen.append(str(item))
            await asyncio.sleep(0)  # a sync that yields
            q.done(item)

    workers = [asyncio.create_task(worker()) for _ in range(3)]
    await asyncio.sleep(0)  # all three wait
    for burst in range(20):
        for i in range(5):
            q.add(f"{burst}-{i}")
        await asyncio.sleep(0)
    for _ in range(50):
        if len(seen) == 100:
            break
        await asyncio.sleep(0.01)
    await q.shutdown()
    await asyncio.wait_for(asyncio.gather(*workers), 1)
    assert sorted(seen) == sorted(f"{b}-{i}" for b in range(20) for i in range(5))


async def test_a_worker_cancelled_as_it_is_woken_passes_the_item_on() -> None:
    q = WorkQueue()
    first, second = asyncio.create_task(q.get()), asyncio.create_task(q.get())
    await asyncio.sleep(0)  # both wait, first in line
    q.add("a")  # wakes the first...
    first.cancel()  # ...which is stopped before it runs
    assert await asyncio.wait_for(second, 1) == "a"
    with pytest.raises(asyncio.CancelledError):
        await first
