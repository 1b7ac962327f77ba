"""The scheduling queue: active, backoff and unschedulable pods.

activeQ pops the highest spec.priority first, then the oldest. A pod that
failed goes to backoffQ (1 s doubling to 10 s per attempt) if a cluster event
arrived while it was being scheduled, else it is parked as unschedulable
until ``move_all_to_active_or_backoff`` (node added/updated, pod deleted,
...) or five minutes pass. A pod with spec.schedulingGates is parked as "gated"
(upstream's SchedulingGates PreEnqueue plugin): no cluster event moves it,
only the update that removes its last gate, which sends it to activeQ. The
logic is synchronous with an injected clock; ``pop`` is the one awaitable.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pinnace.client.clock import wait_event
from pinnace.scheduler.cache import pod_key

INITIAL_BACKOFF = 1.0
MAX_BACKOFF = 10.0
UNSCHEDULABLE_MAX_DURATION = 300.0


@dataclass
class QueuedPod:
    pod: dict[str, Any]
    key: str
    timestamp: float
    initial_attempt: float | None = None
    attempts: int = 0
    unschedulable_since: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def priority(self) -> int:
        return int((self.pod.get("spec") or {}).get("priority") or 0)


def gated(pod: Mapping[str, Any]) -> bool:
    """Whether scheduling gates hold the pod back."""
    return bool((pod.get("spec") or {}).get("schedulingGates"))


class SchedulingQueue:
    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 initial_backoff: float = INITIAL_BACKOFF, max_backoff: float = MAX_BACKOFF) -> None:
        self.clock = clock
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self._seq = itertools.count()
        self._active: list[tuple[int, float, int, str]] = []
        self._backoff: list[tuple[float, int, str]] = []
        self._info: dict[str, QueuedPod] = {}
        # key -> "active" | "backoff" | "unschedulable" | "gated" | "in-flight"
        self._where: dict[str, str] = {}
        self.scheduling_cycle = 0
        self.move_request_cycle = -1
        self._closed = False
        self._event: asyncio.Event | None = None

    # --- bookkeeping -------------------------------------------------------

    def _push_active(self, qp: QueuedPod) -> None:
        self._where[qp.key] = "active"
        heapq.heappush(self._active, (-qp.priority, qp.timestamp, next(self._seq), qp.key))
        if self._event is not None:
            self._event.set()

    def _push_backoff(self, qp: QueuedPod) -> None:
        self._where[qp.key] = "backoff"
        heapq.heappush(self._backoff, (self.backoff_expiry(qp), next(self._seq), qp.key))

    def backoff_duration(self, qp: QueuedPod) -> float:
        d = self.initial_backoff * 2 ** max(qp.attempts - 1, 0)
        return min(d, self.max_backoff)

    def backoff_expiry(self, qp: QueuedPod) -> float:
        return qp.timestamp + self.backoff_duration(qp)

    def where(self, pod: Mapping[str, Any] | str) -> str | None:
        """Which sub-queue holds the pod (for tests and metrics)."""
        return self._where.get(pod if isinstance(pod, str) else pod_key(pod))

    def __len__(self) -> int:
        return len(self._info)

    # --- informer events ---------------------------------------------------

    def add(self, pod: dict[str, Any]) -> None:
        """A new pending pod."""
        key = pod_key(pod)
        qp = self._info.get(key)
        if qp is not None:
            self.update(pod)
            return
        qp = self._info[key] = QueuedPod(pod, key, self.clock())
        if gated(pod):
            self._where[key] = "gated"
        else:
            self._push_active(qp)

    def update(self, pod: dict[str, Any]) -> None:
        """A pending pod changed: it may now fit, so an unschedulable one is retried."""
        key = pod_key(pod)
        qp = self._info.get(key)
        if qp is None:
            self.add(pod)
            return
        qp.pod = pod
        where = self._where.get(key)
        if where == "gated":
            if not gated(pod):
                qp.timestamp = self.clock()
                self._push_active(qp)  # never tried: no backoff to wait out
        elif where == "unschedulable":
            if self.clock() < self.backoff_expiry(qp):
                self._push_backoff(qp)
            else:
                self._push_active(qp)
        elif where == "active":
            # Priority may have changed; re-push, stale heap entries are skipped.
            self._push_active(qp)

    def delete(self, pod: Mapping[str, Any] | str) -> None:
        key = pod if isinstance(pod, str) else pod_key(pod)
        self._info.pop(key, None)
        self._where.pop(key, None)

    # --- scheduling cycle --------------------------------------------------

    def pop_nowait(self) -> QueuedPod | None:
        """The next pod to schedule, or None when activeQ is empty."""
        self.flush_backoff_completed()
        while self._active:
            _, _, _, key = heapq.heappop(self._active)
            if self._where.get(key) != "active":
                continue
            qp = self._info[key]
            # Skip stale duplicates of a pod that was re-pushed.
            self._where[key] = "in-flight"
            qp.attempts += 1
            if qp.initial_attempt is None:
                qp.initial_attempt = self.clock()
            self.scheduling_cycle += 1
            return qp
        return None

    async def pop(self) -> QueuedPod | None:
        """Wait for the next pod; None once closed."""
        if self._event is None:
            self._event = asyncio.Event()
        while not self._closed:
            qp = self.pop_nowait()
            if qp is not None:
                return qp
            self._event.clear()
            timeout = 1.0
            if self._backoff:
                timeout = max(0.0, min(timeout, self._backoff[0][0] - self.clock()))
            await wait_event(self._event, timeout)
        return None

    def done(self, pod: Mapping[str, Any] | str) -> None:
        """The pod was bound: forget it."""
        self.delete(pod)

    def add_unschedulable(self, qp: QueuedPod, pod_scheduling_cycle: int | None = None) -> None:
        """The pod failed this cycle. If a move request came in meanwhile the
        cluster may have changed under it: back off instead of parking."""
        if qp.key not in self._info:
            return  # deleted while in flight
        cycle = self.scheduling_cycle if pod_scheduling_cycle is None else pod_scheduling_cycle
        qp.timestamp = self.clock()
        if self.move_request_cycle >= cycle:
            self._push_backoff(qp)
        else:
            qp.unschedulable_since = qp.timestamp
            self._where[qp.key] = "unschedulable"

    def add_backoff(self, qp: QueuedPod) -> None:
        """A retryable error (e.g. the bind failed): back off, then retry."""
        if qp.key not in self._info:
            return
        qp.timestamp = self.clock()
        self._push_backoff(qp)

    # --- moving pods -------------------------------------------------------

    def flush_backoff_completed(self) -> None:
        now = self.clock()
        while self._backoff and self._backoff[0][0] <= now:
            expiry, _, key = heapq.heappop(self._backoff)
            # A pod re-queued since has a later entry; this one is stale.
            if self._where.get(key) == "backoff" and self.backoff_expiry(self._info[key]) <= now:
                self._push_active(self._info[key])

    def flush_unschedulable_left_over(self) -> None:
        """Pods parked longer than five minutes are retried anyway."""
        now = self.clock()
        stale = [k for k, w in self._where.items()
                 if w == "unschedulable" and now - self._info[k].unschedulable_since >= UNSCHEDULABLE_MAX_DURATION]
        for k in stale:
            self._move(self._info[k], now)

    def _move(self, qp: QueuedPod, now: float) -> None:
        if now < self.backoff_expiry(qp):
            self._push_backoff(qp)
        else:
            self._push_active(qp)

    def move_all_to_active_or_backoff(self, event: str = "") -> int:
        """A cluster event (NodeAdd, NodeUpdate, AssignedPodDelete, ...) may
        make parked pods schedulable: retry them all. Returns how many moved."""
        now = self.clock()
        moved = 0
        for k, w in list(self._where.items()):
            if w == "unschedulable":
                self._move(self._info[k], now)
                moved += 1
        self.move_request_cycle = self.scheduling_cycle
        return moved

    def pending(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {"active": [], "backoff": [], "unschedulable": [], "gated": []}
        for k, w in self._where.items():
            if w in out:
                out[w].append(k)
        return out

    def close(self) -> None:
        self._closed = True
        if self._event is not None:
            self._event.set()

    async def run_flushers(self, interval: float = 1.0) -> None:
        """Periodic flushes, as upstream's goroutines (backoff every 1 s,
        leftover unschedulable pods every 30 s)."""
        ticks = 0
        while not self._closed:
            await asyncio.sleep(interval)
            self.flush_backoff_completed()
            ticks += 1
            if ticks % 30 == 0:
                self.flush_unschedulable_left_over()
