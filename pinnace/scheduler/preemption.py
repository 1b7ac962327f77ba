"""Preemption by priority (upstream's DefaultPreemption).

The nodes where the pod failed for reasons that removing pods could fix are
dry-run one by one from a random offset, until max(10% of them, 100)
candidates are found and one of them violates no PodDisruptionBudget.

On each node (selectVictimsOnNode) every pod of lower priority is taken off
a copy of the node and out of the counts of the filters that look at other
nodes' pods; if the pod then fits (with the nominated pods of equal or
higher priority counted), victims are reprieved most important first
(higher priority, then earlier start): first those whose eviction would
violate a PDB, then the others. A victim violates a PDB when it matches one
whose status.disruptionsAllowed the victims before it have used up.

The candidate chosen (pickOneNodeForPreemption) has the fewest PDB
violations, then the lowest highest-priority victim, the smallest sum of
priorities, the fewest victims, the latest start among its highest-priority
victims, then the first found. The caller marks the victims with the
DisruptionTarget condition, deletes them and sets the pod's
status.nominatedNodeName.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pinnace.scheduler.cache import NodeInfo, PodInfo, SchedulerCache
from pinnace.scheduler.plugins._match import LabelPred, compile_label_selector
from pinnace.scheduler.plugins.base import Check, Reject

if TYPE_CHECKING:
    from pinnace.scheduler.framework import Diagnosis, Profile

NOT_HELPFUL = "Preemption is not helpful for scheduling"
NO_VICTIMS = "No preemption victims found for incoming pod"
NEVER = "not eligible due to preemptionPolicy=Never."
TERMINATING = "not eligible due to a terminating pod on the nominated node."
DISRUPTION_TARGET = "DisruptionTarget"
PREEMPTION_BY_SCHEDULER = "PreemptionByScheduler"
MIN_CANDIDATE_NODES_PERCENTAGE = 10
MIN_CANDIDATE_NODES_ABSOLUTE = 100
_MAX_INT32 = 2 ** 31 - 1
_NOT_STARTED = "\uffff"  # a pod not started yet counts as started now: after every real start


@dataclass
class PreemptionOutcome:
    """``node_name``: where the pod is nominated; "" when preemption cannot
    help (the nomination is cleared); None when the pod may not preempt now
    (its nomination is kept). ``message`` says why there is no node."""

    node_name: str | None
    victims: list[PodInfo] = field(default_factory=list)
    message: str = ""


@dataclass
class Candidate:
    node: str
    victims: list[PodInfo]
    pdb_violations: int


def disruption_target_condition(scheduler_name: str, now: str,
                                generation: int | None = None) -> dict[str, Any]:
    """The condition a victim gets before it is deleted."""
    cond: dict[str, Any] = {"type": DISRUPTION_TARGET, "status": "True",
                            "reason": PREEMPTION_BY_SCHEDULER,
                            "message": f"{scheduler_name}: preempting to accommodate a higher "
                                       "priority pod",
                            "lastTransitionTime": now}
    if generation is not None:
        cond["observedGeneration"] = generation
    return cond


def _start(p: PodInfo) -> str:
    return p.start_time or _NOT_STARTED


def importance(p: PodInfo) -> tuple[int, str]:
    """Sort key, most important first: higher priority, then earlier start
    (upstream's MoreImportantPod)."""
    return (-p.priority, _start(p))


def terminating_by_preemption(p: PodInfo) -> bool:
    if not p.terminating:
        return False
    for c in (p.pod.get("status") or {}).get("conditions") or ():
        if c.get("type") == DISRUPTION_TARGET:
            return c.get("status") == "True" and c.get("reason") == PREEMPTION_BY_SCHEDULER
    return False


def num_candidates(potential: int) -> int:
    """How many candidate nodes to dry-run before choosing."""
    n = max(potential * MIN_CANDIDATE_NODES_PERCENTAGE // 100, MIN_CANDIDATE_NODES_ABSOLUTE)
    return min(n, potential)


# --- PodDisruptionBudgets ------------------------------------------------


class _Budget:
    __slots__ = ("match", "allowed", "disrupted")

    def __init__(self, match: LabelPred, allowed: int, disrupted: Mapping[str, Any]) -> None:
        self.match, self.allowed, self.disrupted = match, allowed, disrupted


Budgets = dict[str, list[_Budget]]


def budgets(pdbs: Iterable[Mapping[str, Any]]) -> Budgets:
    """PDBs by namespace, their selectors compiled. A PDB with no selector,
    or an empty one, protects no pod here (as upstream's preemption)."""
    out: Budgets = {}
    for pdb in pdbs:
        sel = (pdb.get("spec") or {}).get("selector")
        if not sel or not (sel.get("matchLabels") or sel.get("matchExpressions")):
            continue
        st = pdb.get("status") or {}
        ns = (pdb.get("metadata") or {}).get("namespace") or "default"
        out.setdefault(ns, []).append(_Budget(compile_label_selector(sel),
                                              int(st.get("disruptionsAllowed") or 0),
                                              st.get("disruptedPods") or {}))
    return out


def split_by_pdb(pods: Sequence[PodInfo], by_ns: Budgets) -> tuple[list[PodInfo], list[PodInfo]]:
    """(violating, non-violating), each in the order given: a pod violates
    if evicting it, after the pods before it, takes a matching PDB below
    zero disruptions allowed. Pods the API server already counts as
    disrupted (status.disruptedPods) use up nothing."""
    left: dict[int, int] = {}
    violating: list[PodInfo] = []
    fine: list[PodInfo] = []
    for p in pods:
        hit = False
        if p.labels:  # a pod without labels matches no PDB
            for b in by_ns.get(p.namespace, ()):
                if not b.match(p.labels) or p.name in b.disrupted:
                    continue
                n = left.get(id(b), b.allowed) - 1
                left[id(b)] = n
                if n < 0:
                    hit = True
        (violating if hit else fine).append(p)
    return violating, fine


# --- one node --------------------------------------------------------------


def select_victims_on_node(pod: PodInfo, ni: NodeInfo, profile: Profile, checks: Sequence[Check],
                           nominated: Sequence[PodInfo], by_ns: Budgets
                           ) -> tuple[list[PodInfo] | None, int, tuple[str, ...]]:
    """(victims, PDB violations, why not): the fewest pods to evict from
    ``ni`` so that ``pod`` fits; victims None (and the reasons) when
    evicting cannot make it fit."""
    from pinnace.scheduler.framework import Diagnosis
    potential = [p for p in ni.pods.values() if p.priority < pod.priority]
    if not potential:
        return None, 0, (NO_VICTIMS,)
    trial = ni.clone()
    state = [c.copy() for c in checks]

    def move(p: PodInfo, sign: int) -> None:
        if sign > 0:
            trial.add_pod(p)
        else:
            trial.remove_pod(p.key)
        for c in state:
            c.update(p, trial, sign)

    for p in potential:
        move(p, -1)
    diag = Diagnosis()
    if not profile.fits_with(state, trial, nominated, diag):
        return None, 0, diag.statuses[ni.name][0]
    potential.sort(key=importance)
    violating, fine = split_by_pdb(potential, by_ns)
    victims: list[PodInfo] = []

    def reprieve(p: PodInfo) -> bool:
        move(p, 1)
        if profile.fits_with(state, trial, nominated, Diagnosis()):
            return True
        move(p, -1)
        victims.append(p)
        return False

    violations = sum(1 for p in violating if not reprieve(p))
    for p in fine:
        reprieve(p)
    if violating and fine:
        victims.sort(key=importance)
    return victims, violations, ()


def pick_one(candidates: Sequence[Candidate]) -> Candidate:
    """pickOneNodeForPreemption: each rule keeps the best-scoring candidates;
    the first left wins. Victims are sorted most important first."""
    def earliest_top_start(c: Candidate) -> str:
        top = c.victims[0].priority
        return min(_start(p) for p in c.victims if p.priority == top)

    rules: list[Any] = [
        lambda c: -c.pdb_violations,
        lambda c: -c.victims[0].priority,
        lambda c: -sum(p.priority + _MAX_INT32 + 1 for p in c.victims),
        lambda c: -len(c.victims),
        earliest_top_start,
    ]
    left = list(candidates)
    for rule in rules:
        if len(left) == 1:
            break
        scores = [rule(c) for c in left]
        best = max(scores)
        left = [c for c, s in zip(left, scores) if s == best]
    return left[0]


# --- the whole cluster -----------------------------------------------------


def _ineligible(pod: PodInfo, cache: SchedulerCache, diag: Diagnosis) -> str:
    """Why ``pod`` may not preempt now ("" if it may)."""
    if pod.spec.get("preemptionPolicy") == "Never":
        return NEVER
    nominated = pod.nominated_node_name
    if nominated:
        status = diag.statuses.get(nominated)
        # Its node no longer fits it whatever is evicted: it may preempt elsewhere.
        if status is None or status[1]:
            return ""
        ni = cache.nodes.get(nominated)
        if ni is not None and any(p.priority < pod.priority and terminating_by_preemption(p)
                                  for p in ni.pods.values()):
            return TERMINATING  # its earlier victims are still going away
    return ""


def preempt(pod: PodInfo, cache: SchedulerCache, profile: Profile, diag: Diagnosis) -> PreemptionOutcome:
    """Find a node and victims for ``pod``, given why it failed (``diag``)."""
    from pinnace.scheduler.framework import fit_error_message
    why = _ineligible(pod, cache, diag)
    if why:
        return PreemptionOutcome(None, message=why)
    nodes = cache.node_list()
    pre = profile.pre_filter(pod, cache, {})
    potential: list[NodeInfo] = []
    if not isinstance(pre, Reject):
        for ni in nodes:
            status = diag.statuses.get(ni.name)
            if status is not None and not status[1]:
                potential.append(ni)
    statuses: dict[str, tuple[str, ...]] = {}
    errors: list[str] = []
    if potential and not isinstance(pre, Reject):
        by_ns = budgets(profile.pdb_lister() if profile.pdb_lister is not None else ())
        nominated = profile.nominated_for(pod, cache)
        n = len(potential)
        want = num_candidates(n)
        offset = profile.rng.randrange(n)
        fine: list[Candidate] = []
        violating: list[Candidate] = []
        for i in range(n):
            ni = potential[(offset + i) % n]
            victims, violations, reasons = select_victims_on_node(
                pod, ni, profile, pre, nominated.get(ni.name, ()), by_ns)
            if victims is None:
                statuses[ni.name] = reasons
                continue
            if not victims:
                errors.append(f'expected at least one victim pod on node "{ni.name}"')
                continue
            (violating if violations else fine).append(Candidate(ni.name, victims, violations))
            if fine and len(fine) + len(violating) >= want:
                break
        if fine or violating:
            best = pick_one(fine + violating)
            return PreemptionOutcome(best.node, best.victims)
        if errors:
            return PreemptionOutcome(None, message=errors[0] if len(errors) == 1
                                     else "[" + ", ".join(errors) + "]")
    hist: dict[str, int] = {}
    for ni in nodes:
        for r in statuses.get(ni.name, (NOT_HELPFUL,)):
            hist[r] = hist.get(r, 0) + 1
    return PreemptionOutcome("", message=fit_error_message(len(nodes), hist))


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
    if not out.node_name:
        return None
    return out.node_name, [v.pod for v in out.victims]
