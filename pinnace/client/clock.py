"""Time as components see it, so that tests can move it forward.

Controllers and simulated nodes ask a ``Clock`` for the time and for
timers instead of calling ``time.time()`` or ``loop.call_later`` directly
(client-go's ``clock.Clock`` plays the same part). ``Clock`` is real time;
``SteppedClock`` is real time plus an offset that ``advance`` moves
forward: every timer that the jump makes due fires at once, so a CronJob
schedule, a Job back-off or a TTL an hour away happens in a test in
milliseconds, while everything else keeps running in real time.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, Protocol


class Cancellable(Protocol):
    def cancel(self) -> None: ...


class Clock:
    """Real time."""

    def time(self) -> float:
        """Seconds since the epoch (wall time)."""
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> Cancellable:
        return asyncio.get_running_loop().call_later(delay, callback, *args)

    async def sleep(self, delay: float) -> None:
        await asyncio.sleep(delay)


async def wait_event(event: asyncio.Event, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for ``event``; True if it was set.

    For loops that wait on an event with a timeout: on Python 3.11,
    ``asyncio.wait_for`` can swallow a cancellation that arrives as the
    event is set, and such a loop then never stops (seen as a scheduler
    that ignored its cancellation). ``asyncio.timeout`` does not."""
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
        return True
    except TimeoutError:
        return event.is_set()


class _Timer:
    __slots__ = ("due", "loop", "callback", "args", "handle", "cancelled")

    def __init__(self, due: float, loop: asyncio.AbstractEventLoop,
                 callback: Callable[..., Any], args: tuple[Any, ...]):
        self.due, self.loop, self.callback, self.args = due, loop, callback, args
        self.handle: asyncio.TimerHandle | None = None
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True
        if self.handle is not None:
            self.handle.cancel()


AdvanceHook = Callable[[float], Coroutine[Any, Any, None]]


class SteppedClock(Clock):
    """Real time plus an offset that only grows.

    Timers are kept in clock time: ``advance(s)`` fires, in order, every
    timer the jump made due and shortens the real wait of the rest.
    ``advance`` may be called from any thread; hooks registered with
    ``on_advance`` run first, on their own event loop (simulated nodes
    renew their Leases there, so a jump does not make live nodes look
    silent to the node lifecycle controller).
    """

    def __init__(self) -> None:
        self._offset = 0.0
        self._lock = threading.Lock()
        self._timers: list[tuple[float, int, _Timer]] = []
        self._seq = itertools.count()
        self._hooks: list[tuple[asyncio.AbstractEventLoop, AdvanceHook]] = []
        self._compact_at = 1024

    @property
    def offset(self) -> float:
        return self._offset

    def time(self) -> float:
        return time.time() + self._offset

    def monotonic(self) -> float:
        return time.monotonic() + self._offset

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> Cancellable:
        loop = asyncio.get_running_loop()
        timer = _Timer(self.monotonic() + max(delay, 0.0), loop, callback, args)
        with self._lock:
            heapq.heappush(self._timers, (timer.due, next(self._seq), timer))
            if len(self._timers) > self._compact_at:  # drop fired and cancelled timers
                self._timers = [t for t in self._timers if not t[2].cancelled]
                heapq.heapify(self._timers)
                self._compact_at = max(1024, 2 * len(self._timers))
        timer.handle = loop.call_later(max(delay, 0.0), self._fire, timer)
        return timer

    async def sleep(self, delay: float) -> None:
        done = asyncio.get_running_loop().create_future()

        def wake() -> None:
            if not done.done():
                done.set_result(None)

        timer = self.call_later(delay, wake)
        try:
            await done
        finally:
            timer.cancel()

    def on_advance(self, hook: AdvanceHook) -> None:
        """Run ``await hook(seconds)`` (on the caller's event loop) at each
        ``advance``, after the time moved and before any timer fires."""
        self._hooks.append((asyncio.get_running_loop(), hook))

    def advance(self, seconds: float, timeout: float = 30.0) -> None:
        """Move time forward by ``seconds`` and fire what became due. From a
        thread other than the components' loop (a test's), this returns once
        the hooks have run and the due timers have been handed to their loops."""
        if seconds < 0:
            raise ValueError("a clock only moves forward")
        with self._lock:
            self._offset += seconds
        for loop, hook in list(self._hooks):
            if loop.is_closed():
                continue
            fut = asyncio.run_coroutine_threadsafe(hook(seconds), loop)
            fut.result(timeout)
        self._reschedule()

    async def advance_async(self, seconds: float) -> None:
        """``advance`` from a coroutine on the components' own loop."""
        if seconds < 0:
            raise ValueError("a clock only moves forward")
        with self._lock:
            self._offset += seconds
        for _, hook in list(self._hooks):
            await hook(seconds)
        self._reschedule()

    def _reschedule(self) -> None:
        now = self.monotonic()
        with self._lock:
            live = sorted(t for t in self._timers if not t[2].cancelled)
            self._timers = live  # a sorted list is a heap
            pending = [t for _, _, t in live]
        for timer in pending:
            if timer.loop.is_closed():
                continue
            timer.loop.call_soon_threadsafe(self._rearm, timer, now)

    def _rearm(self, timer: _Timer, now: float) -> None:
        if timer.cancelled or timer.handle is None:
            return
        timer.handle.cancel()
        timer.handle = timer.loop.call_later(max(timer.due - now, 0.0), self._fire, timer)

    def _fire(self, timer: _Timer) -> None:
        if timer.cancelled:
            return
        timer.cancelled = True  # fired: drop it at the next reschedule
        timer.handle = None
        timer.callback(*timer.args)


__all__ = ["Clock", "SteppedClock", "wait_event"]
