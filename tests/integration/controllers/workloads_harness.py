"""Run workload controllers in-process against a test API server, plus a tiny
fake kubelet, on an event loop in a background thread (so the tests can stay
synchronous and drive the cluster with real kubectl).

The fake kubelet stands in for the node agent that does not exist yet: every
Pending pod of a ReplicaSet, StatefulSet or DaemonSet becomes Running and
Ready shortly after it appears (unless its ``fake-kubelet/hold`` label says
otherwise), and such a pod marked for deletion is removed at once, as a
kubelet does once its containers are gone. Pods of other owners are left
alone, so tests of other controllers sharing the server are not disturbed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pinnace.client import ApiError, Client, InformerFactory, load_kubeconfig
from pinnace.controllers.base import Context, Controller, controller_ref

Obj = dict[str, Any]
HOLD_LABEL = "fake-kubelet/hold"
OWNER_KINDS = {"ReplicaSet", "StatefulSet", "DaemonSet"}


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def ready_status(pod: Obj) -> Obj:
    now = _now()
    containers = (pod.get("spec") or {}).get("containers") or []
    return {"phase": "Running", "startTime": now, "podIP": "10.0.0.1", "hostIP": "10.1.0.1",
            "conditions": [{"type": t, "status": "True", "lastTransitionTime": now}
                           for t in ("PodScheduled", "Initialized", "ContainersReady",
                                     "Ready")],
            "containerStatuses": [{"name": c["name"], "image": c.get("image", ""),
                                   "imageID": "", "ready": True, "restartCount": 0,
                                   "started": True, "state": {"running": {"startedAt": now}}}
                                  for c in containers]}


class FakeKubelet:
    def __init__(self, client: Client, informers: InformerFactory, delay: float = 0.05):
        self.api = client.resource("v1", "pods")
        self.pods = informers.informer("v1", "pods")
        self.delay = delay
        self.tasks: set[asyncio.Task[None]] = set()
        self.pods.add_handler(self._seen, lambda old, new: self._seen(new), None)

    def _seen(self, pod: Obj) -> None:
        ref = controller_ref(pod)
        if ref is None or ref.get("kind") not in OWNER_KINDS:
            return
        meta = pod["metadata"]
        if meta.get("deletionTimestamp"):
            self._spawn(self._remove(pod))
        elif (pod.get("status") or {}).get("phase", "Pending") == "Pending" and \
                (meta.get("labels") or {}).get(HOLD_LABEL) != "true":
            self._spawn(self._start(pod))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _start(self, pod: Obj) -> None:
        await asyncio.sleep(self.delay)
        meta = pod["metadata"]
        try:
            await self.api.patch(meta["name"], {"status": ready_status(pod)}, meta["namespace"],
                                 subresource="status")
        except ApiError:
            pass

    async def _remove(self, pod: Obj) -> None:
        meta = pod["metadata"]
        try:
            await self.api.delete(meta["name"], meta["namespace"], grace_period_seconds=0,
                                  preconditions={"uid": meta["uid"]})
        except ApiError:
            pass


class Harness:
    """Controllers (by class) running on a private loop; ``call`` runs a
    coroutine built from the harness's client on that loop."""

    def __init__(self, kubeconfig: str, classes: list[type[Controller]], kubelet: bool = True):
        self.kubeconfig = kubeconfig
        self.classes = classes
        self.kubelet = kubelet
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.client: Client | None = None
        self.controllers: list[Controller] = []
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(30)

    async def _start(self) -> None:
        self.client = Client(load_kubeconfig(self.kubeconfig))
        self.informers = InformerFactory(self.client)
        ctx = Context(self.client, self.informers)
        self.controllers = [cls(ctx) for cls in self.classes]
        for c in self.controllers:
            c.setup()
        if self.kubelet:
            self.fake = FakeKubelet(self.client, self.informers)
        self.informers.start()
        await self.informers.wait_synced(20)
        self._tasks = [asyncio.create_task(c.run()) for c in self.controllers]

    def stop(self) -> None:
        async def _stop() -> None:
            for c in self.controllers:
                await c.queue.shutdown()
            for t in self._tasks:
                t.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self.informers.stop()
            if self.client is not None:
                await self.client.close()

        asyncio.run_coroutine_threadsafe(_stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@contextmanager
def running(kubeconfig: str, classes: list[type[Controller]], kubelet: bool = True
            ) -> Iterator[Harness]:
    h = Harness(kubeconfig, classes, kubelet)
    h.start()
    try:
        yield h
    finally:
        h.stop()
