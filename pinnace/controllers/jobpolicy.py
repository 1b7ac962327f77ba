"""The Job's policies as plain functions over Job and Pod dicts (upstream
pkg/controller/job: pod_failure_policy.go, success_policy.go, backoff_utils.go
and the index helpers of indexed_job_utils.go): which pods count as failed,
what a pod failure policy says about a failed pod, when a success policy is
met, the per-index failure counts carried by pod annotations, and the
exponential delay before a failed pod is replaced.
"""

from __future__ import annotations

from typing import Any

from . import pods as podutil

Obj = dict[str, Any]

INDEX_KEY = "batch.kubernetes.io/job-completion-index"
FINALIZER = "batch.kubernetes.io/job-tracking"
FAILURE_COUNT_KEY = "batch.kubernetes.io/job-index-failure-count"
IGNORED_COUNT_KEY = "batch.kubernetes.io/job-index-ignored-failure-count"
MAX_INT32 = 2**31 - 1


def spec(job: Obj) -> Obj:
    return job.get("spec") or {}


def is_indexed(job: Obj) -> bool:
    return spec(job).get("completionMode") == "Indexed"


def per_index(job: Obj) -> bool:
    return spec(job).get("backoffLimitPerIndex") is not None


def only_replace_failed(job: Obj) -> bool:
    """Whether a terminating pod waits to be Failed before it is replaced (and
    counted): podReplacementPolicy Failed, which a pod failure policy implies."""
    s = spec(job)
    return s.get("podReplacementPolicy") == "Failed" or s.get("podFailurePolicy") is not None


