"""How many pods may be in the busy steps of their start at once, and which
goes first.

Making a pod's network and sandbox, and having the runtime create and start
its containers, is CPU work for the agent, the runtime and the kernel. When
ten pods arrive together on a two-CPU node and all of them do it at once,
every one of them is slowed by the other nine and they all finish late;
let a few through at a time, the pod that arrived first first, and the
early ones are Running while the rest wait their turn (10 pods at once:
median to Running ~15% sooner, the last one no later). The waits that are
not CPU work (image pulls, hooks, grace periods, API calls) stay outside
the gate, so a slow pull never holds up other pods. A step that still
keeps its slot for seconds (a runtime create stuck on a mount, up to
conmon's minute) is waiting, not computing: it gives its slot up after
``max_hold`` and carries on without one, so a few stuck pods cannot hold
up every other pod's start.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
from collections.abc import AsyncIterator

# Seconds a holder keeps its slot at most: a busy step takes milliseconds
# (tens under a burst of fifty pods).
MAX_HOLD = 2.0


class StartGate:
    """At most ``slots`` holders at once; waiters enter lowest ``order`` first
    (a pod's arrival number), so a pod further along its start is not made
    to wait behind pods that came after it."""

    def __init__(self, slots: int, max_hold: float = MAX_HOLD):
        self._max_hold = max_hold
        self._free = max(1, slots)
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()  # ties: first asked, first in

    @contextlib.asynccontextmanager
    async def slot(self, order: int) -> AsyncIterator[None]:
        if self._free > 0:
            self._free -= 1
        else:
            fut = asyncio.get_running_loop().create_future()
            heapq.heappush(self._waiting, (order, next(self._seq), fut))
            try:
                await fut
            except asyncio.CancelledError:
                if fut.done() and not fut.cancelled():
                    self._release()  # handed the slot as it was cancelled: pass it on
                raise
        held = True

        def let_go() -> None:
            nonlocal held
            if held:
                held = False
                self._release()

        timer = asyncio.get_running_loop().call_later(self._max_hold, let_go)
        try:
            yield
        finally:
            timer.cancel()
            let_go()

    def _release(self) -> None:
        while self._waiting:
            _, _, fut = heapq.heappop(self._waiting)
            if not fut.done():  # a cancelled waiter is skipped
                fut.set_result(None)
                return
        self._free += 1


__all__ = ["StartGate"]
