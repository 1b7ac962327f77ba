"""NodeAffinity: spec.nodeSelector and required node affinity as a filter,
preferred terms' weights as a score."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pinnace.scheduler.cache import NodeInfo, PodInfo, SchedulerCache
from pinnace.scheduler.plugins._match import compile_node_selector_terms
from pinnace.scheduler.plugins.base import Check, Scorer, default_normalize

ERR_AFFINITY = "node(s) didn't match Pod's node affinity/selector"


def required_node_match(pod: PodInfo) -> Any:
    """A predicate for nodeSelector AND required node affinity, or None when
    the pod has neither."""
    spec = pod.spec
    sel = tuple((spec.get("nodeSelector") or {}).items())
    na = pod.affinity.get("nodeAffinity") or {}
    req = na.get("requiredDuringSchedulingIgnoredDuringExecution")
    terms = compile_node_selector_terms(req.get("nodeSelectorTerms") or []) if req is not None else None
    if not sel and terms is None:
        return None

    def ok(ni: NodeInfo) -> bool:
        labels = ni.labels
        for k, v in sel:
            if labels.get(k) != v:
                return False
        return terms is None or terms(ni)

    return ok


class NodeAffinity:
    name = "NodeAffinity"

    def pre_filter(self, pod: PodInfo, cache: SchedulerCache, state: dict[str, Any]) -> Check | None:
        ok = required_node_match(pod)
        if ok is None:
            return None
        return Check(ok, (ERR_AFFINITY,), unresolvable=True)

    def pre_score(self, pod: PodInfo, cache: SchedulerCache, state: dict[str, Any],
                  nodes: Sequence[NodeInfo]) -> Scorer | None:
        na = pod.affinity.get("nodeAffinity") or {}
        prefs = [(int(p.get("weight") or 0), compile_node_selector_terms([p.get("preference") or {}]))
                 for p in na.get("preferredDuringSchedulingIgnoredDuringExecution") or ()]
        prefs = [(w, m) for w, m in prefs if w]
        if not prefs:
            return None

        def score(nodes: Sequence[NodeInfo]) -> list[int]:
            return default_normalize([sum(w for w, m in prefs if m(ni)) for ni in nodes])

        return score
