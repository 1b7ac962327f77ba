"""PodTopologySpread: keep matching pods evenly spread over topology
domains. DoNotSchedule constraints filter (skew = pods in the node's domain
+ the pod itself - the least-loaded domain, must not exceed maxSkew);
ScheduleAnyway constraints score. Only nodes that pass the pod's node
affinity/selector and carry every constraint's key count as domains
(nodeAffinityPolicy Honor, nodeTaintsPolicy Ignore: the defaults).

A pod with no constraints of its own gets the cluster's system defaults, as
upstream: ScheduleAnyway on hostname (maxSkew 3) and zone (maxSkew 5), over
the pods selected by the services and controllers that select this pod, so
replicas spread over nodes without anyone asking.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from pinnace.scheduler.cache import NodeInfo, PodInfo, SchedulerCache
from pinnace.scheduler.plugins._match import compile_label_selector
from pinnace.scheduler.plugins.base import MAX_NODE_SCORE, Check, Scorer
from pinnace.scheduler.plugins.nodeaffinity import required_node_match

ERR_CONSTRAINTS = "node(s) didn't match pod topology spread constraints"
ERR_MISSING_LABEL = "node(s) didn't match pod topology spread constraints (missing required label)"
HOSTNAME = "kubernetes.io/hostname"


ZONE = "topology.kubernetes.io/zone"
SelectorFor = Callable[[PodInfo], "dict[str, Any] | None"]


class _Constraint:
    __slots__ = ("key", "max_skew", "min_domains", "match", "memo_key", "self_match")

    def __init__(self, c: dict[str, Any], pod: PodInfo) -> None:
        self.key: str = c.get("topologyKey", "")
        self.max_skew = int(c.get("maxSkew") or 1)
        self.min_domains = int(c.get("minDomains") or 1)
        extra = {k: pod.labels[k] for k in c.get("matchLabelKeys") or () if k in pod.labels}
        self.match = compile_label_selector(c.get("labelSelector"), extra)
        self.self_match = 1 if self.match(pod.labels) else 0
        # What a node's count of matching pods depends on, besides the node.
        self.memo_key = ("spread", pod.namespace, orjson.dumps(
            [c.get("labelSelector"), extra], option=orjson.OPT_SORT_KEYS))


def _on_node(ni: NodeInfo, ns: str, c: _Constraint) -> int:
    """Pods on ``ni`` in ``ns`` that ``c`` selects, remembered on the node
    until its pods change: one binding changes one node's counts, so the
    next pod's counts are mostly lookups, not a walk over every pod."""
    memo = ni.memo
    n = memo.get(c.memo_key)
    if n is None:
        match = c.match
        n = memo[c.memo_key] = sum(1 for p in ni.pods.values()
                                   if p.namespace == ns and not p.terminating and match(p.labels))
    return n  # type: ignore[no-any-return]


def _constraints(pod: PodInfo, mode: str) -> list[_Constraint]:
    return [_Constraint(c, pod) for c in pod.spec.get("topologySpreadConstraints") or ()
            if (c.get("whenUnsatisfiable") or "DoNotSchedule") == mode]


def _system_defaults(pod: PodInfo, selector_for: SelectorFor | None) -> list[_Constraint]:
    if selector_for is None or pod.spec.get("topologySpreadConstraints"):
        return []
    sel = selector_for(pod)
    if not sel:
        return []
    return [_Constraint({"topologyKey": HOSTNAME, "maxSkew": 3, "labelSelector": sel}, pod),
            _Constraint({"topologyKey": ZONE, "maxSkew": 5, "labelSelector": sel}, pod)]


def _count(pod: PodInfo, cache: SchedulerCache, cons: list[_Constraint],
           require_all: bool = True) -> list[dict[str, int]]:
    """Per constraint, matching pods per domain over eligible nodes; every
    eligible domain is present (possibly with 0). With ``require_all`` off
    (system defaults) a node missing one constraint's key still counts for
    the others."""
    node_ok = required_node_match(pod)
    keys = [c.key for c in cons]
    counts: list[dict[str, int]] = [{} for _ in cons]
    eligible: dict[str, bool] = {}
    for ni in cache.node_list():
        labels = ni.labels
        ok = (not require_all or all(k in labels for k in keys)) and \
            (node_ok is None or node_ok(ni))
        eligible[ni.name] = ok
        if ok:
            for i, k in enumerate(keys):
                if k in labels:
                    counts[i].setdefault(labels[k], 0)
    ns = pod.namespace
    for ni in cache.node_list():
        if not eligible.get(ni.name) or not ni.pods:
            continue
        labels = ni.labels
        for i, c in enumerate(cons):
            v = labels.get(c.key)
            if v is not None:
                counts[i][v] = counts[i].get(v, 0) + _on_node(ni, ns, c)
    return counts


