"""The event recorder: events are sent by a few senders from a bounded
queue, a repeat bumps the count of the first, and a burst beyond the queue
is dropped instead of held (client-go's broadcaster)."""

from __future__ import annotations

import asyncio
from typing import Any

from pinnace.client import Client, ClientConfig
from pinnace.client.events import EventRecorder

POD = {"apiVersion": "v1", "kind": "Pod",
       "metadata": {"name": "p", "namespace": "ns", "uid": "u-1", "resourceVersion": "7"}}


class FakeEvents:
    """Records what the recorder sends; each request waits on ``gate``."""

    def __init__(self) -> None:
        self.created: list[dict[str, Any]] = []
        self.patched: list[tuple[str, dict[str, Any]]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.in_flight = 0
        self.most_in_flight = 0

    async def _wait(self) -> None:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await self.gate.wait()
        finally:
            self.in_flight -= 1

    async def create(self, body: dict[str, Any], ns: str) -> dict[str, Any]:
        await self._wait()
        self.created.append(body)
        return body

    async def patch(self, name: str, patch: dict[str, Any], ns: str) -> dict[str, Any]:
        await self._wait()
        self.patched.append((name, patch))
        return patch


def recorder(**kw: Any) -> tuple[EventRecorder, FakeEvents]:
    rec = EventRecorder(Client(ClientConfig(server="http://127.0.0.1:1")), "test-component",
                        host="h", **kw)
    fake = FakeEvents()
    rec.events = fake  # type: ignore[assignment]
    return rec, fake


def test_event_then_repeat_bumps_count() -> None:
    async def go() -> FakeEvents:
        rec, fake = recorder(senders=1)
        rec.event(POD, "Normal", "Scheduled", "Successfully assigned ns/p to n1")
        await rec._queue.join()
        rec.event(POD, "Normal", "Scheduled", "Successfully assigned ns/p to n1")
        await rec._queue.join()
        return fake

    fake = asyncio.run(go())
    [ev] = fake.created
    assert ev["involvedObject"] == {"kind": "Pod", "namespace": "ns", "name": "p", "uid": "u-1",
                                    "apiVersion": "v1", "resourceVersion": "7"}
    assert (ev["reason"], ev["type"], ev["count"]) == ("Scheduled", "Normal", 1)
    assert ev["source"] == {"component": "test-component"}
    assert ev["reportingInstance"] == "test-component-h"
    assert fake.patched == [(ev["metadata"]["name"],
                             {"count": 2, "lastTimestamp": fake.patched[0][1]["lastTimestamp"]})]


def test_burst_beyond_the_queue_is_dropped_and_senders_are_bounded() -> None:
    async def go() -> tuple[EventRecorder, FakeEvents]:
        rec, fake = recorder(max_queued=10, senders=2)
        fake.gate.clear()  # the API is slow: nothing finishes yet
        for i in range(50):
            rec.event(POD, "Normal", "Reason", f"message {i}")
        await asyncio.sleep(0.05)  # the senders take their first events
        for i in range(50, 60):
            rec.event(POD, "Normal", "Reason", f"message {i}")
        fake.gate.set()
        await rec._queue.join()
        return rec, fake

    rec, fake = asyncio.run(go())
    assert fake.most_in_flight == 2
    sent = {e["message"] for e in fake.created}
    # The first ten queued, two of them taken by the senders, then room for two more.
    assert sent == {f"message {i}" for i in (*range(10), 50, 51)}
    assert rec.dropped == 48


def test_a_bursts_events_are_sent_a_moment_after_it() -> None:
    """The work's own requests go first: a sender waits before it sends."""
    async def go() -> tuple[int, int]:
        rec, fake = recorder(delay=0.5)
        rec.event(POD, "Normal", "Started", "Started container c")
        await asyncio.sleep(0.05)
        rec.event(POD, "Normal", "Started", "Started container d")
        early = len(fake.created)
        await rec._queue.join()
        return early, len(fake.created)

    assert asyncio.run(go()) == (0, 2)


def test_a_bursts_events_wait_for_its_end_but_not_past_the_bound() -> None:
    """With a max_delay, senders wait while events keep coming and send
    them all once it is quiet; a burst that never ends has its events sent
    at the bound, while it goes on."""
    async def quiet_end() -> tuple[int, int]:
        rec, fake = recorder(delay=0.5, max_delay=5.0)
        for i in range(16):  # 0.8 s of events 0.05 s apart: never quiet for the delay
            rec.event(POD, "Normal", "Started", f"message {i}")
            await asyncio.sleep(0.05)
        during = len(fake.created)
        await rec._queue.join()
        return during, len(fake.created)

    async def endless() -> tuple[float, int]:
        loop = asyncio.get_running_loop()
        rec, fake = recorder(delay=0.5, max_delay=1.0)
        first = loop.time()
        for i in range(100):  # 5 s of events, 0.05 s apart
            rec.event(POD, "Normal", "Started", f"message {i}")
            await asyncio.sleep(0.05)
            if fake.created:
                return loop.time() - first, i
        return loop.time() - first, 100

    assert asyncio.run(quiet_end()) == (0, 16)
    waited, events = asyncio.run(endless())
    assert waited >= 1.0 and events < 99  # at the bound, the burst still going
