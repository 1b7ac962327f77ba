"""InterPodAffinity on the topology index agrees with a plain reading of
upstream's rules, evaluated pod by pod, while the cluster changes under it
(pods added and removed, a node relabeled, removed and back)."""

from __future__ import annotations

import random
from typing import Any

from conftest import make_node, make_pod

from pinnace.scheduler.cache import PodInfo, SchedulerCache
from pinnace.scheduler.framework import Diagnosis
from pinnace.scheduler.plugins._match import compile_label_selector
from pinnace.scheduler.plugins.interpodaffinity import InterPodAffinity

KEYS = ("kubernetes.io/hostname", "zone", "rack")
APPS = ("web", "db", "cache")


def random_term(rng: random.Random) -> dict[str, Any]:
    sel: dict[str, Any]
    r = rng.random()
    if r < 0.4:
        sel = {"matchLabels": {"app": rng.choice(APPS)}}
    elif r < 0.6:
        sel = {"matchExpressions": [{"key": "app", "operator": "In", "values": rng.sample(APPS, 2)}]}
    elif r < 0.75:
        sel = {"matchExpressions": [{"key": "tier", "operator": "Exists"}]}
    elif r < 0.85:
        sel = {"matchLabels": {"app": rng.choice(APPS)},
               "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["b"]}]}
    else:
        sel = {"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["web"]}]}
    t: dict[str, Any] = {"labelSelector": sel, "topologyKey": rng.choice(KEYS)}
    if rng.random() < 0.15:
        t["namespaces"] = ["default", "other"]
    return t


def random_affinity(rng: random.Random) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind in ("podAffinity", "podAntiAffinity"):
        a: dict[str, Any] = {}
        if rng.random() < 0.35:
            a["requiredDuringSchedulingIgnoredDuringExecution"] = [
                random_term(rng) for _ in range(rng.choice((1, 1, 2)))]
        if rng.random() < 0.35:
            a["preferredDuringSchedulingIgnoredDuringExecution"] = [
                {"weight": rng.randint(1, 100), "podAffinityTerm": random_term(rng)}]
        if a:
            out[kind] = a
    return out


def random_pod(rng: random.Random, name: str, node: str | None = None) -> dict[str, Any]:
    labels = {"app": rng.choice(APPS)}
    if rng.random() < 0.5:
        labels["tier"] = rng.choice("ab")
    spec: dict[str, Any] = {}
    if rng.random() < 0.5:
        spec["affinity"] = random_affinity(rng)
    return make_pod(name, node=node, labels=labels, ns=rng.choice(("default", "default", "other")), **spec)


# --- the reference: every pod looked at, every time ------------------------


def _matches(owner: PodInfo, t: dict[str, Any], p: PodInfo) -> bool:
    ns = t.get("namespaces") or [owner.namespace]
    return p.namespace in ns and compile_label_selector(t.get("labelSelector"))(p.labels)


def _required(p: PodInfo, kind: str) -> list[dict[str, Any]]:
    return (p.affinity.get(kind) or {}).get("requiredDuringSchedulingIgnoredDuringExecution") or []


def reference_feasible(cache: SchedulerCache, pod: PodInfo) -> set[str]:
    placed = [(p, cache.nodes[p.node_name]) for p in cache.pods.values()
              if cache.nodes[p.node_name].node is not None]
    aff, anti = _required(pod, "podAffinity"), _required(pod, "podAntiAffinity")
    all_aff = [(q, m) for q, m in placed if aff and all(_matches(pod, t, q) for t in aff)]
    any_aff = any(t["topologyKey"] in m.labels for q, m in all_aff for t in aff)
    self_match = bool(aff) and all(_matches(pod, t, pod) for t in aff)
    out = set()
    for ni in cache.node_list():
        lab = ni.labels
        ok = True
        if aff:
            if any(t["topologyKey"] not in lab for t in aff):
                ok = False
            else:
                exist = all(any(m.labels.get(t["topologyKey"]) == lab[t["topologyKey"]] for _, m in all_aff)
                            for t in aff)
                ok = exist or (not any_aff and self_match)
        for t in anti:
            k = t["topologyKey"]
            if k in lab and any(m.labels.get(k) == lab[k] and _matches(pod, t, q) for q, m in placed):
                ok = False
        for q, m in placed:
            for t in _required(q, "podAntiAffinity"):
                k = t["topologyKey"]
                if k in m.labels and lab.get(k) == m.labels[k] and _matches(q, t, pod):
                    ok = False
        if ok:
            out.add(ni.name)
    return out


def reference_raw_scores(cache: SchedulerCache, pod: PodInfo) -> dict[str, int]:
    placed = [(p, cache.nodes[p.node_name]) for p in cache.pods.values()
              if cache.nodes[p.node_name].node is not None]
    contrib: list[tuple[str, str, int]] = []  # (key, value, weight)

    def pref(p: PodInfo, kind: str) -> list[tuple[dict[str, Any], int]]:
        return [(w["podAffinityTerm"], w["weight"]) for w in
                (p.affinity.get(kind) or {}).get("preferredDuringSchedulingIgnoredDuringExecution") or []]

    for sign, kind in ((1, "podAffinity"), (-1, "podAntiAffinity")):
        for t, w in pref(pod, kind):
            for q, m in placed:
                if t["topologyKey"] in m.labels and _matches(pod, t, q):
                    contrib.append((t["topologyKey"], m.labels[t["topologyKey"]], sign * w))
    for q, m in placed:
        terms = [(t, 1) for t in _required(q, "podAffinity")] + pref(q, "podAffinity") + \
            [(t, -w) for t, w in pref(q, "podAntiAffinity")]
        for t, w in terms:
            if t["topologyKey"] in m.labels and _matches(q, t, pod):
                contrib.append((t["topologyKey"], m.labels[t["topologyKey"]], w))
    return {ni.name: sum(w for k, v, w in contrib if ni.labels.get(k) == v) for ni in cache.node_list()}


def feasible(cache: SchedulerCache, pod: PodInfo) -> set[str]:
    check = InterPodAffinity().pre_filter(pod, cache, {})
    nodes = cache.node_list()
    if check is None:
        return {ni.name for ni in nodes}
    from pinnace.scheduler.framework import Profile
    return {ni.name for ni in Profile.run_checks([check], nodes, Diagnosis())}


def scores(cache: SchedulerCache, pod: PodInfo) -> list[int]:
    nodes = cache.node_list()
    scorer = InterPodAffinity().pre_score(pod, cache, {}, nodes)
    return scorer(nodes) if scorer is not None else [0] * len(nodes)


def normalized(raw: list[int]) -> list[int]:
    lo, hi = min(raw), max(raw)
    return [0] * len(raw) if hi == lo else [int(100 * (s - lo) / (hi - lo)) for s in raw]


def node(i: int, rack: bool = True) -> dict[str, Any]:
    labels = {"zone": f"z{i % 3}"}
    if rack and i % 4:
        labels["rack"] = f"r{i % 5}"
    return make_node(f"n{i}", labels=labels)


def test_index_agrees_with_reference_as_the_cluster_changes() -> None:
    rng = random.Random(7)
    cache = SchedulerCache()
    for i in range(12):
        cache.add_node(node(i))
    names = 0
    for round_ in range(40):
        for _ in range(6):
            names += 1
            cache.add_pod(random_pod(rng, f"p{names}", f"n{rng.randrange(12)}"))
        if cache.pods and rng.random() < 0.6:
            for key in rng.sample(sorted(cache.pods), min(3, len(cache.pods))):
                cache.remove_pod(key)
        if round_ % 7 == 3:
            cache.add_node(node(rng.randrange(12), rack=False))  # relabeled
        if round_ % 11 == 5:
            gone = rng.randrange(12)
            cache.remove_node(f"n{gone}")
            for _ in range(3):
                incoming = PodInfo(random_pod(rng, "in"))
                assert feasible(cache, incoming) == reference_feasible(cache, incoming)
            cache.add_node(node(gone))
        for _ in range(8):
            incoming = PodInfo(random_pod(rng, "in"))
            assert feasible(cache, incoming) == reference_feasible(cache, incoming), round_
            raw = reference_raw_scores(cache, incoming)
            assert scores(cache, incoming) == normalized([raw[ni.name] for ni in cache.node_list()]), round_
