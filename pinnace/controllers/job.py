"""The job controller: run pods until ``spec.completions`` of them succeed
(or, without completions, until one succeeds and none is left running), at
most ``spec.parallelism`` at a time; fail the Job after ``backoffLimit`` pod
failures or ``activeDeadlineSeconds``; Indexed jobs give each pod a
completion index; a suspended Job has no pods (upstream pkg/controller/job).

Pods are tracked with the batch.kubernetes.io/job-tracking finalizer, as
upstream: a finished pod is first recorded in
``status.uncountedTerminatedPods``, then its finalizer is removed, then it is
moved into the succeeded/failed counters, so a pod deleted at any time is
counted exactly once.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import time
from collections.abc import Callable
from typing import Any

from pinnace.client import ApiError, key_of, split_key

from . import pods as podutil
from .base import Context, Controller, Expectations, controller_ref, owner_reference

Obj = dict[str, Any]

FINALIZER = "batch.kubernetes.io/job-tracking"
INDEX_KEY = "batch.kubernetes.io/job-completion-index"
BURST = 500
UID_INDEX = "job-controller-owner-uid"
ORPHAN_PREFIX = "orphan-pod:"

MSG_BACKOFF = "Job has reached the specified backoff limit"
MSG_DEADLINE = "Job was active longer than specified deadline"
MSG_COMPLETE = "Reached expected number of succeeded pods"


def fmt_time(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def get_condition(obj: Obj, type_: str) -> Obj | None:
    return podutil.condition(obj, type_)


def is_finished(job: Obj) -> str | None:
    """"Complete" or "Failed" once the Job has reached that terminal condition."""
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("type") in ("Complete", "Failed") and c.get("status") == "True":
            return str(c["type"])
    return None


def set_condition(conds: list[Obj], type_: str, status: str, reason: str, message: str,
                  now: str) -> bool:
    """Set a condition in place; True when anything changed."""
    for c in conds:
        if c.get("type") == type_:
            if c.get("status") == status and c.get("reason") == reason and \
                    c.get("message") == message:
                return False
            if c.get("status") != status:
                c["lastTransitionTime"] = now
            c.update(status=status, reason=reason, message=message, lastProbeTime=now)
            return True
    conds.append({"type": type_, "status": status, "reason": reason, "message": message,
                  "lastProbeTime": now, "lastTransitionTime": now})
    return True


# -- completion indexes ("1,3-5,7") -------------------------------------------


def parse_indexes(s: str | None) -> set[int]:
    out: set[int] = set()
    for part in (s or "").split(","):
        part = part.strip()
        if not part:
            continue
        lo, _, hi = part.partition("-")
        try:
            out.update(range(int(lo), int(hi or lo) + 1))
        except ValueError:
            continue
    return out


def format_indexes(idx: set[int]) -> str:
    parts: list[str] = []
    run: list[int] = []
    for i in sorted(idx):
        if run and i == run[-1] + 1:
            run.append(i)
            continue
        if run:
            parts.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
        run = [i]
    if run:
        parts.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
    return ",".join(parts)


def pod_index(pod: Obj) -> int | None:
    meta = pod.get("metadata") or {}
    raw = (meta.get("annotations") or {}).get(INDEX_KEY) or (meta.get("labels") or {}).get(
        INDEX_KEY)
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


def build_pod(job: Obj, index: int | None) -> Obj:
    """The pod the Job runs (for ``index`` when Indexed), with the tracking finalizer."""
    spec = job.get("spec") or {}
    name = job["metadata"]["name"]
    pod = podutil.pod_from_template(spec.get("template") or {}, job, owner_reference(job))
    meta = pod["metadata"]
    meta["finalizers"] = list(meta.get("finalizers") or []) + [FINALIZER]
    if index is not None:
        meta["generateName"] = f"{name}-{index}-"
        meta.setdefault("annotations", {})[INDEX_KEY] = str(index)
        meta.setdefault("labels", {})[INDEX_KEY] = str(index)
        pspec = pod["spec"]
        pspec.setdefault("hostname", f"{name}-{index}")
        env = {"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {
            "fieldPath": f"metadata.labels['{INDEX_KEY}']"}}}
        for key in ("initContainers", "containers"):
            for c in pspec.get(key) or []:
                if not any(e.get("name") == "JOB_COMPLETION_INDEX" for e in c.get("env") or []):
                    c["env"] = [copy.deepcopy(env)] + list(c.get("env") or [])
    return pod


class JobController(Controller):
    name = "job"
    event_source = "job-controller"
    workers = 4

    def __init__(self, ctx: Context):
        super().__init__(ctx)
        self.clock: Callable[[], float] = time.time
        self.expectations = Expectations()
        self.jobs = ctx.informers.informer("batch/v1", "jobs")
        self.pods = ctx.informers.informer("v1", "pods")
        self.job_api = self.client.resource("batch/v1", "jobs")
        self.pod_api = self.client.resource("v1", "pods")
        # Base of the exponential delay before replacing failed pods (upstream: 10 s).
        self.backoff_base = float(ctx.options.get("job_backoff_seconds", 10))
        self._latest: dict[str, Obj] = {}  # job key -> the Job as we last wrote it
        self._counted: dict[str, set[str]] = {}  # job uid -> pod uids already counted
        self._ours: set[str] = set()  # pod uids this controller deleted (not failures)
        self._last_failure: dict[str, float] = {}

    # -- handlers ------------------------------------------------------------

    def setup(self) -> None:
        self.pods.add_index(UID_INDEX, lambda p: [r["uid"] for r in [controller_ref(p)]
                                                  if r and r.get("kind") == "Job"])
        self.jobs.add_handler(self.enqueue, lambda old, new: self.enqueue(new),
                              self._job_deleted)
        self.pods.add_handler(self._pod_added, self._pod_updated, self._pod_deleted)

    def _job_deleted(self, job: Obj) -> None:
        key = key_of(job)
        self.expectations.forget(key)
        self._latest.pop(key, None)
        self._counted.pop(job["metadata"].get("uid", ""), None)
        # Its pods may still carry our finalizer.
        for pod in self.pods.by_index(UID_INDEX, job["metadata"].get("uid", "")):
            self._check_orphan(pod)

    def _job_key(self, pod: Obj) -> str | None:
        ref = controller_ref(pod)
        if ref is None or ref.get("kind") != "Job":
            return None
        key = f"{pod['metadata']['namespace']}/{ref['name']}"
        job = self.jobs.get(key)
        if job is None or job["metadata"].get("uid") != ref.get("uid"):
            self._check_orphan(pod)
            return None
        return key

    def _check_orphan(self, pod: Obj) -> None:
        if FINALIZER in (pod["metadata"].get("finalizers") or []):
            self.queue.add(ORPHAN_PREFIX + key_of(pod))

    def _pod_added(self, pod: Obj) -> None:
        key = self._job_key(pod)
        if key is not None:
            self.expectations.observed_add(key)
            self.queue.add(key)

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        key = self._job_key(new)
        if key is not None:
            if new["metadata"].get("deletionTimestamp") and \
                    not old["metadata"].get("deletionTimestamp"):
                self.expectations.observed_delete(key)
            self.queue.add(key)

    def _pod_deleted(self, pod: Obj) -> None:
        self._ours.discard(pod["metadata"].get("uid", ""))
        key = self._job_key(pod)
        if key is not None:
            if not pod["metadata"].get("deletionTimestamp"):
                self.expectations.observed_delete(key)
            self.queue.add(key)

    # -- reconcile -------------------------------------------------------------

    async def sync(self, key: str) -> None:
        if key.startswith(ORPHAN_PREFIX):
            await self._release_orphan(key[len(ORPHAN_PREFIX):])
            return
        job = self._fresh(key)
        if job is None:
            self.expectations.forget(key)
            return
        uid = job["metadata"]["uid"]
        pods = self.pods.by_index(UID_INDEX, uid)
        if job["metadata"].get("deletionTimestamp") or is_finished(job):
            await self._remove_finalizers([p for p in pods if _has_finalizer(p)])
            return
        job = await self._track(key, job, pods)
        if not self.expectations.satisfied(key):
            return
        await self._reconcile(key, job, pods)

    def _fresh(self, key: str) -> Obj | None:
        """The informer's Job, or the newer copy our last status write returned."""
        job = self.jobs.get(key)
        mine = self._latest.get(key)
        if job is None:
            return None
        if mine is not None and mine["metadata"].get("uid") == job["metadata"].get("uid") and \
                _rv(mine) > _rv(job):
            return mine
        return job

    async def _track(self, key: str, job: Obj, pods: list[Obj]) -> Obj:
        """Count newly finished pods exactly once (record, unfinalize, count)."""
        uid = job["metadata"]["uid"]
        status = job.get("status") or {}
        unc = status.get("uncountedTerminatedPods") or {}
        unc_s, unc_f = list(unc.get("succeeded") or []), list(unc.get("failed") or [])
        counted = self._counted.setdefault(uid, set())
        indexed = (job.get("spec") or {}).get("completionMode") == "Indexed"
        completed = parse_indexes(status.get("completedIndexes"))
        completions = (job.get("spec") or {}).get("completions")
        suspended = bool((job.get("spec") or {}).get("suspend"))
        pending = set(unc_s) | set(unc_f)
        to_unfinalize: list[Obj] = []
        added = False
        for p in pods:
            puid = p["metadata"]["uid"]
            if not _has_finalizer(p) or puid in counted:
                continue
            phase = (p.get("status") or {}).get("phase")
            terminating = bool(p["metadata"].get("deletionTimestamp"))
            if puid in pending:
                to_unfinalize.append(p)
                continue
            if phase == "Succeeded":
                ix = pod_index(p) if indexed else None
                if not indexed or (ix is not None and ix not in completed and
                                   (completions is None or ix < completions)):
                    unc_s.append(puid)
                    if ix is not None:
                        completed.add(ix)
                    added = True
                to_unfinalize.append(p)
            elif phase == "Failed" or (terminating and puid not in self._ours and not suspended):
                unc_f.append(puid)
                added = True
                to_unfinalize.append(p)
            elif terminating:
                to_unfinalize.append(p)  # deleted by us: neither success nor failure
        if added:
            patch: Obj = {"uncountedTerminatedPods": {"succeeded": unc_s or None,
                                                      "failed": unc_f or None}}
            if indexed:
                patch["completedIndexes"] = format_indexes(completed)
            updated = await self._patch_status(key, job, patch)
            if updated is None:
                raise RuntimeError("job vanished while counting pods")
            job = updated
        if to_unfinalize:
            await self._remove_finalizers(to_unfinalize)
        if unc_s or unc_f:
            if unc_f:
                self._last_failure[uid] = self.clock()
            status = job.get("status") or {}
            patch = {"succeeded": int(status.get("succeeded") or 0) + len(unc_s),
                     "failed": int(status.get("failed") or 0) + len(unc_f),
                     "uncountedTerminatedPods": {"succeeded": None, "failed": None}}
            if indexed:
                patch["succeeded"] = len(parse_indexes(status.get("completedIndexes")))
            updated = await self._patch_status(key, job, patch)
            if updated is None:
                raise RuntimeError("job vanished while counting pods")
            job = updated
            counted.update(unc_s)
            counted.update(unc_f)
        # Forget counted pods once their finalizer is gone from the cache.
        live = {p["metadata"]["uid"] for p in pods if _has_finalizer(p)}
        counted.intersection_update(live)
        return job

    async def _reconcile(self, key: str, job: Obj, pods: list[Obj]) -> None:
        spec = job.get("spec") or {}
        status = copy.deepcopy(job.get("status") or {})
        now = self.clock()
        now_s = fmt_time(now)
        conds: list[Obj] = status.setdefault("conditions", [])
        uid = job["metadata"]["uid"]
        active = [p for p in pods if podutil.is_active(p)]
        succeeded = int(status.get("succeeded") or 0)
        failed = int(status.get("failed") or 0)
        completions = spec.get("completions")
        suspended = bool(spec.get("suspend"))
        indexed = spec.get("completionMode") == "Indexed"
        target = _target(job)

        if not suspended and not status.get("startTime"):
            status["startTime"] = now_s
        if target is None and not suspended:
            restarts = sum(podutil.restarts(p) for p in active) \
                if (spec.get("template") or {}).get("spec", {}).get("restartPolicy") == \
                "OnFailure" else 0
            deadline = spec.get("activeDeadlineSeconds")
            started = podutil.parse_time(status.get("startTime"))
            if failed + restarts > int(spec.get("backoffLimit", 6)):
                target = ("FailureTarget", "BackoffLimitExceeded", MSG_BACKOFF)
            elif deadline is not None and started and now - started >= int(deadline):
                target = ("FailureTarget", "DeadlineExceeded", MSG_DEADLINE)
            elif (indexed and completions is not None and
                  len(parse_indexes(status.get("completedIndexes"))) >= completions) or \
                    (not indexed and completions is not None and succeeded >= completions) or \
                    (completions is None and succeeded > 0 and not active):
                target = ("SuccessCriteriaMet", "CompletionsReached", MSG_COMPLETE)
            if target is not None:
                set_condition(conds, target[0], "True", target[1], target[2], now_s)

        if target is not None:
            await self._delete_pods(job, active, events=False)
            active = []
            if not any(_has_finalizer(p) for p in pods if p["metadata"]["uid"] not in
                       self._counted.get(uid, set())):
                final = "Failed" if target[0] == "FailureTarget" else "Complete"
                if set_condition(conds, final, "True", target[1], target[2], now_s):
                    if final == "Complete":
                        status["completionTime"] = now_s
                        self.recorder.event(job, "Normal", "Completed", "Job completed")
                    else:
                        self.recorder.event(job, "Warning", target[1], target[2])
            else:
                self.enqueue_after(key, 1.0)
        elif suspended:
            await self._delete_pods(job, active, events=True)
            active = []
            if set_condition(conds, "Suspended", "True", "JobSuspended", "Job suspended", now_s):
                self.recorder.event(job, "Normal", "Suspended", "Job suspended")
            status.pop("startTime", None)
        else:
            sus = get_condition(job, "Suspended")
            if sus is not None and sus.get("status") == "True":
                set_condition(conds, "Suspended", "False", "JobResumed", "Job resumed", now_s)
                self.recorder.event(job, "Normal", "Resumed", "Job resumed")
                status["startTime"] = now_s
            active = await self._manage(key, job, active, succeeded, now)
            deadline = spec.get("activeDeadlineSeconds")
            if deadline is not None:
                left = podutil.parse_time(status.get("startTime")) + int(deadline) - now
                self.enqueue_after(key, max(left, 0) + 0.05)

        status["active"] = len(active)
        status["ready"] = sum(1 for p in active if podutil.is_ready(p))
        status["terminating"] = sum(
            1 for p in pods if p["metadata"].get("deletionTimestamp") and
            (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed"))
        status["succeeded"] = succeeded
        status["failed"] = failed
        status.setdefault("uncountedTerminatedPods", {})
        if not conds:
            status.pop("conditions")
        old = job.get("status") or {}
        keys = ("active", "ready", "terminating", "succeeded", "failed", "startTime",
                "completionTime", "conditions", "uncountedTerminatedPods")
        if any(old.get(k) != status.get(k) for k in keys):
            patch = {k: status.get(k) for k in keys}
            await self._patch_status(key, job, patch)

    async def _manage(self, key: str, job: Obj, active: list[Obj], succeeded: int,
                      now: float) -> list[Obj]:
        spec = job.get("spec") or {}
        completions = spec.get("completions")
        parallelism = int(spec.get("parallelism", 1) or 0)
        indexes: list[int | None] = []
        if spec.get("completionMode") == "Indexed" and completions is not None:
            done = parse_indexes((job.get("status") or {}).get("completedIndexes"))
            seen: set[int] = set()
            extra: list[Obj] = []
            for p in podutil.deletion_order(active)[::-1]:
                ix = pod_index(p)
                if ix is None or ix in seen or ix in done or ix >= completions:
                    extra.append(p)
                else:
                    seen.add(ix)
            keep = [p for p in active if p not in extra]
            over = max(len(keep) - parallelism, 0)
            victims = extra + podutil.deletion_order(keep)[:over]
            if victims:
                await self._delete_pods(job, victims, events=True, key=key)
                return [p for p in active if p not in victims]
            missing = [i for i in range(completions) if i not in done and i not in seen]
            indexes = list(missing[:max(parallelism - len(keep), 0)])
        else:
            if completions is None:
                want = 0 if succeeded > 0 else parallelism
            else:
                want = max(min(parallelism, completions - succeeded), 0)
            diff = len(active) - want
            if diff > 0:
                victims = podutil.deletion_order(active)[:min(diff, BURST)]
                await self._delete_pods(job, victims, events=True, key=key)
                return [p for p in active if p not in victims]
            indexes = [None] * min(-diff, BURST)
        if not indexes:
            return active
        delay = self._backoff_left(job, now)
        if delay > 0:
            self.enqueue_after(key, delay)
            return active
        await self._create_pods(key, job, indexes[:BURST])
        return active

    def _backoff_left(self, job: Obj, now: float) -> float:
        failed = int((job.get("status") or {}).get("failed") or 0)
        last = self._last_failure.get(job["metadata"]["uid"])
        if not failed or last is None or self.backoff_base <= 0:
            return 0.0
        wait = min(self.backoff_base * 2 ** (failed - 1), 360.0)
        return max(last + wait - now, 0.0)

    async def _create_pods(self, key: str, job: Obj, indexes: list[int | None]) -> None:
        self.expectations.expect(key, adds=len(indexes))
        ns = job["metadata"]["namespace"]
        done = 0
        batch = 1
        while done < len(indexes):
            chunk = indexes[done:done + batch]
            results = await asyncio.gather(*(self.pod_api.create(build_pod(job, i), ns)
                                             for i in chunk), return_exceptions=True)
            failures = [r for r in results if isinstance(r, BaseException)]
            for r in results:
                if isinstance(r, dict):
                    self.recorder.event(job, "Normal", "SuccessfulCreate",
                                        f"Created pod: {r['metadata']['name']}")
            done += len(chunk)
            if failures:
                for _ in range(len(indexes) - done + len(failures)):
                    self.expectations.observed_add(key)
                err = failures[0]
                msg = err.status.get("message", str(err)) if isinstance(err, ApiError) \
                    else str(err)
                self.recorder.event(job, "Warning", "FailedCreate", f"Error creating: {msg}")
                raise RuntimeError(f"creating pods failed: {msg}")
            batch *= 2

    async def _delete_pods(self, job: Obj, victims: list[Obj], events: bool,
                           key: str | None = None) -> None:
        if key is not None:
            self.expectations.expect(key, deletes=len(victims))
        for pod in victims:
            self._ours.add(pod["metadata"]["uid"])
            try:
                await self.pod_api.delete(pod["metadata"]["name"], pod["metadata"]["namespace"])
                if events:
                    self.recorder.event(job, "Normal", "SuccessfulDelete",
                                        f"Deleted pod: {pod['metadata']['name']}")
            except ApiError as e:
                if key is not None:
                    self.expectations.observed_delete(key)
                if not e.not_found:
                    raise

    async def _remove_finalizers(self, pods: list[Obj]) -> None:
        async def one(pod: Obj) -> None:
            fins = [f for f in pod["metadata"].get("finalizers") or [] if f != FINALIZER]
            body = [{"op": "test", "path": "/metadata/resourceVersion",
                     "value": pod["metadata"]["resourceVersion"]},
                    {"op": "replace", "path": "/metadata/finalizers", "value": fins}]
            try:
                await self.pod_api.patch(pod["metadata"]["name"], body,
                                         pod["metadata"]["namespace"], type="json")
            except ApiError as e:
                if e.not_found:
                    return
                if e.status.get("code") in (409, 422) or e.conflict:
                    fresh = await self.pod_api.get(pod["metadata"]["name"],
                                                   pod["metadata"]["namespace"])
                    if FINALIZER in (fresh["metadata"].get("finalizers") or []):
                        await one(fresh)
                    return
                raise
        await asyncio.gather(*(one(p) for p in pods))

    async def _release_orphan(self, pod_key: str) -> None:
        pod = self.pods.get(pod_key)
        if pod is None or not _has_finalizer(pod):
            return
        ref = controller_ref(pod)
        if ref is not None and ref.get("kind") == "Job":
            ns = pod["metadata"]["namespace"]
            job = self.jobs.get(f"{ns}/{ref['name']}")
            if job is not None and job["metadata"].get("uid") == ref.get("uid") and \
                    not is_finished(job):
                return
            if job is None:
                try:
                    live = await self.job_api.get(ref["name"], ns)
                    if live["metadata"].get("uid") == ref.get("uid") and not is_finished(live):
                        return
                except ApiError as e:
                    if not e.not_found:
                        raise
        await self._remove_finalizers([pod])

    async def _patch_status(self, key: str, job: Obj, patch: Obj) -> Obj | None:
        ns, name = split_key(key)
        try:
            out = await self.job_api.patch(name, {"status": patch}, ns, subresource="status")
        except ApiError as e:
            if e.not_found:
                return None
            raise
        self._latest[key] = out
        return out  # type: ignore[no-any-return]


def _has_finalizer(pod: Obj) -> bool:
    return FINALIZER in (pod["metadata"].get("finalizers") or [])


def _rv(obj: Obj) -> int:
    try:
        return int(obj["metadata"].get("resourceVersion") or 0)
    except ValueError:
        return 0


def _target(job: Obj) -> tuple[str, str, str] | None:
    for type_ in ("FailureTarget", "SuccessCriteriaMet"):
        c = get_condition(job, type_)
        if c is not None and c.get("status") == "True":
            return type_, str(c.get("reason", "")), str(c.get("message", ""))
    return None


CONTROLLERS = {"job": JobController}
