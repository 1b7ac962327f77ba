"""The job controller: run pods until ``spec.completions`` of them succeed
(or, without completions, until one succeeds and none is left running), at
most ``spec.parallelism`` at a time; fail the Job after ``backoffLimit`` pod
failures or ``activeDeadlineSeconds``; Indexed jobs give each pod a
completion index; a suspended Job has no pods (upstream pkg/controller/job).

Beyond counting, a Job may carry policies (the pure parts are in jobpolicy):
a pod failure policy that fails the Job, fails an index, ignores or counts a
failed pod; a backoff limit per index with a cap on failed indexes; a success
policy met by some indexes; and a pod replacement policy that waits for a
terminating pod to be Failed before replacing it.

Pods are tracked with the batch.kubernetes.io/job-tracking finalizer, as
upstream: a finished pod is first recorded in
``status.uncountedTerminatedPods``, then its finalizer is removed, then it is
moved into the succeeded/failed counters, so a pod deleted at any time is
counted exactly once. A Job finishes in two steps: the interim condition
(FailureTarget or SuccessCriteriaMet) is written with the first of those
status writes, and Failed or Complete follows once no pod is uncounted or
terminating.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from pinnace.client import ApiError, key_of, split_key

from . import jobpolicy as jp
from . import pods as podutil
from .base import Context, Controller, Expectations, controller_ref, owner_reference
from .jobpolicy import INDEX_KEY, format_indexes, parse_indexes, pod_index

Obj = dict[str, Any]

__all__ = ["FINALIZER", "INDEX_KEY", "JobController", "build_pod", "format_indexes",
           "parse_indexes", "pod_index"]

FINALIZER = jp.FINALIZER
CONTROLLER_NAME = "kubernetes.io/job-controller"
BURST = 500  # pods created or deleted per sync (upstream MaxPodCreateDeletePerSync)
MAX_UNCOUNTED = 500  # uids kept in uncountedTerminatedPods at once (about 20 KB)
UID_INDEX = "job-controller-owner-uid"
ORPHAN_PREFIX = "orphan-pod:"

MSG_BACKOFF = "Job has reached the specified backoff limit"
MSG_DEADLINE = "Job was active longer than specified deadline"
MSG_COMPLETE = "Reached expected number of succeeded pods"
MSG_MAX_FAILED_INDEXES = "Job has exceeded the specified maximal number of failed indexes"
MSG_FAILED_INDEXES = "Job has failed indexes"

# The status fields this controller owns; a write sends the ones that changed.
STATUS_KEYS = ("conditions", "startTime", "completionTime", "active", "ready", "terminating",
               "succeeded", "failed", "completedIndexes", "failedIndexes",
               "uncountedTerminatedPods")
# Counters upstream leaves out at zero (ready and terminating are shown as 0).
OMITTED_WHEN_ZERO = ("active", "succeeded", "failed")


class Cond(NamedTuple):
    type: str
    reason: str
    message: str


def fmt_time(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def get_condition(obj: Obj, type_: str) -> Obj | None:
    return podutil.condition(obj, type_)


def _true(status: Obj, type_: str) -> Obj | None:
    for c in status.get("conditions") or []:
        if c.get("type") == type_ and c.get("status") == "True":
            return c  # type: ignore[no-any-return]
    return None


def is_finished(job: Obj) -> str | None:
    """"Complete" or "Failed" once the Job has reached that terminal condition."""
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("type") in ("Complete", "Failed") and c.get("status") == "True":
            return str(c["type"])
    return None


def set_condition(conds: list[Obj], type_: str, status: str, reason: str, message: str,
                  now: str) -> bool:
    """Set a condition in place (a changed one is rewritten whole, as upstream);
    a condition that does not exist yet is not added as False. True when
    anything changed."""
    new = {"type": type_, "status": status, "reason": reason, "message": message,
           "lastProbeTime": now, "lastTransitionTime": now}
    for i, c in enumerate(conds):
        if c.get("type") == type_:
            if c.get("status") == status and c.get("reason") == reason and \
                    c.get("message") == message:
                return False
            conds[i] = new
            return True
    if status == "False":
        return False
    conds.append(new)
    return True


def build_pod(job: Obj, index: int | None, failures: tuple[int, int] | None = None) -> Obj:
    """The pod the Job runs (for ``index`` when Indexed), with the tracking
    finalizer; ``failures`` are the (counted, ignored) failures of the index so
    far, kept on its pods when the Job has a backoff limit per index."""
    spec = job.get("spec") or {}
    name = job["metadata"]["name"]
    pod = podutil.pod_from_template(spec.get("template") or {}, job, owner_reference(job))
    meta = pod["metadata"]
    meta["finalizers"] = list(meta.get("finalizers") or []) + [FINALIZER]
    if index is not None:
        meta["generateName"] = f"{name}-{index}-"
        ann = meta.setdefault("annotations", {})
        ann[INDEX_KEY] = str(index)
        if failures is not None:
            ann[jp.FAILURE_COUNT_KEY] = str(failures[0])
            if failures[1] > 0:
                ann[jp.IGNORED_COUNT_KEY] = str(failures[1])
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


@dataclass
class _Sync:
    """What one sync of a Job has worked out so far (upstream's syncJobCtx)."""

    key: str
    job: Obj  # the Job as last read or written
    status: Obj  # the status being built
    pods: list[Obj]
    expected_rm: set[str]  # pods whose finalizer removal is not yet in the cache
    unc_s: list[str] = field(default_factory=list)
    unc_f: list[str] = field(default_factory=list)
    active: list[Obj] = field(default_factory=list)
    active_count: int = 0
    ready: int = 0
    terminating: int = 0
    succeeded: int = 0
    failed: int = 0
    prev_idx: set[int] = field(default_factory=set)
    succ_idx: set[int] = field(default_factory=set)
    failed_idx: set[int] | None = None
    delayed: dict[int, Obj] = field(default_factory=dict)  # index -> failed pod kept
    finished: Cond | None = None
    backoff: tuple[int, float | None] | None = None  # to keep once the status is written


class JobController(Controller):
    name = "job"
    event_source = "job-controller"
    workers = 4

    def __init__(self, ctx: Context):
        super().__init__(ctx)
        self.clock: Callable[[], float] = ctx.clock.time
        self.expectations = Expectations()
        self.jobs = ctx.informers.informer("batch/v1", "jobs")
        self.pods = ctx.informers.informer("v1", "pods")
        self.job_api = self.client.resource("batch/v1", "jobs")
        self.pod_api = self.client.resource("v1", "pods")
        # Delay before replacing failed pods: base doubling per failure, capped
        # (upstream: 10 s and 10 min).
        self.backoff_base = float(ctx.options.get("job_backoff_seconds", 10))
        self.backoff_max = float(ctx.options.get("job_backoff_max_seconds", 600))
        self._latest: dict[str, Obj] = {}  # job key -> the Job as we last wrote it
        self._rm_expected: dict[str, set[str]] = {}  # job uid -> pod uids being unfinalized
        # job key -> (pod failures since the last success, when the last one failed)
        self._backoff: dict[str, tuple[int, float | None]] = {}

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
        self._backoff.pop(key, None)
        self._rm_expected.pop(job["metadata"].get("uid", ""), None)
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
            self._backoff.pop(key, None)
            return
        if _managed_elsewhere(job):
            return
        uid = job["metadata"]["uid"]
        pods = self.pods.by_index(UID_INDEX, uid)
        if job["metadata"].get("deletionTimestamp") or is_finished(job):
            self._backoff.pop(key, None)
            errors = await self._remove_finalizers([p for p in pods if _has_finalizer(p)])
            for e in errors:
                if e is not None:
                    raise e
            return
        if (job.get("spec") or {}).get("completionMode") not in (None, "NonIndexed", "Indexed"):
            self.recorder.event(job, "Warning", "UnknownCompletionMode",
                                "Skipped Job sync because completion mode is unknown")
            return
        # Checked before anything is counted, so a pod created meanwhile waits for the next sync.
        satisfied = self.expectations.satisfied(key)
        expected = self._rm_expected.setdefault(uid, set())
        expected.intersection_update(p["metadata"]["uid"] for p in pods if _has_finalizer(p))
        await self._sync_job(key, job, pods, expected, satisfied)

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

    async def _sync_job(self, key: str, job: Obj, pods: list[Obj], expected: set[str],
                        satisfied: bool) -> None:
        spec = job.get("spec") or {}
        now = self.clock()
        status = copy.deepcopy(job.get("status") or {})
        unc = status.get("uncountedTerminatedPods") or {}
        st = _Sync(key, job, status, pods, expected, unc_s=list(unc.get("succeeded") or []),
                   unc_f=list(unc.get("failed") or []))
        suspended = bool(spec.get("suspend"))
        indexed = jp.is_indexed(job)
        completions = spec.get("completions")
        comp = int(completions or 0)

        new_s, new_f = self._new_finished(st)
        st.succeeded = int(status.get("succeeded") or 0) + len(new_s) + len(st.unc_s)
        st.failed = int(status.get("failed") or 0) + len(st.unc_f) + sum(
            1 for p in new_f if jp.counts_as_failure(job, p))
        if not status.get("startTime") and not suspended:
            status["startTime"] = fmt_time(now)
        st.backoff = self._new_backoff(key, new_s, new_f)

        finished: Cond | None = None
        scm = _true(status, "SuccessCriteriaMet")
        if scm is not None:
            # Met once: failures that follow do not undo it.
            finished = Cond("SuccessCriteriaMet", scm.get("reason", ""), scm.get("message", ""))
        elif (ft := _true(status, "FailureTarget")) is not None:
            finished = Cond("Failed", ft.get("reason", ""), ft.get("message", ""))
        elif (msg := jp.fail_job_message(job, pods)) is not None:
            finished = Cond("FailureTarget", "PodFailurePolicy", msg)
        if finished is None:
            deadline = spec.get("activeDeadlineSeconds")
            started = podutil.parse_time(status.get("startTime"))
            if st.failed > int(spec.get("backoffLimit", 6)) or _past_restart_limit(job, pods):
                finished = Cond("FailureTarget", "BackoffLimitExceeded", MSG_BACKOFF)
            elif deadline is not None and started and not suspended and \
                    now - started >= int(deadline):
                finished = Cond("FailureTarget", "DeadlineExceeded", MSG_DEADLINE)
            elif deadline is not None and not suspended:
                self.enqueue_after(key, max(started + int(deadline) - now, 0) + 0.05)

        st.active = [p for p in pods if podutil.is_active(p)]
        if indexed:
            st.prev_idx = parse_indexes(status.get("completedIndexes"), comp)
            st.succ_idx = st.prev_idx | {
                ix for p in pods if _has_finalizer(p) and _phase(p) == "Succeeded"
                and (ix := pod_index(p)) is not None and ix < comp}
            st.succeeded = len(st.succ_idx)
            if jp.per_index(job):
                st.failed_idx = jp.failed_indexes(job, pods, status.get("failedIndexes"),
                                                  expected | set(st.unc_f))
                if finished is None:
                    cap = spec.get("maxFailedIndexes")
                    if cap is not None and len(st.failed_idx) > int(cap):
                        finished = Cond("FailureTarget", "MaxFailedIndexesExceeded",
                                        MSG_MAX_FAILED_INDEXES)
                    elif st.failed_idx and len(st.failed_idx) + len(st.succ_idx) >= comp:
                        finished = Cond("FailureTarget", "FailedIndexes", MSG_FAILED_INDEXES)
                st.delayed = self._delayed_per_index(st)
            if finished is None and (msg := jp.match_success_policy(job, st.succ_idx)):
                finished = Cond("SuccessCriteriaMet", "SuccessPolicy", msg)

        st.active_count = len(st.active)
        st.ready = sum(1 for p in st.active if podutil.is_ready(p))
        st.terminating = sum(1 for p in pods if jp.is_terminating(p))
        error: Exception | None = None
        if finished is not None:
            deleted, error = await self._delete_active(st)
            if deleted != len(st.active) or not satisfied:
                # Pods not deleted yet, or not in the cache yet: decide again next time.
                finished = None
        else:
            managed = False
            if satisfied:
                error = await self._manage(st)
                managed = True
            if completions is None:
                complete = st.succeeded > 0 and st.active_count == 0
            else:
                complete = st.succeeded >= int(completions) and st.active_count == 0
            if complete:
                finished = Cond("SuccessCriteriaMet", "CompletionsReached", MSG_COMPLETE)
            elif managed:
                self._suspend_condition(st, suspended, now)
        status["active"] = st.active_count
        status["ready"] = st.ready
        status["terminating"] = st.terminating
        st.finished = finished
        await self._track(st)
        if error is not None:
            raise error

    def _new_finished(self, st: _Sync) -> tuple[list[Obj], list[Obj]]:
        """Finished pods not counted yet (succeeded, failed), valid indexes only."""
        job = st.job
        comp = int((job.get("spec") or {}).get("completions") or 0)
        unc_s, unc_f = set(st.unc_s), set(st.unc_f)
        new_s: list[Obj] = []
        new_f: list[Obj] = []
        for p in st.pods:
            uid = p["metadata"]["uid"]
            if not _has_finalizer(p) or uid in st.expected_rm:
                continue
            if jp.is_indexed(job) and ((ix := pod_index(p)) is None or ix >= comp):
                continue
            if _phase(p) == "Succeeded":
                if uid not in unc_s:
                    new_s.append(p)
            elif jp.is_pod_failed(p, job) and uid not in unc_f:
                new_f.append(p)
        return new_s, new_f

    def _new_backoff(self, key: str, new_s: list[Obj],
                     new_f: list[Obj]) -> tuple[int, float | None]:
        """Failures since the last success and when the last failed (upstream's backoff record)."""
        failures, last = self._backoff.get(key, (0, None))
        f_times = sorted(jp.finished_time(p) for p in new_f)
        if not new_s:
            return (failures + len(f_times), f_times[-1]) if f_times else (failures, last)
        last_success = max(jp.finished_time(p) for p in new_s)
        failures, last = 0, None
        for t in reversed(f_times):
            if t <= last_success:
                break
            if last is None:
                last = t
            failures += 1
        return failures, last

    def _delayed_per_index(self, st: _Sync) -> dict[int, Obj]:
        """Per index not done and not running, its latest failed pod: the
        finalizer stays on it until its replacement is created, so the count
        of the index's failures passes from one to the next."""
        job = st.job
        comp = int((job.get("spec") or {}).get("completions") or 0)
        running = {pod_index(p) for p in st.active}
        failed_idx = st.failed_idx or set()
        out: dict[int, Obj] = {}
        for p in st.pods:
            if not _has_finalizer(p) or p["metadata"]["uid"] in st.expected_rm:
                continue
            ix = pod_index(p)
            if ix is None or ix >= comp or not jp.is_pod_failed(p, job):
                continue
            if ix in st.succ_idx or ix in failed_idx or ix in running:
                continue
            last = out.get(ix)
            if last is None or (jp.absolute_failure_count(last) <= jp.absolute_failure_count(p)
                                and jp.finished_time(p) >= jp.finished_time(last)):
                out[ix] = p
        return out

    def _suspend_condition(self, st: _Sync, suspended: bool, now: float) -> None:
        conds: list[Obj] = st.status.setdefault("conditions", [])
        now_s = fmt_time(now)
        if suspended:
            if set_condition(conds, "Suspended", "True", "JobSuspended", "Job suspended", now_s):
                self.recorder.event(st.job, "Normal", "Suspended", "Job suspended")
                # Cleared, so a resumed Job counts its deadline afresh (and, never
                # started again, may have its template changed meanwhile).
                st.status.pop("startTime", None)
        elif set_condition(conds, "Suspended", "False", "JobResumed", "Job resumed", now_s):
            self.recorder.event(st.job, "Normal", "Resumed", "Job resumed")
            st.status["startTime"] = now_s
        if not conds:
            st.status.pop("conditions")

    # -- pods ---------------------------------------------------------------------

    async def _manage(self, st: _Sync) -> Exception | None:
        """Create or delete pods toward what the spec asks for (upstream manageJob)."""
        job, key = st.job, st.key
        spec = job.get("spec") or {}
        completions = spec.get("completions")
        parallelism = int(spec.get("parallelism", 1) or 0)
        if spec.get("suspend"):
            return await self._delete_job_pods(st, self._for_removal(st, st.active_count))
        if completions is None:
            want = st.active_count if st.succeeded > 0 else parallelism
        else:
            want = max(min(int(completions) - st.succeeded, parallelism), 0)
        victims = self._for_removal(st, max(st.active_count - want, 0))[:BURST]
        if victims:
            # Creating and deleting in one sync would fight over indexes: deleting wins.
            return await self._delete_job_pods(st, victims)
        terminating = st.terminating if jp.only_replace_failed(job) else 0
        diff = min(want - terminating - st.active_count, BURST)
        if diff <= 0:
            return None
        now = self.clock()
        indexes: list[int | None] = [None] * diff
        if not jp.per_index(job):
            failures, last = st.backoff or (0, None)
            delay = jp.backoff_left(self.backoff_base, self.backoff_max, failures, last, now)
            if delay > 0:
                self.enqueue_after(key, delay)
                return None
        if jp.is_indexed(job):
            pending = self._pending_indexes(st, diff)
            indexes = [ix for ix in pending]
            if jp.per_index(job):
                ready: list[int] = []
                soonest: float | None = None
                for ix in pending:
                    p = st.delayed.get(ix)
                    wait = 0.0 if p is None else jp.backoff_left(
                        self.backoff_base, self.backoff_max, jp.absolute_failure_count(p) + 1,
                        jp.finished_time(p), now)
                    if wait <= 0:
                        ready.append(ix)
                    elif soonest is None or wait < soonest:
                        soonest = wait
                if not ready:
                    if soonest is not None:
                        self.enqueue_after(key, soonest)
                    return None
                indexes = [ix for ix in ready]
        created, error = await self._create_pods(st, indexes)
        st.active_count += created
        return error

    def _for_removal(self, st: _Sync, at_least: int) -> list[Obj]:
        """Active pods to delete: for Indexed jobs every pod without a valid
        index or repeating one (the best of a repeated index is kept), then the
        least advanced pods until ``at_least`` are chosen."""
        rm: list[Obj] = []
        left = st.active
        if jp.is_indexed(st.job):
            comp = int((st.job.get("spec") or {}).get("completions") or 0)
            by_index: dict[int, list[Obj]] = {}
            for p in st.active:
                ix = pod_index(p)
                if ix is None or ix >= comp:
                    rm.append(p)
                else:
                    by_index.setdefault(ix, []).append(p)
            left = []
            for group in by_index.values():
                ordered = podutil.deletion_order(group)
                rm.extend(ordered[:-1])
                left.append(ordered[-1])
        if len(rm) < at_least:
            rm.extend(podutil.deletion_order(left)[:at_least - len(rm)])
        return rm

    def _pending_indexes(self, st: _Sync, count: int) -> list[int]:
        """The lowest ``count`` indexes that no pod holds: not succeeded, failed
        or running, nor terminating when only failed pods are replaced."""
        job = st.job
        comp = int((job.get("spec") or {}).get("completions") or 0)
        taken = set(st.succ_idx) | {ix for p in st.active if (ix := pod_index(p)) is not None}
        if jp.only_replace_failed(job):
            taken |= {ix for p in st.pods if jp.is_terminating(p)
                      and (ix := pod_index(p)) is not None}
        taken |= st.failed_idx or set()
        out: list[int] = []
        for i in range(comp):
            if len(out) >= count:
                break
            if i not in taken:
                out.append(i)
        return out

    async def _create_pods(self, st: _Sync, indexes: list[int | None]) -> tuple[int,
                                                                             Exception | None]:
        """Create pods in batches that double while they succeed (slow start)."""
        key, job = st.key, st.job
        self.expectations.expect(key, adds=len(indexes))
        ns = job["metadata"]["namespace"]
        per_index = jp.per_index(job)

        def pod_for(ix: int | None) -> Obj:
            counts = jp.new_index_failure_counts(job, st.delayed.get(ix)) \
                if per_index and ix is not None else None
            return build_pod(job, ix, counts)

        done = created = 0
        batch = 1
        while done < len(indexes):
            chunk = indexes[done:done + batch]
            results = await asyncio.gather(*(self.pod_api.create(pod_for(i), ns) for i in chunk),
                                           return_exceptions=True)
            failures = [r for r in results if isinstance(r, BaseException)]
            for r in results:
                if isinstance(r, dict):
                    created += 1
                    self.recorder.event(job, "Normal", "SuccessfulCreate",
                                        f"Created pod: {r['metadata']['name']}")
            done += len(chunk)
            if failures:
                # Neither the failed creates nor those not tried will show up.
                for _ in range(len(indexes) - done + len(failures)):
                    self.expectations.observed_add(key)
                err = failures[0]
                msg = err.status.get("message", str(err)) if isinstance(err, ApiError) \
                    else str(err)
                self.recorder.event(job, "Warning", "FailedCreate", f"Error creating: {msg}")
                return created, RuntimeError(f"creating pods failed: {msg}")
            batch *= 2
        return created, None

    async def _delete_job_pods(self, st: _Sync, victims: list[Obj]) -> Exception | None:
        """Delete pods the Job no longer wants (scaled down, suspended). Their
        finalizer goes first: such a pod is neither a success nor a failure."""
        key = st.key
        self.expectations.expect(key, deletes=len(victims))
        errors: list[Exception] = []

        async def one(pod: Obj) -> bool:
            try:
                if _has_finalizer(pod):
                    failure = (await self._remove_finalizers([pod]))[0]
                    if failure is not None:
                        raise failure
                await self.pod_api.delete(pod["metadata"]["name"], pod["metadata"]["namespace"])
            except ApiError as e:
                self.expectations.observed_delete(key)
                if not e.not_found:
                    errors.append(e)
                    self.recorder.event(st.job, "Warning", "FailedDelete",
                                        f"Error deleting: {e.status.get('message', e)}")
                    return False
            self.recorder.event(st.job, "Normal", "SuccessfulDelete",
                                f"Deleted pod: {pod['metadata']['name']}")
            return True

        results = await asyncio.gather(*(one(p) for p in victims))
        for pod, ok in zip(victims, results):
            if ok:
                st.active_count -= 1
                st.terminating += 1
                st.ready -= 1 if podutil.is_ready(pod) else 0
        return errors[0] if errors else None

    async def _delete_active(self, st: _Sync) -> tuple[int, Exception | None]:
        """Delete the active pods of a finishing Job. Their finalizers stay, so
        each is counted (a failure, unless the Job succeeded) before it goes."""
        errors: list[Exception] = []

        async def one(pod: Obj) -> bool:
            try:
                await self.pod_api.delete(pod["metadata"]["name"], pod["metadata"]["namespace"])
            except ApiError as e:
                if not e.not_found:
                    errors.append(e)
                    self.recorder.event(st.job, "Warning", "FailedDelete",
                                        f"Error deleting: {e.status.get('message', e)}")
                    return False
            self.recorder.event(st.job, "Normal", "SuccessfulDelete",
                                f"Deleted pod: {pod['metadata']['name']}")
            return True

        results = await asyncio.gather(*(one(p) for p in st.active))
        deleted = 0
        for pod, ok in zip(st.active, results):
            if ok:
                deleted += 1
                st.active_count -= 1
                st.terminating += 1
                st.ready -= 1 if podutil.is_ready(pod) else 0
        return deleted, errors[0] if errors else None

    # -- status ---------------------------------------------------------------------

    async def _track(self, st: _Sync) -> None:
        """Count finished pods and finish the Job (upstream
        trackJobStatusAndRemoveFinalizers): write the status with the new
        uncounted pods and any interim condition, remove those pods'
        finalizers, move them into the counters, then add Failed or Complete
        once nothing is left uncounted or terminating."""
        job, status = st.job, st.status
        indexed = jp.is_indexed(job)
        comp = int((job.get("spec") or {}).get("completions") or 0)
        finished = st.finished
        with_fin = {p["metadata"]["uid"] for p in st.pods
                    if _has_finalizer(p) and p["metadata"]["uid"] not in st.expected_rm}
        self._clean_uncounted(st, with_fin)
        unc_s, unc_f = set(st.unc_s), set(st.unc_f)
        fail_all = finished is not None and finished.type != "SuccessCriteriaMet"
        to_remove: list[Obj] = []
        new_idx: list[int] = []
        full = False
        pods = sorted(st.pods, key=lambda p: pod_index(p) or 0) if indexed else st.pods
        for p in pods:
            uid = p["metadata"]["uid"]
            if not _has_finalizer(p) or uid in st.expected_rm:
                continue
            failed = jp.is_pod_failed(p, job)
            if not self._can_remove(st, p, failed):
                continue
            to_remove.append(p)
            ix = pod_index(p)
            if _phase(p) == "Succeeded" and uid not in unc_f:
                if indexed:
                    if ix is not None and ix < comp and ix not in st.prev_idx:
                        new_idx.append(ix)
                elif uid not in unc_s:
                    st.unc_s.append(uid)
                    unc_s.add(uid)
            elif failed or fail_all:
                # A finishing failed Job counts every pod it stops as failed.
                if uid not in unc_f and (not indexed or (ix is not None and ix < comp)) and \
                        jp.counts_as_failure(job, p):
                    st.unc_f.append(uid)
                    unc_f.add(uid)
            if len(new_idx) + len(st.unc_s) + len(st.unc_f) >= MAX_UNCOUNTED:
                # The rest waits for the next sync: status stays small, other Jobs get a turn.
                full = True
                break
        if indexed:
            st.succ_idx |= set(new_idx)
            status["succeeded"] = len(st.succ_idx)
            status["completedIndexes"] = format_indexes(st.succ_idx) or None
            status["failedIndexes"] = None if st.failed_idx is None else \
                format_indexes(st.failed_idx)
        conds: list[Obj] = status.setdefault("conditions", [])
        now_s = fmt_time(self.clock())
        if finished is not None and finished.type == "FailureTarget":
            conds.append(_condition(finished, now_s))
            finished = Cond("Failed", finished.reason, finished.message)
        if finished is not None and finished.type == "SuccessCriteriaMet":
            if _true(status, "SuccessCriteriaMet") is None:
                conds.append(_condition(finished, now_s))
            finished = Cond("Complete", finished.reason, finished.message)
        if not conds:
            status.pop("conditions")
        await self._flush(st)
        error: Exception | None = None
        if to_remove:
            uids = [p["metadata"]["uid"] for p in to_remove]
            st.expected_rm.update(uids)
            results = await self._remove_finalizers(to_remove)
            for uid, res in zip(uids, results):
                if res is None:
                    with_fin.discard(uid)
                else:
                    st.expected_rm.discard(uid)
                    error = error or res
        self._clean_uncounted(st, with_fin)
        if error is not None:
            await self._flush(st)
            raise error
        done = not full and self._enact(st, finished)
        await self._flush(st)
        if done and finished is not None:
            self._backoff.pop(st.key, None)
            if finished.type == "Complete":
                completions = (job.get("spec") or {}).get("completions")
                if completions is not None and int(status.get("succeeded") or 0) > completions:
                    self.recorder.event(job, "Warning", "TooManySucceededPods",
                                        "Too many succeeded pods running after completion "
                                        "count reached")
                self.recorder.event(job, "Normal", "Completed", "Job completed")
            else:
                self.recorder.event(job, "Warning", finished.reason, finished.message)
        elif full:
            self.enqueue_after(st.key, 1.0)  # more finished pods than one status holds
        # (Waiting on terminating pods needs no timer: their deletion wakes this Job.)

    def _can_remove(self, st: _Sync, pod: Obj, failed: bool) -> bool:
        if st.finished is not None or _phase(pod) == "Succeeded":
            return True
        if not failed:
            return False
        if jp.per_index(st.job):
            ix = pod_index(pod)
            kept = st.delayed.get(ix) if ix is not None else None
            if kept is not None and kept["metadata"]["uid"] == pod["metadata"]["uid"]:
                return False  # its index's next pod takes over its failure count first
        return True

    def _clean_uncounted(self, st: _Sync, with_fin: set[str]) -> None:
        """Move uncounted pods that lost their finalizer into the counters."""
        status = st.status
        keep_s = [u for u in st.unc_s if u in with_fin]
        keep_f = [u for u in st.unc_f if u in with_fin]
        if not jp.is_indexed(st.job):
            status["succeeded"] = int(status.get("succeeded") or 0) + len(st.unc_s) - len(keep_s)
        status["failed"] = int(status.get("failed") or 0) + len(st.unc_f) - len(keep_f)
        st.unc_s, st.unc_f = keep_s, keep_f

    def _enact(self, st: _Sync, finished: Cond | None) -> bool:
        if finished is None or st.unc_s or st.unc_f or st.terminating > 0:
            return False
        conds: list[Obj] = st.status.setdefault("conditions", [])
        now_s = fmt_time(self.clock())
        set_condition(conds, finished.type, "True", finished.reason, finished.message, now_s)
        if finished.type == "Complete":
            st.status["completionTime"] = now_s
        return True

    async def _flush(self, st: _Sync) -> None:
        """Write what changed in the status; keep the backoff record it implies."""
        status = st.status
        status["uncountedTerminatedPods"] = {k: v for k, v in (("succeeded", st.unc_s),
                                                                ("failed", st.unc_f)) if v}
        old = st.job.get("status") or {}
        patch: Obj = {}
        for k in STATUS_KEYS:
            new_v, old_v = status.get(k), old.get(k)
            if k in OMITTED_WHEN_ZERO:
                new_v, old_v = new_v or None, old_v or None
            if k == "uncountedTerminatedPods":
                if old_v is None or {a: b for a, b in old_v.items() if b} != new_v:
                    patch[k] = {"succeeded": st.unc_s or None, "failed": st.unc_f or None}
            elif new_v != old_v:
                patch[k] = new_v
        if not patch:
            return
        out = await self._patch_status(st.key, patch)
        if out is None:
            raise RuntimeError("job vanished while its status was written")
        st.job = out
        if st.backoff is not None:
            self._backoff[st.key] = st.backoff
            st.backoff = None

    async def _remove_finalizers(self, pods: list[Obj]) -> list[Exception | None]:
        """Remove the tracking finalizer from each pod: None per success (or pod gone)."""
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

        async def guarded(pod: Obj) -> Exception | None:
            try:
                await one(pod)
            except ApiError as e:
                if e.not_found:
                    return None
                return e
            return None
        return list(await asyncio.gather(*(guarded(p) for p in pods)))

    async def _release_orphan(self, pod_key: str) -> None:
        pod = self.pods.get(pod_key)
        if pod is None or not _has_finalizer(pod):
            return
        ref = controller_ref(pod)
        if ref is not None:
            if ref.get("kind") != "Job" or ref.get("apiVersion") != "batch/v1":
                return  # some other controller's pod: its finalizer is not ours to drop
            ns = pod["metadata"]["namespace"]
            job = self.jobs.get(f"{ns}/{ref['name']}")
            if job is None:
                try:
                    job = await self.job_api.get(ref["name"], ns)
                except ApiError as e:
                    if not e.not_found:
                        raise
            if job is not None and job["metadata"].get("uid") == ref.get("uid") and \
                    (_managed_elsewhere(job) or not is_finished(job)):
                return
        results = await self._remove_finalizers([pod])
        if results[0] is not None:
            raise results[0]

    async def _patch_status(self, key: str, patch: Obj) -> Obj | None:
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


def _phase(pod: Obj) -> str:
    return str((pod.get("status") or {}).get("phase") or "")


def _condition(c: Cond, now: str) -> Obj:
    return {"type": c.type, "status": "True", "reason": c.reason, "message": c.message,
            "lastProbeTime": now, "lastTransitionTime": now}


def _managed_elsewhere(job: Obj) -> bool:
    by = (job.get("spec") or {}).get("managedBy")
    return by is not None and by != CONTROLLER_NAME


def _past_restart_limit(job: Obj, pods: list[Obj]) -> bool:
    """With restartPolicy OnFailure failures are container restarts: their sum
    over running and pending pods reaching backoffLimit fails the Job."""
    spec = job.get("spec") or {}
    if ((spec.get("template") or {}).get("spec") or {}).get("restartPolicy") != "OnFailure":
        return False
    total = 0
    for p in pods:
        if _phase(p) in ("Running", "Pending"):
            st = p.get("status") or {}
            for key in ("initContainerStatuses", "containerStatuses"):
                total += sum(int(cs.get("restartCount") or 0) for cs in st.get(key) or [])
    limit = int(spec.get("backoffLimit", 6))
    return total > 0 if limit == 0 else total >= limit


def _rv(obj: Obj) -> int:
    try:
        return int(obj["metadata"].get("resourceVersion") or 0)
    except ValueError:
        return 0


CONTROLLERS = {"job": JobController}
