"""Scheduler throughput, in process (no API server, no HTTP).

The shape of kube-scheduler's scheduler_perf "SchedulingBasic" case: 5,000
nodes (4 cpu, 32Gi, 110 pods), 1,000 pods placed first, then 10,000 pods
(100m cpu, 500Mi) measured through queue -> schedule -> assume -> done.
For comparison, a naive scheduler (every plugin called per node, over every
node, every feasible node scored) runs on a sample of the same pods.

Scenarios after scheduler_perf's: ``basic`` (SchedulingBasic, above);
``anti-affinity`` (SchedulingPodAntiAffinity: every pod keeps off nodes with
another pod of its kind, so at most one per node), ``affinity``
(SchedulingPodAffinity: every pod wants a zone holding one of its kind) and
``preferred`` (SchedulingPreferredPodAffinity), each with 1,000 pods placed
first and 1,000 measured, among 2,000 unrelated pods in the same namespace.

    python bench/scheduler_throughput.py [--scenario S] [--nodes N] [--init N] [--pods N]
                                         [--naive N] [--quick]
"""

from __future__ import annotations

import argparse
import random
import time
from typing import Any

from pinnace.scheduler.cache import PodInfo, SchedulerCache
from pinnace.scheduler.framework import Diagnosis, Profile, default_profile
from pinnace.scheduler.plugins.base import Reject
from pinnace.scheduler.queue import SchedulingQueue

ZONES = ("zone-a", "zone-b", "zone-c")
HOSTNAME = "kubernetes.io/hostname"
ZONE = "topology.kubernetes.io/zone"
SCENARIOS = ("basic", "anti-affinity", "affinity", "preferred")


def _term(key: str) -> dict[str, Any]:
    return {"labelSelector": {"matchExpressions": [{"key": "color", "operator": "In", "values": ["green"]}]},
            "topologyKey": key}


AFFINITY: dict[str, dict[str, Any]] = {
    "anti-affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [_term(HOSTNAME)]}},
    "affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [_term(ZONE)]}},
    "preferred": {"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 1, "podAffinityTerm": _term(HOSTNAME)}]}},
}


def make_node(i: int) -> dict[str, Any]:
    name = f"node-{i}"
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                                              "topology.kubernetes.io/zone": ZONES[i % 3]}},
        "spec": {},
        "status": {"capacity": {"cpu": "4", "memory": "32Gi", "pods": "110"},
                   "allocatable": {"cpu": "4", "memory": "32Gi", "pods": "110"},
                   "images": [{"names": ["registry.k8s.io/pause:3.10"], "sizeBytes": 300000}]},
    }


def make_pod(i: int, prefix: str = "pod", scenario: str = "basic") -> dict[str, Any]:
    pod = _pod(i, prefix)
    if scenario in AFFINITY:
        pod["metadata"]["labels"]["color"] = "green"
        pod["spec"]["affinity"] = AFFINITY[scenario]
    return pod


def _pod(i: int, prefix: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": f"{prefix}-{i}", "namespace": "default", "uid": f"uid-{prefix}-{i}",
                     "labels": {"app": prefix}, "creationTimestamp": "2025-01-01T00:00:00Z"},
        "spec": {"schedulerName": "default-scheduler", "priority": 0,
                 "containers": [{"name": "pause", "image": "registry.k8s.io/pause:3.10",
                                 "resources": {"requests": {"cpu": "100m", "memory": "500Mi"},
                                               "limits": {"cpu": "100m", "memory": "500Mi"}}}]},
        "status": {"phase": "Pending"},
    }


