"""InterPodAffinity: required pod affinity / anti-affinity by topology
domain (the incoming pod's terms and existing pods' anti-affinity against
it) as a filter; preferred terms, both ways, as a score.

The work is proportional to the pods the terms can match (those in the
terms' namespaces) plus the few pods that carry affinity terms, which the
cache indexes; pods without any affinity cost nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pinnace.scheduler.cache import NodeInfo, PodInfo, SchedulerCache
from pinnace.scheduler.plugins._match import compile_label_selector
from pinnace.scheduler.plugins.base import MAX_NODE_SCORE, Check, Scorer

ERR_AFFINITY = "node(s) didn't match pod affinity rules"
ERR_ANTI_AFFINITY = "node(s) didn't match pod anti-affinity rules"
ERR_EXISTING_ANTI_AFFINITY = "node(s) didn't satisfy existing pods anti-affinity rules"
HARD_POD_AFFINITY_WEIGHT = 1

class Term:
    """A PodAffinityTerm resolved against the pod that owns it."""

    __slots__ = ("namespaces", "match", "key")

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
        self.key: str = t.get("topologyKey", "")

    def matches(self, p: PodInfo) -> bool:
        return (self.namespaces is None or p.namespace in self.namespaces) and self.match(p.labels)

def _terms(pod: PodInfo, kind: str, required: bool) -> list[tuple[Term, int]]:
    a = pod.affinity.get(kind) or {}
    if required:
        return [(Term(pod, t), 1) for t in a.get("requiredDuringSchedulingIgnoredDuringExecution") or ()]
    return [(Term(pod, w.get("podAffinityTerm") or {}), int(w.get("weight") or 0))
            for w in a.get("preferredDuringSchedulingIgnoredDuringExecution") or ()]

def _candidates(cache: SchedulerCache, term: Term) -> Iterable[PodInfo]:
    return cache.pods_in(term.namespaces)

def _domains(cache: SchedulerCache, term: Term) -> set[str]:
    """Values of the term's topology key on nodes running a matching pod."""
    out = set()
    for p in _candidates(cache, term):
        ni = cache.nodes.get(p.node_name)
        if ni is None or ni.node is None:
            continue
        v = ni.labels.get(term.key)
        if v is not None and term.matches(p):
            out.add(v)
    return out

class InterPodAffinity:
    name = "InterPodAffinity"

    def pre_filter(self, pod: PodInfo, cache: SchedulerCache, state: dict[str, Any]) -> Check | None:
        affinity = [t for t, _ in _terms(pod, "podAffinity", True)]
        anti = [t for t, _ in _terms(pod, "podAntiAffinity", True)]
        forbidden: set[tuple[str, str]] = set()
        for p in cache.anti_affinity_pods.values():
            ni = cache.nodes.get(p.node_name)
            if ni is None or ni.node is None:
                continue
            for t, _ in p.memo("anti-req", lambda p=p: _terms(p, "podAntiAffinity", True)):
                v = ni.labels.get(t.key)
                if v is not None and t.matches(pod):
                    forbidden.add((t.key, v))
        if not affinity and not anti and not forbidden:
            return None
        aff_domains = [(t.key, _domains(cache, t)) for t in affinity]
        # The first pod of a group that selects itself may go anywhere.
        any_node = bool(affinity) and not any(d for _, d in aff_domains) and all(t.matches(pod) for t in affinity)
        anti_domains = [(t.key, _domains(cache, t)) for t in anti]

        def why(ni: NodeInfo) -> tuple[str, ...]:
            labels = ni.labels
            if not any_node:
                for k, d in aff_domains:
                    if labels.get(k) not in d:
                        return (ERR_AFFINITY,)
            for k, d in anti_domains:
                v = labels.get(k)
                if v is not None and v in d:
                    return (ERR_ANTI_AFFINITY,)
            for k, v in forbidden:
                if labels.get(k) == v:
                    return (ERR_EXISTING_ANTI_AFFINITY,)
            return ()

        return Check(lambda ni: not why(ni), why, unresolvable=lambda ni: why(ni) == (ERR_AFFINITY,))

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
