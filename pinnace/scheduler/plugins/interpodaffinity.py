"""InterPodAffinity: required pod affinity / anti-affinity by topology
domain (the incoming pod's terms and existing pods' anti-affinity against
it) as a filter; preferred terms, both ways, as a score.

The filter counts, per (topology key, value), the pods its terms match, as
upstream's preFilterState does: an existing pod counts for the affinity
terms if it matches all of them, for each anti-affinity term it matches,
and for each of its own required anti-affinity terms that matches the
incoming pod. The counts can be moved by ``update`` (preemption's
what-ifs, nominated pods).

The work is proportional to the pods the terms can match, found through the
cache's label index (an equality or ``In`` requirement narrows them to the
pods carrying that label), plus the few pods that carry affinity terms,
which the cache also indexes; pods without any affinity cost nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pinnace.scheduler.cache import NodeInfo, PodInfo, SchedulerCache
from pinnace.scheduler.plugins._match import compile_label_selector, selector_alternatives
from pinnace.scheduler.plugins.base import MAX_NODE_SCORE, Check, Scorer

ERR_AFFINITY = "node(s) didn't match pod affinity rules"
ERR_ANTI_AFFINITY = "node(s) didn't match pod anti-affinity rules"
ERR_EXISTING_ANTI_AFFINITY = "node(s) didn't satisfy existing pods anti-affinity rules"
HARD_POD_AFFINITY_WEIGHT = 1

Counts = dict[tuple[str, str], int]


class Term:
    """A PodAffinityTerm resolved against the pod that owns it."""

    __slots__ = ("namespaces", "match", "key", "alternatives")

    def __init__(self, owner: PodInfo, t: Mapping[str, Any]) -> None:
        ns_sel = t.get("namespaceSelector")
        names = t.get("namespaces") or []
        self.namespaces: frozenset[str] | None
        if ns_sel is not None and not (ns_sel.get("matchLabels") or ns_sel.get("matchExpressions")):
            self.namespaces = None  # {} selects every namespace
        elif not names and ns_sel is None:
            self.namespaces = frozenset((owner.namespace,))
        else:
            # Namespace labels are not known here: a non-empty namespaceSelector adds none.
            self.namespaces = frozenset(names)
        extra = {k: owner.labels[k] for k in t.get("matchLabelKeys") or () if k in owner.labels}
        self.match = compile_label_selector(t.get("labelSelector"), extra)
        self.alternatives = selector_alternatives(t.get("labelSelector"), extra)
        self.key: str = t.get("topologyKey", "")

    def matches(self, p: PodInfo) -> bool:
        return (self.namespaces is None or p.namespace in self.namespaces) and self.match(p.labels)


def _terms(pod: PodInfo, kind: str, required: bool) -> list[tuple[Term, int]]:
    a = pod.affinity.get(kind) or {}
    if required:
        return [(Term(pod, t), 1) for t in a.get("requiredDuringSchedulingIgnoredDuringExecution") or ()]
    return [(Term(pod, w.get("podAffinityTerm") or {}), int(w.get("weight") or 0))
            for w in a.get("preferredDuringSchedulingIgnoredDuringExecution") or ()]


def _required_anti(p: PodInfo) -> list[tuple[Term, int]]:
    return p.memo("anti-req", lambda: _terms(p, "podAntiAffinity", True))  # type: ignore[no-any-return]


def _candidates(cache: SchedulerCache, term: Term) -> Iterable[PodInfo]:
    return cache.candidate_pods(term.namespaces, term.alternatives)


def _bump(counts: Counts, key: str, node: NodeInfo, n: int) -> None:
    v = node.labels.get(key)
    if v is None:
        return
    k = (key, v)
    c = counts.get(k, 0) + n
    if c:
        counts[k] = c
    else:
        counts.pop(k, None)


class _AffinityCheck(Check):
    """The required terms against the counts; see the module doc."""

    __slots__ = ("pod", "affinity", "anti", "aff_counts", "anti_counts", "existing",
                 "self_match")

    def __init__(self, pod: PodInfo, affinity: list[Term], anti: list[Term]) -> None:
        super().__init__(self._ok, self._why, unresolvable=self._unresolvable)
        self.pod, self.affinity, self.anti = pod, affinity, anti
        self.aff_counts: Counts = {}
        self.anti_counts: Counts = {}
        self.existing: Counts = {}
        # The first pod of a group that selects itself may go anywhere.
        self.self_match = bool(affinity) and all(t.matches(pod) for t in affinity)

    def count(self, cache: SchedulerCache) -> _AffinityCheck:
        nodes = cache.nodes
        for p in cache.anti_affinity_pods.values():
            ni = nodes.get(p.node_name)
            if ni is not None and ni.node is not None:
                self._existing(p, ni, 1)
        if self.affinity:
            # A pod counts only if it matches every term: start from the
            # first term's candidates.
            first = self.affinity[0]
            for p in _candidates(cache, first):
                ni = nodes.get(p.node_name)
                if ni is not None and ni.node is not None:
                    self._affinity(p, ni, 1)
        for t in self.anti:
            for p in _candidates(cache, t):
                ni = nodes.get(p.node_name)
                if ni is not None and ni.node is not None and t.matches(p):
                    _bump(self.anti_counts, t.key, ni, 1)
        return self

    def _existing(self, p: PodInfo, ni: NodeInfo, n: int) -> None:
        for t, _ in _required_anti(p):
            if t.matches(self.pod):
                _bump(self.existing, t.key, ni, n)

    def _affinity(self, p: PodInfo, ni: NodeInfo, n: int) -> None:
        if all(t.matches(p) for t in self.affinity):
            for t in self.affinity:
                _bump(self.aff_counts, t.key, ni, n)

    @property
    def empty(self) -> bool:
        return not self.affinity and not self.anti and not self.existing

    def _why(self, ni: NodeInfo) -> tuple[str, ...]:
        labels = ni.labels
        if self.affinity:
            found = True
            for t in self.affinity:
                v = labels.get(t.key)
                if v is None:
                    return (ERR_AFFINITY,)  # every topology key must be on the node
                if self.aff_counts.get((t.key, v), 0) <= 0:
                    found = False
            if not found and (self.aff_counts or not self.self_match):
                return (ERR_AFFINITY,)
        counts = self.anti_counts
        if counts:
            for t in self.anti:
                v = labels.get(t.key)
                if v is not None and counts.get((t.key, v), 0) > 0:
                    return (ERR_ANTI_AFFINITY,)
        existing = self.existing
        if existing:
            for kv in labels.items():
                if existing.get(kv, 0) > 0:
                    return (ERR_EXISTING_ANTI_AFFINITY,)
        return ()

    def _ok(self, ni: NodeInfo) -> bool:
        return not self._why(ni)

    def _unresolvable(self, ni: NodeInfo) -> bool:
        return self._why(ni) == (ERR_AFFINITY,)

    def copy(self) -> _AffinityCheck:
        c = _AffinityCheck.__new__(_AffinityCheck)
        Check.__init__(c, c._ok, c._why, unresolvable=c._unresolvable)
        c.pod, c.affinity, c.anti, c.self_match = self.pod, self.affinity, self.anti, self.self_match
        c.aff_counts, c.anti_counts = dict(self.aff_counts), dict(self.anti_counts)
        c.existing = dict(self.existing)
        return c

    def update(self, pod: PodInfo, node: NodeInfo, sign: int) -> None:
        if pod.key == self.pod.key:
            return
        if pod.required_anti_affinity:
            self._existing(pod, node, sign)
        if self.affinity:
            self._affinity(pod, node, sign)
        for t in self.anti:
            if t.matches(pod):
                _bump(self.anti_counts, t.key, node, sign)


class InterPodAffinity:
    name = "InterPodAffinity"

    def pre_filter(self, pod: PodInfo, cache: SchedulerCache, state: dict[str, Any]) -> Check | None:
        affinity = [t for t, _ in _terms(pod, "podAffinity", True)]
        anti = [t for t, _ in _terms(pod, "podAntiAffinity", True)]
        check = _AffinityCheck(pod, affinity, anti).count(cache)
        # Nothing to say, unless a nominated pod that counts as placed brings
        # anti-affinity of its own.
        if check.empty and not any(p.required_anti_affinity for on in cache.nominated.values()
                                   for p in on.values()):
            return None
        return check

    def pre_score(self, pod: PodInfo, cache: SchedulerCache, state: dict[str, Any],
                  nodes: Sequence[NodeInfo]) -> Scorer | None:
        pref = _terms(pod, "podAffinity", False)
        pref_anti = _terms(pod, "podAntiAffinity", False)
        if not pref and not pref_anti and not cache.affinity_pods:
            return None
        scores: dict[str, dict[str, int]] = {}

        def add(ni: NodeInfo | None, key: str, w: int) -> None:
            if ni is None or ni.node is None:
                return
            v = ni.labels.get(key)
            if v is not None:
                d = scores.setdefault(key, {})
                d[v] = d.get(v, 0) + w

        for sign, terms in ((1, pref), (-1, pref_anti)):
            for t, w in terms:
                for p in _candidates(cache, t):
                    if t.matches(p):
                        add(cache.nodes.get(p.node_name), t.key, sign * w)
        for p in cache.affinity_pods.values():
            ni = cache.nodes.get(p.node_name)
            groups: list[tuple[int, list[tuple[Term, int]]]] = [
                (HARD_POD_AFFINITY_WEIGHT, p.memo("aff-req", lambda p=p: _terms(p, "podAffinity", True))),
                (1, p.memo("aff-pref", lambda p=p: _terms(p, "podAffinity", False))),
                (-1, p.memo("anti-pref", lambda p=p: _terms(p, "podAntiAffinity", False))),
            ]
            for mult, terms in groups:
                for t, w in terms:
                    if t.matches(pod):
                        add(ni, t.key, mult * w)
        if not scores:
            return None
        items = list(scores.items())

        def score(nodes: Sequence[NodeInfo]) -> list[int]:
            raw = [sum(d.get(ni.labels.get(k, ""), 0) if k in ni.labels else 0 for k, d in items) for ni in nodes]
            lo, hi = min(raw), max(raw)
            if hi == lo:
                return [0] * len(raw)
            return [int(MAX_NODE_SCORE * (s - lo) / (hi - lo)) for s in raw]

        return score
