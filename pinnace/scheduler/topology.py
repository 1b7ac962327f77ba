"""Assigned pods counted per topology domain, kept current as pods come and
go, so pod (anti-)affinity costs per scheduled pod what its terms have to
say, not a walk over every pod those terms could match.

Two kinds of counts, both built on first use and then updated with each
pod added to or removed from a node:

- ``counts(sig, key, match, ...)``: the pods a predicate (an incoming pod's
  affinity terms) selects, per value of node label ``key``. A predicate is
  only re-evaluated for pods carrying the label its selector requires.
- ``groups()``: the affinity terms of assigned pods, pods with the same
  term (kind, weight, owner namespace, term) in one group, each group
  counted per value of the term's topology key. Replicas share their
  terms, so there are few groups however many pods.

A pod counts while its node is known. A node appearing, going, or changing
labels drops everything built; it is rebuilt when next asked for.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from pinnace.scheduler.cache import PodInfo

MAX_QUERIES = 4096  # distinct predicates remembered; past it all are dropped and rebuilt

# (affinity kind, required?) -> group kind
KINDS = (("podAffinity", True, "aff-req"), ("podAffinity", False, "aff-pref"),
         ("podAntiAffinity", True, "anti-req"), ("podAntiAffinity", False, "anti-pref"))


class TopologyCounts:
    """Pods counted per value of the node label ``key`` (pods on nodes
    without the label are not counted); ``total`` is the sum."""

    __slots__ = ("key", "match", "counts", "total")

    def __init__(self, key: str, match: Callable[[PodInfo], bool] | None = None) -> None:
        self.key = key
        self.match = match
        self.counts: dict[str, int] = {}
        self.total = 0

    def bump(self, labels: Mapping[str, str], n: int) -> None:
        v = labels.get(self.key)
        if v is None:
            return
        c = self.counts.get(v, 0) + n
        if c:
            self.counts[v] = c
        else:
            self.counts.pop(v, None)
        self.total += n


class TermGroup(TopologyCounts):
    """The assigned pods that carry one affinity term. ``owner`` is one of
    them (its namespace and labels resolve the term); ``memo`` is for the
    plugin (the compiled term)."""

    __slots__ = ("kind", "weight", "owner", "term", "members", "memo")

    def __init__(self, kind: str, weight: int, owner: PodInfo, term: Mapping[str, Any]) -> None:
        super().__init__(term.get("topologyKey", ""))
        self.kind, self.weight, self.owner, self.term = kind, weight, owner, term
        self.members = 0
        self.memo: Any = None


def pod_terms(pi: PodInfo) -> list[tuple[Hashable, str, int, Mapping[str, Any]]]:
    """(signature, kind, weight, term) for each affinity term of ``pi``."""
    def make() -> list[tuple[Hashable, str, int, Mapping[str, Any]]]:
        out: list[tuple[Hashable, str, int, Mapping[str, Any]]] = []
        for field, required, kind in KINDS:
            a = pi.affinity.get(field) or {}
            if required:
                items = [(t, 1) for t in a.get("requiredDuringSchedulingIgnoredDuringExecution") or ()]
            else:
                items = [(w.get("podAffinityTerm") or {}, int(w.get("weight") or 0))
                         for w in a.get("preferredDuringSchedulingIgnoredDuringExecution") or ()]
            for t, weight in items:
                extra = tuple((k, pi.labels.get(k)) for k in t.get("matchLabelKeys") or ())
                sig = (kind, weight, pi.namespace, orjson.dumps(t, option=orjson.OPT_SORT_KEYS), extra)
                out.append((sig, kind, weight, t))
        return out
    return pi.memo("topology-terms", make)  # type: ignore[no-any-return]


class TopologyIndex:
    def __init__(self) -> None:
        self._queries: dict[Hashable, TopologyCounts] = {}
        # (label key, value) -> queries whose pods all carry that label; and the rest.
        self._by_label: dict[tuple[str, str], list[TopologyCounts]] = {}
        self._unlabeled: list[TopologyCounts] = []
        self._groups: dict[Hashable, TermGroup] | None = None

    def invalidate(self) -> None:
        self._queries.clear()
        self._by_label.clear()
        self._unlabeled.clear()
        self._groups = None

    # --- upkeep ------------------------------------------------------------

    def pod_changed(self, pi: PodInfo, labels: Mapping[str, str], sign: int) -> None:
        """``pi`` was added to (1) or removed from (-1) a known node with ``labels``."""
        if self._queries:
            for q in self._unlabeled:
                if q.match is not None and q.match(pi):
                    q.bump(labels, sign)
            by_label = self._by_label
            for kv in pi.labels.items():
                qs = by_label.get(kv)
                if qs:
                    for q in qs:
                        if q.match is not None and q.match(pi):
                            q.bump(labels, sign)
        if self._groups is not None and pi.has_pod_affinity_terms:
            self._group(self._groups, pi, labels, sign)

    @staticmethod
    def _group(groups: dict[Hashable, TermGroup], pi: PodInfo, labels: Mapping[str, str],
               sign: int) -> None:
        for sig, kind, weight, term in pod_terms(pi):
            g = groups.get(sig)
            if g is None:
                if sign < 0:
                    continue
                g = groups[sig] = TermGroup(kind, weight, pi, term)
            g.members += sign
            g.bump(labels, sign)
            if g.members <= 0:
                del groups[sig]

    # --- questions ------------------------------------------------------------

    def counts(self, sig: Hashable, key: str, match: Callable[[PodInfo], bool],
               label_keys: Sequence[tuple[str, str]] | None,
               candidates: Callable[[], Iterable[tuple[PodInfo, Mapping[str, str]]]]
               ) -> TopologyCounts:
        """The pods ``match`` selects, per value of ``key``. ``sig`` names the
        predicate; every pod it can select carries one of ``label_keys``
        (None: no such label is known). ``candidates`` gives (pod, node
        labels) to build from. The result is live: read it, do not change it."""
        q = self._queries.get((sig, key))
        if q is not None:
            return q
        if len(self._queries) >= MAX_QUERIES:
            groups = self._groups
            self.invalidate()
            self._groups = groups
        q = TopologyCounts(key, match)
        for p, labels in candidates():
            if match(p):
                q.bump(labels, 1)
        self._queries[(sig, key)] = q
        if label_keys is None:
            self._unlabeled.append(q)
        else:
            for kv in label_keys:
                self._by_label.setdefault(kv, []).append(q)
        return q

    def groups(self, pods: Iterable[tuple[PodInfo, Mapping[str, str]]]) -> dict[Hashable, TermGroup]:
        """The term groups; ``pods`` (assigned pods with affinity terms and
        their node labels) builds them when needed."""
        if self._groups is None:
            groups: dict[Hashable, TermGroup] = {}
            for p, labels in pods:
                self._group(groups, p, labels, 1)
            self._groups = groups
        return self._groups
