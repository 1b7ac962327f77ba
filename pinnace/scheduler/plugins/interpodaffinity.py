"""InterPodAffinity: required pod affinity / anti-affinity by topology
domain (the incoming pod's terms and existing pods' anti-affinity against
it) as a filter; preferred terms, both ways, as a score.

The filter works on counts per (topology key, value), as upstream's
preFilterState does: the pods matching all the affinity terms, the pods
matching each anti-affinity term, and the existing pods whose own required
anti-affinity terms match the incoming pod. The counts come from the
cache's topology index (kept current as pods come and go; existing pods'
terms grouped, replicas sharing one group), so a pod costs what its terms
and the distinct terms around it have to say, not a walk over the pods.
A copy of the check takes moves on top (``update``: preemption's what-ifs,
nominated pods) without touching the index.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from pinnace.scheduler.cache import NodeInfo, PodInfo, SchedulerCache
from pinnace.scheduler.plugins._match import compile_label_selector, selector_alternatives
from pinnace.scheduler.plugins.base import MAX_NODE_SCORE, Check, Scorer
from pinnace.scheduler.topology import TermGroup, TopologyCounts

ERR_AFFINITY = "node(s) didn't match pod affinity rules"
ERR_ANTI_AFFINITY = "node(s) didn't match pod anti-affinity rules"
ERR_EXISTING_ANTI_AFFINITY = "node(s) didn't satisfy existing pods anti-affinity rules"
HARD_POD_AFFINITY_WEIGHT = 1
# How an existing pod's term of each kind counts in the score.
_SCORE_SIGN = {"aff-req": HARD_POD_AFFINITY_WEIGHT, "aff-pref": 1, "anti-pref": -1}

Counts = dict[tuple[str, str], int]
ByKey = dict[str, list[TopologyCounts]]


class Term:
    """A PodAffinityTerm resolved against the pod that owns it."""

    __slots__ = ("namespaces", "match", "key", "alternatives", "sig")

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
        sel = t.get("labelSelector")
        self.match = compile_label_selector(sel, extra)
        self.alternatives = selector_alternatives(sel, extra)
        self.key: str = t.get("topologyKey", "")
        # Which pods it selects (not where): equal for replicas.
        self.sig = (None if self.namespaces is None else tuple(sorted(self.namespaces)),
                    orjson.dumps(sel, option=orjson.OPT_SORT_KEYS), tuple(sorted(extra.items())))

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


def _group_term(g: TermGroup) -> Term:
    t = g.memo
    if t is None:
        t = g.memo = Term(g.owner, g.term)
    return t  # type: ignore[no-any-return]


def _counts(cache: SchedulerCache, terms: Sequence[Term], key: str) -> TopologyCounts:
    """The pods matching every one of ``terms``, per value of ``key``."""
    first = terms[0]
    alts = first.alternatives
    label_keys = min(alts, key=len) if alts else None
    if len(terms) == 1:
        match = first.matches
    else:
        def match(p: PodInfo) -> bool:
            return all(t.matches(p) for t in terms)
    return cache.topology_counts((tuple(t.sig for t in terms), key), key, match, label_keys,
                                 first.namespaces, alts)


def _total(base: ByKey, delta: Counts, key: str, v: str) -> int:
    n = delta.get((key, v), 0) if delta else 0
    for c in base.get(key, ()):
        n += c.counts.get(v, 0)
    return n


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
    """The required terms against the counts; see the module doc. The
    ``base`` counts are the index's (live, read only); moves go to ``d_*``."""

    __slots__ = ("pod", "affinity", "anti", "aff", "anti_c", "existing", "d_aff", "d_anti",
                 "d_existing", "self_match", "_aff_any")

    def __init__(self, pod: PodInfo, affinity: list[Term], anti: list[Term]) -> None:
        super().__init__(self._ok, self._why, unresolvable=self._unresolvable)
        self.pod, self.affinity, self.anti = pod, affinity, anti
        self.aff: ByKey = {}
        self.anti_c: ByKey = {}
        self.existing: ByKey = {}
        self.d_aff: Counts = {}
        self.d_anti: Counts = {}
        self.d_existing: Counts = {}
        # The first pod of a group that selects itself may go anywhere.
        self.self_match = bool(affinity) and all(t.matches(pod) for t in affinity)
        self._aff_any: bool | None = None

    def count(self, cache: SchedulerCache) -> _AffinityCheck:
        for t in self.affinity:
            self.aff.setdefault(t.key, []).append(_counts(cache, self.affinity, t.key))
        for t in self.anti:
            self.anti_c.setdefault(t.key, []).append(_counts(cache, [t], t.key))
        if cache.anti_affinity_pods:
            for g in cache.term_groups().values():
                if g.kind == "anti-req" and g.total and _group_term(g).matches(self.pod):
                    self.existing.setdefault(g.key, []).append(g)
        return self

    @property
    def empty(self) -> bool:
        return not self.affinity and not self.anti and not self.existing

    def _affinity_pods_exist(self) -> bool:
        # Upstream: affinityCounts is not empty.
        a = self._aff_any
        if a is None:
            a = self._aff_any = any(c.total for cs in self.aff.values() for c in cs) or \
                any(n > 0 for n in self.d_aff.values())
        return a

    def _why(self, ni: NodeInfo) -> tuple[str, ...]:
        labels = ni.labels
        if self.affinity:
            found = True
            for t in self.affinity:
                v = labels.get(t.key)
                if v is None:
                    return (ERR_AFFINITY,)  # every topology key must be on the node
                if _total(self.aff, self.d_aff, t.key, v) <= 0:
                    found = False
            if not found and (not self.self_match or self._affinity_pods_exist()):
                return (ERR_AFFINITY,)
        for t in self.anti:
            v = labels.get(t.key)
            if v is not None and _total(self.anti_c, self.d_anti, t.key, v) > 0:
                return (ERR_ANTI_AFFINITY,)
        if self.existing or self.d_existing:
            for key in self.existing:
                v = labels.get(key)
                if v is not None and _total(self.existing, self.d_existing, key, v) > 0:
                    return (ERR_EXISTING_ANTI_AFFINITY,)
            for (key, v), n in self.d_existing.items():
                if key not in self.existing and n > 0 and labels.get(key) == v:
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
        c.aff, c.anti_c, c.existing = self.aff, self.anti_c, self.existing
        c.d_aff, c.d_anti, c.d_existing = dict(self.d_aff), dict(self.d_anti), dict(self.d_existing)
        c._aff_any = None
        return c

    def update(self, pod: PodInfo, node: NodeInfo, sign: int) -> None:
        if pod.key == self.pod.key:
            return
        if pod.required_anti_affinity:
            for t, _ in _required_anti(pod):
                if t.matches(self.pod):
                    _bump(self.d_existing, t.key, node, sign)
        if self.affinity and all(t.matches(pod) for t in self.affinity):
            for t in self.affinity:
                _bump(self.d_aff, t.key, node, sign)
            self._aff_any = None
        for t in self.anti:
            if t.matches(pod):
                _bump(self.d_anti, t.key, node, sign)


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
        # (topology key, weight, pods per value): the pod's preferred terms
        # over the pods they match, and other pods' terms that match the pod.
        parts: list[tuple[str, int, dict[str, int]]] = []
        for sign, terms in ((1, pref), (-1, pref_anti)):
            for t, w in terms:
                c = _counts(cache, [t], t.key)
                if c.total and w:
                    parts.append((t.key, sign * w, c.counts))
        if cache.affinity_pods:
            for g in cache.term_groups().values():
                mult = _SCORE_SIGN.get(g.kind)
                if mult is not None and g.total and g.weight and _group_term(g).matches(pod):
                    parts.append((g.key, mult * g.weight, g.counts))
        if not parts:
            return None

        def score(nodes: Sequence[NodeInfo]) -> list[int]:
            raw = []
            for ni in nodes:
                labels = ni.labels
                s = 0
                for k, w, counts in parts:
                    v = labels.get(k)
                    if v is not None:
                        s += w * counts.get(v, 0)
                raw.append(s)
            lo, hi = min(raw), max(raw)
            if hi == lo:
                return [0] * len(raw)
            return [int(MAX_NODE_SCORE * (s - lo) / (hi - lo)) for s in raw]

        return score
