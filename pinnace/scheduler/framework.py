"""Scheduling one pod: filter a sample of nodes, score the feasible ones,
pick the best; on failure, explain it the way kube-scheduler does.

Like upstream, filtering stops once ``num_feasible_nodes_to_find`` nodes
pass (50% - nodes/125, at least 5%, at least 100 nodes), starting where the
previous pod's search stopped, so successive pods spread over the cluster.
Plugins that have nothing to say about a pod are skipped before the node
loop, and each remaining filter runs over a batch of nodes at a time.

On a node where pods of equal or higher priority are nominated (waiting for
room a preemption freed), the pod must fit both with those pods counted and
without them (upstream's RunFilterPluginsWithNominatedPods), so it cannot
take their room; lower-priority nominations do not hold it back.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pinnace.scheduler.cache import NodeInfo, PodInfo, SchedulerCache
from pinnace.scheduler.plugins.base import Check, FilterPlugin, Reject, ScorePlugin

__all__ = [
    "DEFAULT_SCHEDULER",
    "Diagnosis",
    "Profile",
    "ScheduleResult",
    "binding_for",
    "default_profile",
    "fit_error_message",
    "num_feasible_nodes_to_find",
    "pod_scheduled_condition_unschedulable",
    "schedule",
]

DEFAULT_SCHEDULER = "default-scheduler"
MIN_FEASIBLE_NODES = 100
MIN_FEASIBLE_PERCENTAGE = 5
NO_NODE_AVAILABLE = "0/{} nodes are available"


def num_feasible_nodes_to_find(num_nodes: int, percentage: int = 0) -> int:
    """How many feasible nodes are enough (percentageOfNodesToScore)."""
    if num_nodes < MIN_FEASIBLE_NODES:
        return num_nodes
    if percentage <= 0:
        percentage = max(50 - num_nodes // 125, MIN_FEASIBLE_PERCENTAGE)
    if percentage >= 100:
        return num_nodes
    return max(num_nodes * percentage // 100, MIN_FEASIBLE_NODES)


def sorted_reasons(reasons: Mapping[str, int]) -> list[str]:
    """"<count> <reason>" strings sorted as strings, as upstream's histogram."""
    return sorted(f"{n} {r}" for r, n in reasons.items())


def fit_error_message(num_nodes: int, reasons: Mapping[str, int], pre_filter_msg: str = "",
                      post_filter_msg: str = "") -> str:
    """FitError.Error(): "0/N nodes are available: <reasons>. <post filter msg>"."""
    msg = NO_NODE_AVAILABLE.format(num_nodes) + ":"
    if pre_filter_msg:
        msg += f" {pre_filter_msg}."
    else:
        hist = sorted_reasons(reasons)
        if hist:
            msg += " " + ", ".join(hist) + "."
    if post_filter_msg:
        msg += " " + post_filter_msg
    return msg


