"""The start gate: a few pods at once in their busy start steps, the first
to arrive first."""

from __future__ import annotations

import asyncio

import pytest

from pinnace.kubelet.startgate import StartGate


async def test_at_most_its_slots_hold_it_and_the_earliest_pod_goes_next() -> None:
    gate = StartGate(2)
    entered: list[int] = []
    now = most = 0
    release = asyncio.Event()

    async def pod(order: int) -> None:
        nonlocal now, most
        async with gate.slot(order):
            entered.append(order)
            now += 1
            most = max(most, now)
            await release.wait()
            await asyncio.sleep(0)
            now -= 1

    # Pods 5 and 6 take the slots; 9, 7 and 8 ask in that order.
    tasks = [asyncio.create_task(pod(o)) for o in (5, 6, 9, 7, 8)]
    await asyncio.sleep(0)
    assert entered == [5, 6]
    release.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 1)
    # The waiters went in by arrival (order), not by when they asked.
    assert entered == [5, 6, 7, 8, 9]
    assert most == 2


async def test_a_waiter_cancelled_gives_up_its_place_and_no_slot_is_lost() -> None:
    gate = StartGate(1)
    hold = asyncio.Event()

    async def holder() -> None:
        async with gate.slot(0):
            await hold.wait()

    first = asyncio.create_task(holder())
    await asyncio.sleep(0)
    waiting = asyncio.create_task(gate.slot(1).__aenter__())
    later = asyncio.create_task(holder())
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    hold.set()
    await asyncio.wait_for(asyncio.gather(first, later), 1)
    # Both slots' worth of use came back: one more holder gets in at once.
    async with gate.slot(5):
        pass


async def test_a_waiter_cancelled_as_it_is_let_in_passes_the_slot_on() -> None:
    gate = StartGate(1)
    entered: list[str] = []
    hold = asyncio.Event()

    async def pod(name: str, order: int) -> None:
        async with gate.slot(order):
            entered.append(name)
            if name == "a":
                await hold.wait()

    a = asyncio.create_task(pod("a", 0))
    await asyncio.sleep(0)
    b, c = asyncio.create_task(pod("b", 1)), asyncio.create_task(pod("c", 2))
    await asyncio.sleep(0)
    hold.set()
    await asyncio.sleep(0)  # a leaves and hands its slot to b...
    b.cancel()  # ...which is stopped before it runs
    await asyncio.wait_for(asyncio.gather(a, c), 1)
    with pytest.raises(asyncio.CancelledError):
        await b
    assert entered == ["a", "c"]


async def test_a_holder_stuck_past_max_hold_lets_the_next_pod_in() -> None:
    gate = StartGate(1, max_hold=0.2)
    entered: list[str] = []
    stuck, hold = asyncio.Event(), asyncio.Event()

    async def pod(name: str, order: int, until: asyncio.Event | None = None) -> None:
        async with gate.slot(order):
            entered.append(name)
            if until is not None:
                await until.wait()

    first = asyncio.create_task(pod("stuck", 0, stuck))
    await asyncio.sleep(0)
    # The next pod gets in while the first still waits on its step.
    await asyncio.wait_for(pod("next", 1), 1)
    assert entered == ["stuck", "next"]
    stuck.set()
    await first
    # The stuck holder's late exit gave nothing back twice: one at a time still.
    a = asyncio.create_task(pod("a", 2, hold))
    await asyncio.sleep(0)
    b = asyncio.create_task(pod("b", 3))
    await asyncio.sleep(0.05)
    assert entered[-1] == "a"
    hold.set()
    await asyncio.wait_for(asyncio.gather(a, b), 1)
    assert entered[-2:] == ["a", "b"]