def is_terminating(pod: Obj) -> bool:
    return bool(pod["metadata"].get("deletionTimestamp")) and \
        (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")


def is_pod_failed(pod: Obj, job: Obj) -> bool:
    phase = (pod.get("status") or {}).get("phase")
    if phase == "Failed":
        return True
    if only_replace_failed(job):
        return False
    # A deleted pod may never reach Failed (an orphan on a lost node): it counts already.
    return bool(pod["metadata"].get("deletionTimestamp")) and phase != "Succeeded"


# -- completion indexes ("1,3-5,7") -------------------------------------------


def parse_indexes(s: str | None, limit: int | None = None) -> set[int]:
    """The indexes of an interval list; those at or above ``limit`` are dropped
    (a Job scaled down keeps only the indexes below its completions)."""
    out: set[int] = set()
    for part in (s or "").split(","):
        lo, _, hi = part.strip().partition("-")
        try:
            first, last = int(lo), int(hi or lo)
        except ValueError:
            continue
        if limit is not None:
            if first >= limit:
                break
            last = min(last, limit - 1)
        out.update(range(first, last + 1))
    return out


def format_indexes(idx: set[int] | list[int]) -> str:
    """Intervals as upstream writes them: a run of two is "4,5", longer runs "4-6"."""
    parts: list[str] = []
    ordered = sorted(idx)
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        first, last = ordered[i], ordered[j]
        if last == first:
            parts.append(str(first))
        elif last == first + 1:
            parts.append(f"{first},{last}")
        else:
            parts.append(f"{first}-{last}")
        i = j + 1
    return ",".join(parts)


def pod_index(pod: Obj) -> int | None:
    """The pod's completion index (from the annotation, as upstream), None if unset or bad."""
    meta = pod.get("metadata") or {}
    raw = (meta.get("annotations") or {}).get(INDEX_KEY)
    try:
        ix = int(raw) if raw is not None else -1
    except ValueError:
        return None
    return ix if ix >= 0 else None


# -- pod failure policy ---------------------------------------------------------


def _exit_code_match(pod: Obj, req: Obj) -> Obj | None:
    """The first terminated container (app, then init) whose non-zero exit code
    the requirement matches."""
    st = pod.get("status") or {}
    values = req.get("values") or []
    name = req.get("containerName")
    for key in ("containerStatuses", "initContainerStatuses"):
        for cs in st.get(key) or []:
            term = (cs.get("state") or {}).get("terminated")
            if term is None or (name is not None and cs.get("name") != name):
                continue
            code = int(term.get("exitCode") or 0)
            if code == 0:
                continue
            op = req.get("operator")
            if (op == "In" and code in values) or (op == "NotIn" and code not in values):
                return dict(cs, exitCode=code)
    return None


def _condition_match(pod: Obj, patterns: list[Obj]) -> Obj | None:
    for c in (pod.get("status") or {}).get("conditions") or []:
        for p in patterns:
            if c.get("type") == p.get("type") and c.get("status") == p.get("status", "True"):
                return c  # type: ignore[no-any-return]
    return None


def match_pod_failure_policy(job: Obj, pod: Obj) -> tuple[str | None, bool, str | None]:
    """What the Job's pod failure policy makes of a failed pod: the message
    when a FailJob rule matched, whether the failure counts toward the backoff
    limits (not for Ignore), and the action of the first matching rule."""
    policy = spec(job).get("podFailurePolicy")
    if not policy:
        return None, True, None
    ns, name = pod["metadata"].get("namespace", ""), pod["metadata"].get("name", "")
    for i, rule in enumerate(policy.get("rules") or []):
        action = rule.get("action")
        on_codes = rule.get("onExitCodes")
        if on_codes is not None:
            cs = _exit_code_match(pod, on_codes)
            if cs is None:
                continue
            what = (f"Container {cs.get('name')} for pod {ns}/{name} failed with exit code "
                    f"{cs['exitCode']} matching {action} rule at index {i}")
        elif rule.get("onPodConditions") is not None:
            cond = _condition_match(pod, rule["onPodConditions"])
            if cond is None:
                continue
            what = (f"Pod {ns}/{name} has condition {cond.get('type')} matching {action} "
                    f"rule at index {i}")
        else:
            continue
        if action == "Ignore":
            return None, False, action
        if action in ("FailIndex", "Count"):
            return None, True, action
        if action == "FailJob":
            return what, True, action
        # An action this controller does not know: the rule is skipped, as upstream.
    return None, True, None


def fail_job_message(job: Obj, pods: list[Obj]) -> str | None:
    """The FailJob message of the first failed pod matching such a rule."""
    if not spec(job).get("podFailurePolicy"):
        return None
    for p in pods:
        if is_pod_failed(p, job):
            msg, _, _ = match_pod_failure_policy(job, p)
            if msg is not None:
                return msg
    return None


def counts_as_failure(job: Obj, pod: Obj) -> bool:
    return match_pod_failure_policy(job, pod)[1]


# -- per-index failures -----------------------------------------------------------


def _annotation_int(pod: Obj, key: str) -> int:
    raw = ((pod.get("metadata") or {}).get("annotations") or {}).get(key)
    try:
        v = int(raw) if raw is not None else 0
    except ValueError:
        return 0
    return v if 0 <= v <= MAX_INT32 else 0


def index_failure_count(pod: Obj) -> int:
    return _annotation_int(pod, FAILURE_COUNT_KEY)


def absolute_failure_count(pod: Obj) -> int:
    return _annotation_int(pod, FAILURE_COUNT_KEY) + _annotation_int(pod, IGNORED_COUNT_KEY)


def new_index_failure_counts(job: Obj, replaced: Obj | None) -> tuple[int, int]:
    """The (counted, ignored) failure counts for the pod replacing ``replaced``."""
    if replaced is None:
        return 0, 0
    counted, ignored = index_failure_count(replaced), _annotation_int(replaced, IGNORED_COUNT_KEY)
    if counts_as_failure(job, replaced):
        counted += 1
    else:
        ignored += 1
    return counted, ignored


def is_index_failed(job: Obj, pod: Obj) -> bool:
    """Whether this pod's failure fails its index: a FailIndex rule, or a
    counted failure once the index has used up backoffLimitPerIndex."""
    if not is_pod_failed(pod, job):
        return False
    counted = True
    if spec(job).get("podFailurePolicy"):
        _, counted, action = match_pod_failure_policy(job, pod)
        if action == "FailIndex":
            return True
    return counted and index_failure_count(pod) >= int(spec(job).get("backoffLimitPerIndex") or 0)


def failed_indexes(job: Obj, pods: list[Obj], recorded: str | None,
                   accounted: set[str]) -> set[int]:
    """The Job's failed indexes: those already recorded in status.failedIndexes
    and those a pod not yet accounted for has failed since. A pod whose
    tracking finalizer is already on its way out (its uid in ``accounted``)
    was judged when that was decided; judged again now, a pod the finishing
    Job stopped would count as a failed index (it is terminating, so it
    looks failed) in the moment before it is gone from the cache."""
    completions = int(spec(job).get("completions") or 0)
    out = parse_indexes(recorded, completions)
    for p in pods:
        meta = p["metadata"]
        if FINALIZER not in (meta.get("finalizers") or []) or meta.get("uid") in accounted:
            continue
        ix = pod_index(p)
        if ix is not None and ix < completions and is_index_failed(job, p):
            out.add(ix)
    return out


# -- success policy ------------------------------------------------------------------


def match_success_policy(job: Obj, succeeded: set[int]) -> str | None:
    """The SuccessCriteriaMet message when a rule of the success policy is met."""
    policy = spec(job).get("successPolicy")
    completions = spec(job).get("completions")
    if not policy or not succeeded or completions is None:
        return None
    for i, rule in enumerate(policy.get("rules") or []):
        count = rule.get("succeededCount")
        if rule.get("succeededIndexes") is not None:
            required = parse_indexes(rule["succeededIndexes"], int(completions))
            if not required:
                continue  # a rule the parser cannot read never matches
            hit = len(required & succeeded)
            if hit == len(required) or (count is not None and hit >= int(count)):
                return f"Matched rules at index {i}"
        elif count is not None and len(succeeded) >= int(count):
            return f"Matched rules at index {i}"
    return None


# -- backoff -------------------------------------------------------------------------


def finished_time(pod: Obj) -> float:
    """When the pod finished: its containers' last finishedAt, else when it
    stopped being Ready, else its deletion (less the grace period), else its
    creation."""
    st = pod.get("status") or {}
    latest = 0.0
    statuses = st.get("containerStatuses") or []
    for cs in statuses:
        at = podutil.parse_time(((cs.get("state") or {}).get("terminated") or {}).get(
            "finishedAt"))
        if not at:
            latest = 0.0
            break
        latest = max(latest, at)
    if statuses and latest:
        return latest
    ready = podutil.condition(pod, "Ready")
    if ready and ready.get("status") == "False" and ready.get("lastTransitionTime"):
        return podutil.parse_time(ready["lastTransitionTime"])
    meta = pod["metadata"]
    if meta.get("deletionTimestamp"):
        return podutil.parse_time(meta["deletionTimestamp"]) - float(
            meta.get("deletionGracePeriodSeconds") or 0)
    return podutil.parse_time(meta.get("creationTimestamp"))


def backoff_left(base: float, cap: float, failures: int, last: float | None,
                 now: float) -> float:
    """Seconds until a pod may be created after ``failures`` failures in a row."""
    if failures <= 0 or last is None or base <= 0:
        return 0.0
    delay = base
    for _ in range(1, failures):
        delay *= 2
        if delay >= cap:
            delay = cap
            break
    return max(last + delay - now, 0.0)