@dataclass
class Diagnosis:
    """Why nodes failed: per node its reasons and whether preemption could help."""

    statuses: dict[str, tuple[tuple[str, ...], bool]] = field(default_factory=dict)
    pre_filter_msg: str = ""

    def histogram(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for reasons, _ in self.statuses.values():
            for r in reasons:
                out[r] = out.get(r, 0) + 1
        return out


@dataclass
class ScheduleResult:
    """node_name is set on success. Otherwise ``reasons`` is the histogram,
    ``message`` the FailedScheduling text, and ``nominated_node`` what to do
    with the pod's nomination: None leaves it as it is, "" clears it, a name
    sets it (preemption found room there: the caller deletes ``victims``)."""

    node_name: str | None
    reasons: dict[str, int] = field(default_factory=dict)
    message: str = ""
    nominated_node: str | None = None
    victims: list[dict[str, Any]] = field(default_factory=list)
    evaluated_nodes: int = 0
    feasible_nodes: int = 0
    diagnosis: Diagnosis | None = None


class Profile:
    """A scheduler profile: ordered filters, weighted scores, and whether
    unschedulable pods may preempt. One Profile object per scheduler process
    (it holds the rotating start index and the tie-break random source)."""

    def __init__(self, name: str, filters: Sequence[FilterPlugin],
                 scores: Sequence[tuple[ScorePlugin, int]], *, preemption: bool = True,
                 percentage_of_nodes_to_score: int = 0, rng: random.Random | None = None,
                 pdb_lister: Callable[[], Iterable[dict[str, Any]]] | None = None) -> None:
        self.name = name
        # The cluster's PodDisruptionBudgets, which preemption avoids violating.
        self.pdb_lister = pdb_lister
        self.filters = list(filters)
        self.scores = list(scores)
        self.preemption = preemption
        self.percentage = percentage_of_nodes_to_score
        self.rng = rng or random.Random()
        self.next_start = 0

    # --- filtering ---------------------------------------------------------

    def pre_filter(self, pod: PodInfo, cache: SchedulerCache, state: dict[str, Any]) -> list[Check] | Reject:
        checks = []
        for pl in self.filters:
            r = pl.pre_filter(pod, cache, state)
            if r is None:
                continue
            if isinstance(r, Reject):
                return r
            checks.append(r)
        return checks

    @staticmethod
    def nominated_for(pod: PodInfo, cache: SchedulerCache) -> dict[str, list[PodInfo]]:
        """Per node, the other nominated pods ``pod`` must leave room for:
        those of equal or higher priority."""
        out: dict[str, list[PodInfo]] = {}
        for node, on in cache.nominated.items():
            keep = [p for p in on.values() if p.priority >= pod.priority and p.key != pod.key]
            if keep:
                out[node] = keep
        return out

    def filter(self, checks: Sequence[Check], nodes: list[NodeInfo], diag: Diagnosis,
               nominated: Mapping[str, list[PodInfo]]) -> list[NodeInfo]:
        """run_checks, with the ``nominated`` pods counted on their nodes."""
        if not nominated:
            return self.run_checks(checks, nodes, diag)
        plain = [ni for ni in nodes if ni.name not in nominated]
        if len(plain) == len(nodes):
            return self.run_checks(checks, nodes, diag)
        ok = set(self.run_checks(checks, plain, diag)) if plain else set()
        for ni in nodes:
            adds = nominated.get(ni.name)
            if adds is not None and self.fits_with(checks, ni, adds, diag):
                ok.add(ni)
        return [ni for ni in nodes if ni in ok]

    def fits_with(self, checks: Sequence[Check], ni: NodeInfo, adds: Sequence[PodInfo],
                  diag: Diagnosis) -> bool:
        """Whether the pod passes ``checks`` on ``ni`` both with ``adds``
        placed there and without them; the first failure goes to ``diag``."""
        if adds:
            trial = ni.clone()
            moved = [c.copy() for c in checks]
            for p in adds:
                trial.add_pod(p)
                for c in moved:
                    c.update(p, trial, 1)
            if not self.run_checks(moved, [trial], diag):
                return False
        return bool(self.run_checks(checks, [ni], diag))

    @staticmethod
    def run_checks(checks: Sequence[Check], nodes: list[NodeInfo], diag: Diagnosis) -> list[NodeInfo]:
        """The nodes passing every check; failures go to ``diag`` with the
        reasons of the first check that failed them (upstream stops there)."""
        for c in checks:
            ok = c.run(nodes)
            if len(ok) != len(nodes):
                passed = set(ok)
                for ni in nodes:
                    if ni not in passed:
                        diag.statuses[ni.name] = (c.reasons(ni), c.is_unresolvable(ni))
                nodes = ok
                if not nodes:
                    break
        return nodes

    def find_feasible(self, pod: PodInfo, cache: SchedulerCache, checks: Sequence[Check],
                      diag: Diagnosis, nominated: Mapping[str, list[PodInfo]] | None = None
                      ) -> tuple[list[NodeInfo], int]:
        nodes = cache.node_list()
        n = len(nodes)
        if n == 0:
            return [], 0
        need = num_feasible_nodes_to_find(n, self.percentage)
        start = self.next_start % n
        feasible: list[NodeInfo] = []
        pos = 0
        while len(feasible) < need and pos < n:
            size = min(max(need - len(feasible), 64), n - pos)
            a = (start + pos) % n
            b = a + size
            chunk = nodes[a:b] if b <= n else nodes[a:] + nodes[:b - n]
            pos += size
            if nominated:
                feasible += self.filter(checks, chunk, diag, nominated)
            else:
                feasible += self.run_checks(checks, chunk, diag) if checks else chunk
        self.next_start = (start + pos) % n
        return feasible[:need], pos

    # --- scoring -----------------------------------------------------------

    def score(self, pod: PodInfo, cache: SchedulerCache, state: dict[str, Any],
              nodes: list[NodeInfo]) -> list[int]:
        totals: list[int] | None = None
        for pl, weight in self.scores:
            scorer = pl.pre_score(pod, cache, state, nodes)
            if scorer is None:
                continue
            s = scorer(nodes)
            if totals is None:
                totals = [v * weight for v in s] if weight != 1 else s
            elif weight == 1:
                totals = [a + b for a, b in zip(totals, s)]
            else:
                totals = [a + b * weight for a, b in zip(totals, s)]
        return totals if totals is not None else [0] * len(nodes)

    def select(self, nodes: list[NodeInfo], totals: list[int]) -> NodeInfo:
        best = max(totals)
        top = [i for i, t in enumerate(totals) if t == best]
        return nodes[top[0] if len(top) == 1 else self.rng.choice(top)]

    # --- one pod -----------------------------------------------------------

    def schedule(self, pod: Mapping[str, Any] | PodInfo, cache: SchedulerCache,
                 preempt: bool | None = None) -> ScheduleResult:
        pi = pod if isinstance(pod, PodInfo) else PodInfo(pod)
        state: dict[str, Any] = {}
        num_nodes = len(cache.node_list())
        diag = Diagnosis()
        if num_nodes == 0:
            return ScheduleResult(None, {}, "no nodes available to schedule pods", nominated_node="",
                                  diagnosis=diag)
        pre = self.pre_filter(pi, cache, state)
        if isinstance(pre, Reject):
            diag.pre_filter_msg = pre.message
            for ni in cache.node_list():
                diag.statuses[ni.name] = ((pre.message,), pre.unresolvable)
            return self._failed(pi, cache, diag, num_nodes, preempt)
        others = self.nominated_for(pi, cache)
        # The node a preemption made room on is likely the only one that fits: try it first.
        nominated = pi.nominated_node_name
        if nominated and nominated in cache.nodes and cache.nodes[nominated].node is not None:
            ok = self.filter(pre, [cache.nodes[nominated]], Diagnosis(), others)
            if ok:
                return ScheduleResult(nominated, evaluated_nodes=1, feasible_nodes=1)
        feasible, evaluated = self.find_feasible(pi, cache, pre, diag, others)
        if not feasible:
            return self._failed(pi, cache, diag, num_nodes, preempt)
        if len(feasible) == 1:
            return ScheduleResult(feasible[0].name, evaluated_nodes=evaluated, feasible_nodes=1)
        totals = self.score(pi, cache, state, feasible)
        return ScheduleResult(self.select(feasible, totals).name, evaluated_nodes=evaluated,
                              feasible_nodes=len(feasible))

    def _failed(self, pi: PodInfo, cache: SchedulerCache, diag: Diagnosis, num_nodes: int,
                preempt: bool | None) -> ScheduleResult:
        hist = diag.histogram()
        post = ""
        # Without preemption nothing can be waiting for this pod: clear any nomination.
        result = ScheduleResult(None, hist, "", nominated_node="", evaluated_nodes=num_nodes,
                                diagnosis=diag)
        if self.preemption if preempt is None else preempt:
            from pinnace.scheduler.preemption import preempt as run_preemption
            outcome = run_preemption(pi, cache, self, diag)
            result.nominated_node = outcome.node_name
            if outcome.node_name:
                result.victims = [v.pod for v in outcome.victims]
            else:
                post = "preemption: " + outcome.message
        result.message = fit_error_message(num_nodes, hist, diag.pre_filter_msg, post)
        return result


def default_profile(name: str = DEFAULT_SCHEDULER, *,
                    pvc_lookup: Callable[[str, str], dict[str, Any] | None] | None = None,
                    pv_lookup: Callable[[str], dict[str, Any] | None] | None = None,
                    rng: random.Random | None = None, percentage_of_nodes_to_score: int = 0,
                    preemption: bool = True,
                    default_spread_selector: Callable[[Any], dict[str, Any] | None] | None = None,
                    pdb_lister: Callable[[], Iterable[dict[str, Any]]] | None = None
                    ) -> Profile:
    """Upstream's default plugins, filter order and score weights.
    ``default_spread_selector(pod_info)`` gives the selector of the services
    and controllers that select a pod, for PodTopologySpread's system defaults;
    ``pdb_lister()`` the PodDisruptionBudgets preemption respects."""
    from pinnace.scheduler.plugins import (
        ImageLocality,
        InterPodAffinity,
        NodeAffinity,
        NodeName,
        NodePorts,
        NodeResourcesBalancedAllocation,
        NodeResourcesFit,
        NodeUnschedulable,
        PodTopologySpread,
        TaintToleration,
        VolumeBinding,
    )
    taint, affinity, fit = TaintToleration(), NodeAffinity(), NodeResourcesFit()
    spread, interpod = PodTopologySpread(default_spread_selector), InterPodAffinity()
    filters: list[Any] = [NodeUnschedulable(), NodeName(), taint, affinity, NodePorts(), fit,
                          VolumeBinding(pvc_lookup, pv_lookup), spread, interpod]
    scores: list[tuple[Any, int]] = [(taint, 3), (affinity, 2), (fit, 1), (spread, 2), (interpod, 2),
                                     (NodeResourcesBalancedAllocation(), 1), (ImageLocality(), 1)]
    return Profile(name, filters, scores, preemption=preemption, rng=rng,
                   percentage_of_nodes_to_score=percentage_of_nodes_to_score,
                   pdb_lister=pdb_lister)


_DEFAULT: Profile | None = None


def schedule(pod: Mapping[str, Any] | PodInfo, cache: SchedulerCache, profile: Profile | None = None) -> ScheduleResult:
    """Schedule ``pod`` with ``profile`` (the shared default profile if None)."""
    global _DEFAULT
    if profile is None:
        if _DEFAULT is None:
            _DEFAULT = default_profile()
        profile = _DEFAULT
    return profile.schedule(pod, cache)


def pod_scheduled_condition_unschedulable(message: str, now: str | None = None) -> dict[str, Any]:
    """The PodScheduled=False condition the scheduler writes to pod status."""
    cond: dict[str, Any] = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                            "message": message, "lastProbeTime": None}
    if now is not None:
        cond["lastTransitionTime"] = now
    return cond


def binding_for(pod: Mapping[str, Any], node_name: str) -> dict[str, Any]:
    """The v1 Binding posted to pods/<name>/binding."""
    md = pod.get("metadata") or {}
    meta: dict[str, Any] = {"name": md.get("name", ""), "namespace": md.get("namespace") or "default"}
    if md.get("uid"):
        meta["uid"] = md["uid"]
    return {"apiVersion": "v1", "kind": "Binding", "metadata": meta,
            "target": {"apiVersion": "v1", "kind": "Node", "name": node_name}}


def profiles_by_name(profiles: Sequence[Profile]) -> dict[str, Profile]:
    """schedulerName -> profile; pods naming no known profile are not ours."""
    return {p.name: p for p in profiles}
