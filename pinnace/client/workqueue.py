"""A rate-limited, de-duplicating work queue for controllers.

The three rules of client-go's workqueue hold:
- items are handed out in the order they were added;
- one item is never processed by two workers at once;
- an item added several times before a worker takes it is processed once
  (and an item added while it is being processed is processed again after).
Failed items come back after a per-item exponential delay.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Hashable

from .clock import Cancellable
from .rest import ApiError


class ShutDown(Exception):
    pass


class ExponentialBackoff:
    """Per-item delay base * 2^failures, capped (client-go: 5 ms .. 1000 s)."""

    def __init__(self, base: float = 0.005, cap: float = 1000.0):
        self.base = base
        self.cap = cap
        self.failures: dict[Hashable, int] = {}

    def when(self, item: Hashable) -> float:
        n = self.failures.get(item, 0)
        self.failures[item] = n + 1
        return float(min(self.base * (2 ** n), self.cap))

    def forget(self, item: Hashable) -> None:
        self.failures.pop(item, None)

    def retries(self, item: Hashable) -> int:
        return self.failures.get(item, 0)


class WorkQueue:
    def __init__(self, limiter: ExponentialBackoff | None = None,
                 call_later: Callable[..., Cancellable] | None = None):
        self._queue: deque[Hashable] = deque()
        self._dirty: set[Hashable] = set()
        self._processing: set[Hashable] = set()
        # Workers waiting in get(), oldest first. add() wakes one by setting
        # its future: no task per add, as notifying a Condition would need.
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._shutting_down = False
        self.limiter = limiter or ExponentialBackoff()
        self._call_later = call_later
        self._timers: set[Cancellable] = set()

    def __len__(self) -> int:
        return len(self._queue)

    def add(self, item: Hashable) -> None:
        if self._shutting_down or item in self._dirty:
            return
        self._dirty.add(item)
        if item in self._processing:
            return  # done() puts it back
        self._queue.append(item)
        self._wake()

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def add_after(self, item: Hashable, delay: float) -> None:
        if delay <= 0:
            self.add(item)
            return
        call_later = self._call_later or asyncio.get_running_loop().call_later
        handle: Cancellable

        def fire() -> None:
            self._timers.discard(handle)
            self.add(item)

        handle = call_later(delay, fire)
        self._timers.add(handle)

    def add_rate_limited(self, item: Hashable) -> None:
        self.add_after(item, self.limiter.when(item))

    def forget(self, item: Hashable) -> None:
        self.limiter.forget(item)

    def retries(self, item: Hashable) -> int:
        return self.limiter.retries(item)

    async def get(self) -> Hashable:
        while not self._queue:
            if self._shutting_down:
                raise ShutDown()
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake()  # woken and cancelled at once: the next worker takes it
                raise
        item = self._queue.popleft()
        self._processing.add(item)
        self._dirty.discard(item)
        return item

    def done(self, item: Hashable) -> None:
        self._processing.discard(item)
        if item in self._dirty:
            self._queue.append(item)
            self._wake()

    async def shutdown(self) -> None:
        self._shutting_down = True
        for t in self._timers:
            t.cancel()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)


async def process(queue: WorkQueue, sync: Callable[[str], Awaitable[None]],
                  log: logging.Logger, what: str = "item") -> None:
    """One worker: take keys from ``queue`` and ``sync`` each until the queue
    shuts down. A key that fails comes back after its back-off; expected
    failures (the API or the network) are logged in a line, others with the
    traceback."""
    while True:
        try:
            key = await queue.get()
        except ShutDown:
            return
        try:
            await sync(str(key))
            queue.forget(key)
        except (ApiError, OSError, asyncio.TimeoutError) as e:
            log.info("%s %s: %s; retrying", what, key, e)
            queue.add_rate_limited(key)
        except Exception:
            log.exception("%s %s", what, key)
            queue.add_rate_limited(key)
        finally:
            queue.done(key)
