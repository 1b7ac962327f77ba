"""Preemption by priority (upstream's DefaultPreemption, simplified).

For each node whose failure removing pods could fix, every pod of lower
priority than the preemptor is taken off a copy of the node; if the pod then
fits, victims are reprieved highest priority first while it still fits.
Among the nodes that work, the choice follows pickOneNodeForPreemption:
lowest highest-victim priority, then lowest priority sum, then fewest
victims, then the latest-started highest-priority victims, then the first.
PodDisruptionBudgets are not considered. Filters that look at other nodes'
pods (pod affinity, topology spread) are evaluated with victims still present.
The caller deletes the victims and sets the pod's status.nominatedNodeName.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pinnace.scheduler.cache import NodeInfo, PodInfo, SchedulerCache
from pinnace.scheduler.plugins.base import Reject

if TYPE_CHECKING:
    from pinnace.scheduler.framework import Diagnosis, Profile

NOT_HELPFUL = "Preemption is not helpful for scheduling"
NO_VICTIMS = "No preemption victims found for incoming pod"
NEVER = "not eligible due to preemptionPolicy=Never."
TERMINATING = "not eligible due to a terminating pod on the nominated node."
_MAX_INT32 = 2 ** 31 - 1


@dataclass
class PreemptionOutcome:
    node_name: str | None
    victims: list[PodInfo] = field(default_factory=list)
    message: str = ""


def _start_time(p: PodInfo) -> str:
    st = p.pod.get("status") or {}
    return st.get("startTime") or (p.pod.get("metadata") or {}).get("creationTimestamp") or ""


def _fits(profile: Profile, checks: list[Any], ni: NodeInfo) -> bool:
    from pinnace.scheduler.framework import Diagnosis
    return bool(profile.run_checks(checks, [ni], Diagnosis()))


def _victims_on(pod: PodInfo, ni: NodeInfo, profile: Profile, checks: list[Any]) -> list[PodInfo] | None:
    lower = [p for p in ni.pods.values() if p.priority < pod.priority]
    if not lower:
        return None
    trial = ni.clone()
    for p in lower:
        trial.remove_pod(p.key)
    if not _fits(profile, checks, trial):
        return None
    victims = []
    # Reprieve the most important pods first.
    for p in sorted(lower, key=lambda p: (-p.priority, _start_time(p))):
        trial.add_pod(p)
        if not _fits(profile, checks, trial):
            trial.remove_pod(p.key)
            victims.append(p)
    return victims


def _rank(victims: list[PodInfo]) -> tuple[int, int, int, str]:
    if not victims:
        return (-_MAX_INT32 - 1, 0, 0, "")
    top = max(p.priority for p in victims)
    total = sum(p.priority + _MAX_INT32 + 1 for p in victims)
    # Latest start among the highest-priority victims wins: negate by sorting key below.
    latest = min((_start_time(p) for p in victims if p.priority == top), default="")
    return (top, total, len(victims), latest)


def preempt(pod: PodInfo, cache: SchedulerCache, profile: Profile, diag: Diagnosis) -> PreemptionOutcome:
    """Find a node and victims for ``pod``, given why it failed (``diag``)."""
    from pinnace.scheduler.framework import fit_error_message
    spec = pod.spec
    if spec.get("preemptionPolicy") == "Never":
        return PreemptionOutcome(None, message=NEVER)
    nominated = (pod.pod.get("status") or {}).get("nominatedNodeName")
    if nominated and nominated in cache.nodes and diag.statuses.get(nominated, ((), False))[1] is False:
        if any(p.terminating and p.priority < pod.priority for p in cache.nodes[nominated].pods.values()):
            return PreemptionOutcome(None, message=TERMINATING)
    pre = profile.pre_filter(pod, cache, {})
    nodes = cache.node_list()
    hist: dict[str, int] = {}
    best: tuple[tuple[int, int, int, str], int, NodeInfo, list[PodInfo]] | None = None
    for i, ni in enumerate(nodes):
        status = diag.statuses.get(ni.name)
        if isinstance(pre, Reject) or (status is not None and status[1]):
            hist[NOT_HELPFUL] = hist.get(NOT_HELPFUL, 0) + 1
            continue
        victims = _victims_on(pod, ni, profile, pre)
        if victims is None:
            hist[NO_VICTIMS] = hist.get(NO_VICTIMS, 0) + 1
            continue
        top, total, count, latest = _rank(victims)
        # Later start is better, so compare the negated string order via a second pass.
        key = (top, total, count, "")
        if best is None or key < best[0] or (key == best[0] and latest > _rank(best[3])[3]):
            best = (key, i, ni, victims)
    if best is None:
        return PreemptionOutcome(None, message=fit_error_message(len(nodes), hist))
    return PreemptionOutcome(best[2].name, best[3])


def find_preemption(pod: Mapping[str, Any] | PodInfo, cache: SchedulerCache,
                    profile: Profile | None = None) -> tuple[str, list[dict[str, Any]]] | None:
    """Where ``pod`` could run after evicting victims: (node name, victim pods),
    or None. Runs the profile's filters first to learn why each node failed."""
    from pinnace.scheduler.framework import default_profile
    profile = profile or default_profile()
    pi = pod if isinstance(pod, PodInfo) else PodInfo(pod)
    res = profile.schedule(pi, cache, preempt=False)
    if res.node_name is not None or res.diagnosis is None:
        return None
    out = preempt(pi, cache, profile, res.diagnosis)
    if out.node_name is None:
        return None
    return out.node_name, [v.pod for v in out.victims]