def run_loop(profile: Profile, cache: SchedulerCache, pods: list[dict[str, Any]]) -> tuple[int, float]:
    """Queue, schedule and assume every pod; (pods placed, seconds)."""
    q = SchedulingQueue()
    for p in pods:
        q.add(p)
    placed = 0
    t0 = time.perf_counter()
    while True:
        qp = q.pop_nowait()
        if qp is None:
            break
        pi = PodInfo(qp.pod)
        res = profile.schedule(pi, cache)
        if res.node_name is None:
            q.add_unschedulable(qp)
            continue
        cache.assume_pod_info(pi, res.node_name)
        q.done(qp.key)
        placed += 1
    return placed, time.perf_counter() - t0


def naive_schedule(profile: Profile, cache: SchedulerCache, pod: dict[str, Any]) -> str | None:
    """Every filter called on every node, every feasible node scored."""
    pi = PodInfo(pod)
    checks = profile.pre_filter(pi, cache, {})
    if isinstance(checks, Reject):
        return None
    diag = Diagnosis()
    feasible = []
    for ni in cache.node_list():
        for c in checks:
            if not c.pred(ni):
                diag.statuses[ni.name] = (c.reasons(ni), c.is_unresolvable(ni))
                break
        else:
            feasible.append(ni)
    if not feasible:
        return None
    totals = profile.score(pi, cache, {}, feasible)
    return profile.select(feasible, totals).name


def run_naive(profile: Profile, cache: SchedulerCache, pods: list[dict[str, Any]]) -> tuple[int, float]:
    placed = 0
    t0 = time.perf_counter()
    for p in pods:
        name = naive_schedule(profile, cache, p)
        if name is not None:
            cache.assume_pod(p, name)
            placed += 1
    return placed, time.perf_counter() - t0


def build(nodes: int, init: int, seed: int, scenario: str = "basic") -> tuple[Profile, SchedulerCache]:
    cache = SchedulerCache()
    for i in range(nodes):
        cache.add_node(make_node(i))
    profile = default_profile(rng=random.Random(seed))
    if scenario != "basic":
        # Unrelated pods in the same namespace, which affinity terms must not cost.
        run_loop(profile, cache, [make_pod(i, "other") for i in range(2 * init)])
    run_loop(profile, cache, [make_pod(i, "init", scenario) for i in range(init)])
    return profile, cache


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", choices=SCENARIOS, default="basic")
    ap.add_argument("--nodes", type=int, default=5000)
    ap.add_argument("--init", type=int, default=None, help="pods placed first (1000)")
    ap.add_argument("--pods", type=int, default=None, help="pods measured (10000; 1000 with affinity)")
    ap.add_argument("--naive", type=int, default=None, help="pods for the naive baseline (300; 100)")
    ap.add_argument("--quick", action="store_true", help="a small run (200 nodes, 50+500 pods)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    basic = args.scenario == "basic"
    if args.quick:
        args.nodes, args.init, args.pods, args.naive = 200, 50, 500 if basic else 100, 50
    init = 1000 if args.init is None else args.init
    pods = (10000 if basic else 1000) if args.pods is None else args.pods
    naive = (300 if basic else 100) if args.naive is None else args.naive

    profile, cache = build(args.nodes, init, args.seed, args.scenario)
    placed, secs = run_loop(profile, cache, [make_pod(i, "pod", args.scenario) for i in range(pods)])
    rate = placed / secs if secs else float("inf")
    print(f"scenario={args.scenario} nodes={args.nodes} init={init} measured={pods} placed={placed} "
          f"time={secs:.2f}s throughput={rate:.0f} pods/s")

    nprofile, ncache = build(args.nodes, init, args.seed, args.scenario)
    nplaced, nsecs = run_naive(nprofile, ncache, [make_pod(i, "naive", args.scenario) for i in range(naive)])
    nrate = nplaced / nsecs if nsecs else float("inf")
    print(f"naive baseline: {nplaced} pods in {nsecs:.2f}s = {nrate:.0f} pods/s; "
          f"speed-up {rate / nrate if nrate else float('inf'):.1f}x")
    return {"placed": placed, "pods_per_s": rate, "naive_placed": nplaced, "naive_pods_per_s": nrate}


if __name__ == "__main__":
    main()
