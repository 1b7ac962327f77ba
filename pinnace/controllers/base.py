"""What every controller is made of: informers that put keys on a workqueue,
and workers that reconcile one key at a time (client-go's controller shape).

A controller subclasses ``Controller``, registers its informers and handlers
in ``setup()`` and implements ``sync(key)``, which must be idempotent: it
reads the desired and actual state from the informer caches and writes only
the difference. A failed sync is retried with per-key exponential backoff.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from pinnace.client import Client, InformerFactory, ShutDown, WorkQueue, key_of
from pinnace.client.clock import Clock
from pinnace.client.events import EventRecorder

Obj = dict[str, Any]


@dataclass
class Context:
    client: Client
    informers: InformerFactory
    options: dict[str, Any] = field(default_factory=dict)
    # What controllers read the time and set timers with (a test's SteppedClock
    # fast-forwards schedules, back-offs and TTLs).
    clock: Clock = field(default_factory=Clock)


class Requeue(Exception):
    """Raised by ``sync`` to have its key retried with back-off when waiting
    is the answer, not an error (upstream's requeueItem): logged at debug
    level, with no traceback however often it happens."""


class Controller:
    name = "controller"
    # The component name its Events carry ("From" in kubectl describe), as upstream's.
    event_source = "controller-manager"
    workers = 2

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.client = ctx.client
        self.queue = WorkQueue(call_later=ctx.clock.call_later)
        self.recorder = EventRecorder(ctx.client, self.event_source)
        self.log = logging.getLogger(f"pinnace.controllers.{self.name}")

    def setup(self) -> None:
        """Register informers and handlers (before the informers start)."""

    async def sync(self, key: str) -> None:
        raise NotImplementedError

    def enqueue(self, obj: Obj) -> None:
        self.queue.add(key_of(obj))

    def enqueue_after(self, obj_or_key: Obj | str, delay: float) -> None:
        key = obj_or_key if isinstance(obj_or_key, str) else key_of(obj_or_key)
        self.queue.add_after(key, delay)

    async def run(self) -> None:
        await asyncio.gather(*(self._worker() for _ in range(self.workers)))

    async def _worker(self) -> None:
        while True:
            try:
                key = await self.queue.get()
            except ShutDown:
                return
            try:
                await self.sync(str(key))
                self.queue.forget(key)
            except asyncio.CancelledError:
                raise
            except Requeue as e:
                self.log.debug("sync %s: retrying later: %s", key, e)
                self.queue.add_rate_limited(key)
            except Exception as e:
                level = logging.INFO if self.queue.retries(key) < 5 else logging.WARNING
                self.log.log(level, "sync %s failed (will retry): %s", key, e,
                             exc_info=level == logging.WARNING)
                self.queue.add_rate_limited(key)
            finally:
                self.queue.done(key)


class Expectations:
    """Creates and deletes a controller has asked for but not yet seen in its
    informer, so a sync running before the cache catches up does not act
    twice (client-go's ControllerExpectations). Expectations expire after
    five minutes in case an event was missed."""

    TTL = 300.0

    def __init__(self) -> None:
        self._pending: dict[str, tuple[int, int, float]] = {}

    def expect(self, key: str, adds: int = 0, deletes: int = 0) -> None:
        a, d, _ = self._pending.get(key, (0, 0, 0.0))
        self._pending[key] = (a + adds, d + deletes, time.monotonic())

    def observed_add(self, key: str) -> None:
        if key in self._pending:
            a, d, t = self._pending[key]
            self._pending[key] = (a - 1, d, t)

    def observed_delete(self, key: str) -> None:
        if key in self._pending:
            a, d, t = self._pending[key]
            self._pending[key] = (a, d - 1, t)

    def satisfied(self, key: str) -> bool:
        entry = self._pending.get(key)
        if entry is None:
            return True
        a, d, t = entry
        if (a <= 0 and d <= 0) or time.monotonic() - t > self.TTL:
            del self._pending[key]
            return True
        return False

    def forget(self, key: str) -> None:
        self._pending.pop(key, None)


def controller_ref(obj: Obj) -> Obj | None:
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return ref  # type: ignore[no-any-return]
    return None


CONTROLLER_INDEX = "controller-uid"


def _controller_index(obj: Obj) -> list[str]:
    ref = controller_ref(obj)
    if ref is not None:
        return [str(ref.get("uid", ""))]
    return ["orphan/" + ((obj.get("metadata") or {}).get("namespace") or "")]


def index_by_controller(informer: Any) -> None:
    """Index ``informer``'s objects by their controller's uid, and those
    without one by namespace (upstream's controllerUIDIndex), so that a
    controller's sync looks at its own pods and the orphans it may adopt,
    not at every pod of the namespace."""
    if not informer.has_index(CONTROLLER_INDEX):
        informer.add_index(CONTROLLER_INDEX, _controller_index)


def owned_or_orphaned(informer: Any, namespace: str, uid: str) -> list[Obj]:
    """The objects a controller with ``uid`` owns, and the namespace's orphans."""
    return informer.by_index(CONTROLLER_INDEX, uid) + \
        informer.by_index(CONTROLLER_INDEX, "orphan/" + namespace)


def owner_reference(owner: Obj, block: bool = True) -> Obj:
    meta = owner["metadata"]
    return {"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": meta["name"],
            "uid": meta["uid"], "controller": True, "blockOwnerDeletion": block}
