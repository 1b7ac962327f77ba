"""The pod garbage collector (upstream pkg/controller/podgc), run every
``podgc_period`` seconds (upstream: 20 s):
- terminated pods (Succeeded/Failed) beyond ``terminated_pod_gc_threshold``
  (default 12500; 0 or less disables this) are deleted, oldest first;
- pods bound to a node that no longer exists are marked Failed and force
  deleted (grace period 0), after the node has been missing for
  ``podgc_quarantine`` seconds (upstream: 40 s) and a live GET agrees;
- unscheduled pods that are terminating are force deleted.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from typing import Any

from pinnace.client import ApiError

from . import pods as podutil
from .base import Context, Controller

Obj = dict[str, Any]

DEFAULT_THRESHOLD = 12500


def terminated(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


class PodGCController(Controller):
    name = "podgc"
    event_source = "pod-garbage-collector"
    workers = 1

    def __init__(self, ctx: Context):
        super().__init__(ctx)
        self.clock: Callable[[], float] = ctx.clock.monotonic
        self.pods = ctx.informers.informer("v1", "pods")
        self.nodes = ctx.informers.informer("v1", "nodes")
        self.pod_api = self.client.resource("v1", "pods")
        self.node_api = self.client.resource("v1", "nodes")
        self.threshold = int(ctx.options.get("terminated_pod_gc_threshold", DEFAULT_THRESHOLD))
        self.period = float(ctx.options.get("podgc_period", 20))
        self.quarantine = float(ctx.options.get("podgc_quarantine", 40))
        self._missing_since: dict[str, float] = {}

    async def run(self) -> None:
        while True:
            try:
                await self.gc()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - try again next period
                self.log.warning("pod gc pass failed: %s", e)
            await self.ctx.clock.sleep(self.period)

    async def sync(self, key: str) -> None:  # driven by run(), not by the queue
        await self.gc()

    async def gc(self) -> None:
        pods = self.pods.objects()
        if self.threshold > 0:
            await self.gc_terminated(pods)
        await self.gc_orphaned(pods)
        await self.gc_unscheduled_terminating(pods)

    async def gc_terminated(self, pods: list[Obj]) -> None:
        done = [p for p in pods if terminated(p) and not p["metadata"].get("deletionTimestamp")]
        excess = len(done) - self.threshold
        if excess <= 0:
            return
        done.sort(key=lambda p: (podutil.parse_time(p["metadata"].get("creationTimestamp")),
                                 p["metadata"]["name"]))
        await self._each(done[:excess], self._force_delete)

    async def gc_orphaned(self, pods: list[Obj]) -> None:
        known = {n["metadata"]["name"] for n in self.nodes.objects()}
        now = self.clock()
        bound = {p["spec"]["nodeName"] for p in pods if (p.get("spec") or {}).get("nodeName")}
        for name in list(self._missing_since):
            if name in known or name not in bound:
                del self._missing_since[name]
        gone: set[str] = set()
        for name in bound - known:
            since = self._missing_since.setdefault(name, now)
            if now - since < self.quarantine:
                continue
            try:
                await self.node_api.get(name)
                continue  # the informer is behind: the node is there
            except ApiError as e:
                if not e.not_found:
                    raise
            gone.add(name)
        victims = [p for p in pods if (p.get("spec") or {}).get("nodeName") in gone]
        await self._each(victims, self._fail_and_delete)

    async def gc_unscheduled_terminating(self, pods: list[Obj]) -> None:
        victims = [p for p in pods if p["metadata"].get("deletionTimestamp") and
                   not (p.get("spec") or {}).get("nodeName")]
        await self._each(victims, self._force_delete)

    async def _each(self, pods: list[Obj], fn: Callable[[Obj], Any]) -> None:
        sem = asyncio.Semaphore(20)

        async def one(p: Obj) -> None:
            async with sem:
                await fn(p)
        await asyncio.gather(*(one(p) for p in pods))

    async def _fail_and_delete(self, pod: Obj) -> None:
        if not terminated(pod):
            now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            cond = {"type": "DisruptionTarget", "status": "True", "reason": "DeletionByPodGC",
                    "message": "PodGC: node no longer exists", "lastTransitionTime": now}
            conds = [c for c in (pod.get("status") or {}).get("conditions") or []
                     if c.get("type") != "DisruptionTarget"] + [cond]
            try:
                await self.pod_api.patch(pod["metadata"]["name"], {"status": {
                    "phase": "Failed", "conditions": conds}}, pod["metadata"]["namespace"],
                    subresource="status")
            except ApiError as e:
                if e.not_found:
                    return
                self.log.info("marking %s failed: %s", pod["metadata"]["name"], e)
        await self._force_delete(pod)

    async def _force_delete(self, pod: Obj) -> None:
        meta = pod["metadata"]
        try:
            await self.pod_api.delete(meta["name"], meta["namespace"], grace_period_seconds=0,
                                      preconditions={"uid": meta["uid"]})
            self.log.info("deleted pod %s/%s", meta["namespace"], meta["name"])
        except ApiError as e:
            if not (e.not_found or e.conflict):
                raise


CONTROLLERS = {"podgc": PodGCController}