def _count_on(pod: PodInfo, nodes: Sequence[NodeInfo], cons: list[_Constraint],
              require_all: bool) -> list[dict[str, int]]:
    """Like _count, but over the nodes being scored only, as upstream's
    PreScore does: O(pods on those nodes), not O(pods in the namespace)."""
    counts: list[dict[str, int]] = [{} for _ in cons]
    keys = [c.key for c in cons]
    ns = pod.namespace
    for ni in nodes:
        labels = ni.labels
        if require_all and any(k not in labels for k in keys):
            continue
        for i, c in enumerate(cons):
            v = labels.get(c.key)
            if v is not None:
                counts[i][v] = counts[i].get(v, 0) + (_on_node(ni, ns, c) if ni.pods else 0)
    return counts


class _SpreadCheck(Check):
    """DoNotSchedule constraints over matching-pod counts per domain. The
    least-loaded domain of each constraint comes from a histogram of the
    counts, so moving one pod (``update``) costs O(distinct counts)."""

    __slots__ = ("pod", "cons", "counts", "hists", "mins", "node_ok")

    def __init__(self, pod: PodInfo, cons: list[_Constraint], counts: list[dict[str, int]],
                 node_ok: Callable[[NodeInfo], bool] | None) -> None:
        super().__init__(self._ok, self._why, unresolvable=self._missing_key)
        self.pod, self.cons, self.counts, self.node_ok = pod, cons, counts, node_ok
        self.hists: list[dict[int, int]] = []
        for cnt in counts:
            h: dict[int, int] = {}
            for n in cnt.values():
                h[n] = h.get(n, 0) + 1
            self.hists.append(h)
        self.mins = [self._min(i) for i in range(len(cons))]

    def _min(self, i: int) -> int:
        # Fewer domains than minDomains: the global minimum is taken as 0.
        cnt = self.counts[i]
        if not cnt or len(cnt) < self.cons[i].min_domains:
            return 0
        return min(self.hists[i])

    def _why(self, ni: NodeInfo) -> tuple[str, ...]:
        labels = ni.labels
        for c, cnt, lo in zip(self.cons, self.counts, self.mins):
            v = labels.get(c.key)
            if v is None:
                return (ERR_MISSING_LABEL,)
            if cnt.get(v, 0) + c.self_match - lo > c.max_skew:
                return (ERR_CONSTRAINTS,)
        return ()

    def _ok(self, ni: NodeInfo) -> bool:
        return not self._why(ni)

    def _missing_key(self, ni: NodeInfo) -> bool:
        return any(c.key not in ni.labels for c in self.cons)

    def copy(self) -> _SpreadCheck:
        c = _SpreadCheck.__new__(_SpreadCheck)
        Check.__init__(c, c._ok, c._why, unresolvable=c._missing_key)
        c.pod, c.cons, c.node_ok = self.pod, self.cons, self.node_ok
        c.counts = [dict(d) for d in self.counts]
        c.hists = [dict(h) for h in self.hists]
        c.mins = list(self.mins)
        return c

    def update(self, pod: PodInfo, node: NodeInfo, sign: int) -> None:
        if pod.terminating or pod.namespace != self.pod.namespace or self._missing_key(node) or \
                (self.node_ok is not None and not self.node_ok(node)):
            return
        for i, c in enumerate(self.cons):
            if not c.match(pod.labels):
                continue
            v = node.labels[c.key]
            cnt, h = self.counts[i], self.hists[i]
            was = cnt.get(v, 0)
            now = was + sign
            if v in cnt:
                h[was] -= 1
                if not h[was]:
                    del h[was]
            cnt[v] = now
            h[now] = h.get(now, 0) + 1
            self.mins[i] = self._min(i)


class PodTopologySpread:
    name = "PodTopologySpread"

    def __init__(self, default_selector: SelectorFor | None = None) -> None:
        self.default_selector = default_selector

    def pre_filter(self, pod: PodInfo, cache: SchedulerCache, state: dict[str, Any]) -> Check | None:
        cons = _constraints(pod, "DoNotSchedule")
        if not cons:
            return None
        return _SpreadCheck(pod, cons, _count(pod, cache, cons), required_node_match(pod))

    def pre_score(self, pod: PodInfo, cache: SchedulerCache, state: dict[str, Any],
                  nodes: Sequence[NodeInfo]) -> Scorer | None:
        cons = _constraints(pod, "ScheduleAnyway")
        require_all = bool(cons) or bool(pod.spec.get("topologySpreadConstraints"))
        if not cons:
            cons = _system_defaults(pod, self.default_selector)
        if not cons:
            return None
        counts = _count_on(pod, nodes, cons, require_all)
        weights = [math.log(len(cnt) + 2) for cnt in counts]

        def score(nodes: Sequence[NodeInfo]) -> list[int]:
            raw: list[int | None] = []
            for ni in nodes:
                if require_all and any(c.key not in ni.labels for c in cons):
                    raw.append(None)  # ignored node: scores 0
                    continue
                s = 0.0
                for c, cnt, w in zip(cons, counts, weights):
                    v = ni.labels.get(c.key)
                    if v is not None:
                        s += cnt.get(v, 0) * w + (c.max_skew - 1)
                raw.append(round(s))
            valid = [s for s in raw if s is not None]
            if not valid:
                return [0] * len(nodes)
            lo, hi = min(valid), max(valid)
            return [0 if s is None else MAX_NODE_SCORE if hi == 0 else MAX_NODE_SCORE * (hi + lo - s) // hi
                    for s in raw]

        return score
