"""The cronjob controller: create a Job from ``spec.jobTemplate`` each time
the schedule fires (in ``spec.timeZone``, else the controller's local zone),
honouring suspend, startingDeadlineSeconds and the concurrency policy; keep
``status.active`` / lastScheduleTime / lastSuccessfulTime; delete finished
Jobs beyond the history limits (upstream pkg/controller/cronjob, v2).

The clock is injectable (``controller.clock``) so tests can move time
instead of waiting for minutes to pass.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Callable
from typing import Any

from pinnace.client import ApiError, key_of, split_key

from . import cron_schedule
from . import pods as podutil
from .base import Context, Controller, controller_ref, owner_reference

Obj = dict[str, Any]

SCHEDULED_TS = "batch.kubernetes.io/cronjob-scheduled-timestamp"
MAX_MISSED = 100
OWNER_INDEX = "cronjob-controller-owner-uid"


def rfc3339(t: dt.datetime) -> str:
    """Go's time.RFC3339 in the datetime's own zone ("Z" for UTC)."""
    s = t.replace(microsecond=0).isoformat()
    return s[:-6] + "Z" if s.endswith("+00:00") else s


def utc(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_ts(s: str | None) -> dt.datetime | None:
    t = podutil.parse_time(s)
    return dt.datetime.fromtimestamp(t, dt.UTC) if t else None


def job_name(cronjob: str, scheduled: dt.datetime) -> str:
    """``<cronjob>-<minutes since the epoch>``, as upstream names them."""
    return f"{cronjob}-{int(scheduled.timestamp()) // 60}"


def job_finished(job: Obj) -> str | None:
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("type") in ("Complete", "Failed") and c.get("status") == "True":
            return str(c["type"])
    return None


def build_job(cj: Obj, scheduled: dt.datetime) -> Obj:
    tmpl = (cj.get("spec") or {}).get("jobTemplate") or {}
    tmeta = tmpl.get("metadata") or {}
    annotations = dict(tmeta.get("annotations") or {})
    annotations[SCHEDULED_TS] = rfc3339(scheduled)
    meta: Obj = {"name": job_name(cj["metadata"]["name"], scheduled),
                 "namespace": cj["metadata"]["namespace"],
                 "annotations": annotations,
                 "ownerReferences": [owner_reference(
                     {"apiVersion": "batch/v1", "kind": "CronJob", **cj})]}
    if tmeta.get("labels"):
        meta["labels"] = dict(tmeta["labels"])
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta,
            "spec": copy.deepcopy(tmpl.get("spec") or {})}


def job_ref(job: Obj) -> Obj:
    meta = job["metadata"]
    return {"apiVersion": "batch/v1", "kind": "Job", "name": meta["name"],
            "namespace": meta["namespace"], "uid": meta["uid"],
            "resourceVersion": meta.get("resourceVersion")}


class CronJobController(Controller):
    name = "cronjob"
    event_source = "cronjob-controller"
    workers = 2

    def __init__(self, ctx: Context):
        super().__init__(ctx)
        self.clock: Callable[[], float] = ctx.clock.time
        self.cronjobs = ctx.informers.informer("batch/v1", "cronjobs")
        self.jobs = ctx.informers.informer("batch/v1", "jobs")
        self.cj_api = self.client.resource("batch/v1", "cronjobs")
        self.job_api = self.client.resource("batch/v1", "jobs")
        self._latest: dict[str, Obj] = {}

    def setup(self) -> None:
        self.jobs.add_index(OWNER_INDEX, lambda j: [r["uid"] for r in [controller_ref(j)]
                                                   if r and r.get("kind") == "CronJob"])
        self.cronjobs.add_handler(self.enqueue, self._cj_updated, self._cj_deleted)
        self.jobs.add_handler(self._job_changed, lambda old, new: self._job_changed(new),
                              self._job_changed)

    def _cj_updated(self, old: Obj, new: Obj) -> None:
        self.enqueue(new)

    def _cj_deleted(self, cj: Obj) -> None:
        self._latest.pop(key_of(cj), None)

    def _job_changed(self, job: Obj) -> None:
        ref = controller_ref(job)
        if ref is not None and ref.get("kind") == "CronJob":
            self.queue.add(f"{job['metadata']['namespace']}/{ref['name']}")

    def _fresh(self, key: str) -> Obj | None:
        cj = self.cronjobs.get(key)
        mine = self._latest.get(key)
        if cj is None:
            return None
        if mine is not None and mine["metadata"].get("uid") == cj["metadata"].get("uid") and \
                int(mine["metadata"]["resourceVersion"]) > int(cj["metadata"]["resourceVersion"]):
            return mine
        return cj

    # -- reconcile ---------------------------------------------------------------

    async def sync(self, key: str) -> None:
        cj = self._fresh(key)
        if cj is None:
            return
        now = dt.datetime.fromtimestamp(self.clock(), dt.UTC)
        jobs = self.jobs.by_index(OWNER_INDEX, cj["metadata"]["uid"])
        status = copy.deepcopy(cj.get("status") or {})
        await self._reconcile_active(cj, jobs, status)
        delay = None
        if not cj["metadata"].get("deletionTimestamp"):
            delay = await self._schedule(cj, jobs, status, now)
        await self._cleanup(cj, jobs, status)
        await self._write_status(key, cj, status)
        if delay is not None:
            self.enqueue_after(key, delay)

    async def _reconcile_active(self, cj: Obj, jobs: list[Obj], status: Obj) -> None:
        active: list[Obj] = list(status.get("active") or [])
        by_uid = {r.get("uid"): r for r in active}
        for job in jobs:
            uid = job["metadata"]["uid"]
            finished = job_finished(job)
            if uid not in by_uid and not finished:
                self.recorder.event(cj, "Warning", "UnexpectedJob",
                                    f"Saw a job that the controller did not create or forgot: "
                                    f"{job['metadata']['name']}")
                active.append(job_ref(job))
                by_uid[uid] = active[-1]
            elif uid in by_uid and finished:
                self.recorder.event(cj, "Normal", "SawCompletedJob",
                                    f"Saw completed job: {job['metadata']['name']}, condition: "
                                    f"{finished}")
                active = [r for r in active if r.get("uid") != uid]
                by_uid.pop(uid)
            if finished == "Complete":
                done = parse_ts((job.get("status") or {}).get("completionTime"))
                last = parse_ts(status.get("lastSuccessfulTime"))
                if done is not None and (last is None or done > last):
                    status["lastSuccessfulTime"] = utc(done)
        known = {j["metadata"]["uid"] for j in jobs}
        for ref in list(active):
            if ref.get("uid") in known:
                continue
            try:
                live = await self.job_api.get(ref["name"], cj["metadata"]["namespace"])
                if live["metadata"]["uid"] == ref.get("uid"):
                    continue
            except ApiError as e:
                if not e.not_found:
                    raise
            self.recorder.event(cj, "Normal", "MissingJob",
                                f"Active job went missing: {ref['name']}")
            active.remove(ref)
        status["active"] = active

    async def _schedule(self, cj: Obj, jobs: list[Obj], status: Obj,
                        now: dt.datetime) -> float | None:
        """Start the Job that is due, if any; return seconds until the next check."""
        spec = cj.get("spec") or {}
        if spec.get("suspend"):
            return None
        raw = str(spec.get("schedule") or "")
        tz_name = spec.get("timeZone")
        if "TZ" in raw:
            self.recorder.event(cj, "Warning", "UnsupportedSchedule",
                                f"CRON_TZ or TZ used in schedule {raw!r} is not officially "
                                "supported, see https://kubernetes.io/docs/concepts/workloads/"
                                "controllers/cron-jobs/ for more details")
            return None
        try:
            tz = cron_schedule.zone(tz_name) if tz_name else cron_schedule.local_zone()
        except cron_schedule.CronError as e:
            self.recorder.event(cj, "Warning", "UnknownTimeZone",
                                f"invalid timeZone: {tz_name!r}: {e}")
            return None
        try:
            sched = cron_schedule.parse(raw)
        except cron_schedule.CronError as e:
            self.recorder.event(cj, "Warning", "InvalidSchedule",
                                f"invalid schedule: {raw} : {e}")
            return None
        earliest = parse_ts(status.get("lastScheduleTime")) or \
            parse_ts(cj["metadata"].get("creationTimestamp")) or now
        sds = spec.get("startingDeadlineSeconds")
        if sds is not None:
            earliest = max(earliest, now - dt.timedelta(seconds=int(sds)))
        missed = sched.fire_times(earliest, now, tz, MAX_MISSED + 1)
        if len(missed) > MAX_MISSED:
            self.recorder.event(cj, "Warning", "TooManyMissedTimes",
                                f"too many missed start times: > {MAX_MISSED}. Set or decrease "
                                ".spec.startingDeadlineSeconds or check clock skew")
            recent = sched.fire_times(max(missed[-1], now - dt.timedelta(days=8)), now, tz,
                                      20000)
            missed = (missed + recent)[-1:]
        nxt = sched.next(now, tz)
        wait = (nxt - now).total_seconds() + 0.1 if nxt is not None else None
        if not missed:
            return wait
        scheduled = missed[-1]
        if sds is not None and scheduled + dt.timedelta(seconds=int(sds)) < now:
            self.recorder.event(cj, "Warning", "MissSchedule",
                                "Missed scheduled time to start a job: " +
                                scheduled.astimezone(dt.UTC).strftime("%a, %d %b %Y %H:%M:%S %z"))
            return wait
        name = job_name(cj["metadata"]["name"], scheduled)
        active: list[Obj] = status["active"]
        if any(r.get("name") == name for r in active) or \
                any(j["metadata"]["name"] == name for j in jobs):
            # Already started (our status write may have been lost): just record it.
            last = parse_ts(status.get("lastScheduleTime"))
            if last is None or last < scheduled:
                status["lastScheduleTime"] = utc(scheduled)
            return wait
        policy = spec.get("concurrencyPolicy") or "Allow"
        if policy == "Forbid" and active:
            self.recorder.event(cj, "Normal", "JobAlreadyActive",
                                "Not starting job because prior execution is running and "
                                "concurrency policy is Forbid")
            return wait
        if policy == "Replace":
            for ref in list(active):
                try:
                    await self.job_api.delete(ref["name"], cj["metadata"]["namespace"],
                                              propagation_policy="Background")
                except ApiError as e:
                    if not e.not_found:
                        raise
                self.recorder.event(cj, "Normal", "SuccessfulDelete",
                                    f"Deleted job {ref['name']}")
                active.remove(ref)
        body = build_job(cj, scheduled.astimezone(tz))
        try:
            made = await self.job_api.create(body, cj["metadata"]["namespace"])
            self.recorder.event(cj, "Normal", "SuccessfulCreate", f"Created job {name}")
        except ApiError as e:
            if e.status.get("reason") != "AlreadyExists":
                self.recorder.event(cj, "Warning", "FailedCreate",
                                    f"Error creating job: {e.status.get('message', e)}")
                raise
            made = await self.job_api.get(name, cj["metadata"]["namespace"])
            owner = controller_ref(made)
            if owner is None or owner.get("uid") != cj["metadata"]["uid"]:
                return wait
            if job_finished(made):
                status["lastScheduleTime"] = utc(scheduled)
                return wait
        active.append(job_ref(made))
        status["lastScheduleTime"] = utc(scheduled)
        return wait

    async def _cleanup(self, cj: Obj, jobs: list[Obj], status: Obj) -> None:
        spec = cj.get("spec") or {}
        active_uids = {r.get("uid") for r in status.get("active") or []}
        for kind, limit_key in (("Complete", "successfulJobsHistoryLimit"),
                                ("Failed", "failedJobsHistoryLimit")):
            limit = spec.get(limit_key)
            if limit is None:
                continue
            done = [j for j in jobs if job_finished(j) == kind and
                    j["metadata"]["uid"] not in active_uids and
                    not j["metadata"].get("deletionTimestamp")]
            done.sort(key=lambda j: ((j.get("status") or {}).get("startTime") or
                                     j["metadata"].get("creationTimestamp") or "",
                                     j["metadata"]["name"]))
            for job in done[:max(len(done) - int(limit), 0)]:
                try:
                    await self.job_api.delete(job["metadata"]["name"],
                                              job["metadata"]["namespace"],
                                              propagation_policy="Background")
                except ApiError as e:
                    if not e.not_found:
                        raise
                    continue
                self.recorder.event(cj, "Normal", "SuccessfulDelete",
                                    f"Deleted job {job['metadata']['name']}")

    async def _write_status(self, key: str, cj: Obj, status: Obj) -> None:
        old = cj.get("status") or {}
        keys = ("active", "lastScheduleTime", "lastSuccessfulTime")
        if all((old.get(k) or None) == (status.get(k) or None) for k in keys):
            return
        ns, name = split_key(key)
        patch = {"status": {k: status.get(k) or None for k in keys}}
        try:
            self._latest[key] = await self.cj_api.patch(name, patch, ns, subresource="status")
        except ApiError as e:
            if not e.not_found:
                raise


CONTROLLERS = {"cronjob": CronJobController}
