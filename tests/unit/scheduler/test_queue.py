from __future__ import annotations

import asyncio

from conftest import make_pod

from pinnace.scheduler.queue import SchedulingQueue


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def names(q: SchedulingQueue) -> list[str]:
    out = []
    while (qp := q.pop_nowait()) is not None:
        out.append(qp.pod["metadata"]["name"])
    return out


def test_priority_then_age() -> None:
    clock = Clock()
    q = SchedulingQueue(clock)
    q.add(make_pod("old-low", priority=0))
    clock.t += 1
    q.add(make_pod("high", priority=1000))
    clock.t += 1
    q.add(make_pod("new-low"))
    q.add(make_pod("mid", priority=10))
    assert names(q) == ["high", "mid", "old-low", "new-low"]


def test_unschedulable_parked_until_event_then_backoff() -> None:
    clock = Clock()
    q = SchedulingQueue(clock)
    q.add(make_pod("p"))
    qp = q.pop_nowait()
    assert qp is not None and qp.attempts == 1
    q.add_unschedulable(qp)
    assert q.where("default/p") == "unschedulable" and q.pop_nowait() is None
    clock.t += 0.5
    assert q.move_all_to_active_or_backoff("NodeAdd") == 1
    assert q.where("default/p") == "backoff"  # 1 s backoff not over yet
    assert q.pop_nowait() is None
    clock.t += 0.6
    qp = q.pop_nowait()
    assert qp is not None and qp.attempts == 2


def test_backoff_doubles_to_ten_seconds() -> None:
    clock = Clock()
    q = SchedulingQueue(clock)
    q.add(make_pod("p"))
    waits = []
    for _ in range(6):
        qp = q.pop_nowait()
        assert qp is not None
        q.add_backoff(qp)
        waits.append(q.backoff_duration(qp))
        clock.t += waits[-1] - 0.01
        assert q.pop_nowait() is None
        clock.t += 0.02
    assert waits == [1, 2, 4, 8, 10, 10]


def test_event_during_cycle_means_backoff_not_parking() -> None:
    clock = Clock()
    q = SchedulingQueue(clock)
    q.add(make_pod("p"))
    qp = q.pop_nowait()
    cycle = q.scheduling_cycle
    q.move_all_to_active_or_backoff("NodeUpdate")  # arrives while p is in flight
    q.add_unschedulable(qp, cycle)
    assert q.where("default/p") == "backoff"


def test_five_minute_flush_and_delete() -> None:
    clock = Clock()
    q = SchedulingQueue(clock)
    q.add(make_pod("p"))
    q.add(make_pod("gone"))
    for _ in range(2):
        q.add_unschedulable(q.pop_nowait())  # type: ignore[arg-type]
    q.delete(make_pod("gone"))
    clock.t += 299
    q.flush_unschedulable_left_over()
    assert q.where("default/p") == "unschedulable"
    clock.t += 2
    q.flush_unschedulable_left_over()
    assert names(q) == ["p"]
    assert q.where("default/gone") is None


def test_update_retries_unschedulable_pod() -> None:
    clock = Clock()
    q = SchedulingQueue(clock)
    q.add(make_pod("p"))
    q.add_unschedulable(q.pop_nowait())  # type: ignore[arg-type]
    clock.t += 5
    q.update(make_pod("p", cpu="1m"))
    assert names(q) == ["p"]


async def test_pop_waits_for_add_and_close() -> None:
    q = SchedulingQueue()
    task = asyncio.create_task(q.pop())
    await asyncio.sleep(0.01)
    assert not task.done()
    q.add(make_pod("p"))
    qp = await asyncio.wait_for(task, 1)
    assert qp is not None and qp.key == "default/p"
    task = asyncio.create_task(q.pop())
    await asyncio.sleep(0.01)
    q.close()
    assert await asyncio.wait_for(task, 1) is None


def test_gated_pods_wait_for_their_gates_to_go() -> None:
    clock = Clock()
    q = SchedulingQueue(clock)
    gates = [{"name": "example.com/quota"}, {"name": "example.com/arch"}]
    q.add(make_pod("gated", schedulingGates=gates))
    q.add(make_pod("free"))
    assert q.where("default/gated") == "gated"
    assert names(q) == ["free"]
    q.move_all_to_active_or_backoff("NodeAdd")
    clock.t += 400
    q.flush_unschedulable_left_over()
    assert q.pop_nowait() is None and q.pending()["gated"] == ["default/gated"]
    q.update(make_pod("gated", schedulingGates=gates[1:]))
    assert q.pop_nowait() is None
    q.update(make_pod("gated"))  # the last gate removed: straight to activeQ
    assert names(q) == ["gated"]
