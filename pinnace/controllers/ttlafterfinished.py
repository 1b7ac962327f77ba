"""The TTL-after-finished controller: delete a finished Job (Complete or
Failed) ``spec.ttlSecondsAfterFinished`` seconds after it finished, with
background propagation so the garbage collector removes its pods
(upstream pkg/controller/ttlafterfinished)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pinnace.client import ApiError, split_key

from . import pods as podutil
from .base import Context, Controller

Obj = dict[str, Any]


def finish_time(job: Obj) -> float | None:
    """When the Job reached Complete or Failed, or None if it has not."""
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("type") in ("Complete", "Failed") and c.get("status") == "True":
            return podutil.parse_time(c.get("lastTransitionTime")) or None
    return None


class TTLAfterFinishedController(Controller):
    name = "ttl-after-finished"
    event_source = "ttl-after-finished-controller"
    workers = 2

    def __init__(self, ctx: Context):
        super().__init__(ctx)
        self.clock: Callable[[], float] = ctx.clock.time
        self.jobs = ctx.informers.informer("batch/v1", "jobs")
        self.job_api = self.client.resource("batch/v1", "jobs")

    def setup(self) -> None:
        self.jobs.add_handler(self._changed, lambda old, new: self._changed(new))

    def _changed(self, job: Obj) -> None:
        if (job.get("spec") or {}).get("ttlSecondsAfterFinished") is not None and \
                not job["metadata"].get("deletionTimestamp") and finish_time(job) is not None:
            self.enqueue(job)

    async def sync(self, key: str) -> None:
        job = self.jobs.get(key)
        if job is None or job["metadata"].get("deletionTimestamp"):
            return
        ttl = (job.get("spec") or {}).get("ttlSecondsAfterFinished")
        finished = finish_time(job)
        if ttl is None or finished is None:
            return
        left = finished + int(ttl) - self.clock()
        if left > 0:
            self.enqueue_after(key, left)
            return
        ns, name = split_key(key)
        # Re-check the live object: its TTL may have been changed since the cache saw it.
        try:
            live = await self.job_api.get(name, ns)
        except ApiError as e:
            if e.not_found:
                return
            raise
        ttl = (live.get("spec") or {}).get("ttlSecondsAfterFinished")
        finished = finish_time(live)
        if ttl is None or finished is None:
            return
        left = finished + int(ttl) - self.clock()
        if left > 0:
            self.enqueue_after(key, left)
            return
        try:
            await self.job_api.delete(name, ns, propagation_policy="Background",
                                      preconditions={"uid": live["metadata"]["uid"]})
        except ApiError as e:
            if not (e.not_found or e.conflict):
                raise


CONTROLLERS = {"ttl-after-finished": TTLAfterFinishedController}
