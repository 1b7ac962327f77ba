"""Whole-profile behaviour: which node wins and the FailedScheduling text."""

from __future__ import annotations

from conftest import make_node, make_pod

from pinnace.scheduler.cache import PodInfo, SchedulerCache
from pinnace.scheduler.framework import (
    Profile,
    binding_for,
    fit_error_message,
    num_feasible_nodes_to_find,
    pod_scheduled_condition_unschedulable,
)

UNREACHABLE = {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}


def test_issue_example_message(cache: SchedulerCache, profile: Profile) -> None:
    cache.add_node(make_node("n1", cpu="1"))
    cache.add_node(make_node("n2", taints=[UNREACHABLE]))
    cache.add_node(make_node("n3", taints=[{**UNREACHABLE, "effect": "NoSchedule"}]))
    r = profile.schedule(make_pod("p", "2"), cache)
    assert r.node_name is None
    assert r.reasons == {"Insufficient cpu": 1, "node(s) had untolerated taint {node.kubernetes.io/unreachable: }": 2}
    assert r.message == ("0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint "
                         "{node.kubernetes.io/unreachable: }. preemption: 0/3 nodes are available: "
                         "1 No preemption victims found for incoming pod, 2 Preemption is not helpful for scheduling.")


def test_all_unresolvable_message(cache: SchedulerCache, profile: Profile) -> None:
    for n in ("a", "b", "c"):
        cache.add_node(make_node(n, labels={"disk": "hdd"}))
    r = profile.schedule(make_pod("p", nodeSelector={"disk": "ssd"}), cache)
    assert r.message == ("0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector. "
                         "preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.")


def test_reasons_sorted_as_strings_and_multi_reason_nodes() -> None:
    msg = fit_error_message(12, {"Insufficient cpu": 10, "Insufficient memory": 2, "Too many pods": 2})
    assert msg == "0/12 nodes are available: 10 Insufficient cpu, 2 Insufficient memory, 2 Too many pods."


def test_insufficient_cpu_and_memory_counted_per_node(cache: SchedulerCache, profile: Profile) -> None:
    cache.add_node(make_node("n1", cpu="1", mem="1Gi"))
    cache.add_node(make_node("n2", cpu="1", mem="1Gi", unschedulable=True))
    r = profile.schedule(make_pod("p", "2", "2Gi", preemptionPolicy="Never"), cache)
    assert r.message == ("0/2 nodes are available: 1 Insufficient cpu, 1 Insufficient memory, "
                         "1 node(s) were unschedulable. preemption: not eligible due to preemptionPolicy=Never.")


def test_prefers_least_allocated(cache: SchedulerCache, profile: Profile) -> None:
    cache.add_node(make_node("busy"))
    cache.add_node(make_node("idle"))
    cache.add_pod(make_pod("x", "3", "6Gi", node="busy"))
    assert profile.schedule(make_pod("p"), cache).node_name == "idle"


def test_spreads_successive_pods(cache: SchedulerCache, profile: Profile) -> None:
    for i in range(4):
        cache.add_node(make_node(f"n{i}", cpu="1", mem="1Gi"))
    placed = []
    for i in range(8):
        r = profile.schedule(make_pod(f"p{i}", "500m", "256Mi"), cache)
        assert r.node_name
        cache.assume_pod(make_pod(f"p{i}", "500m", "256Mi"), r.node_name)
        placed.append(r.node_name)
    assert sorted(placed) == sorted([f"n{i}" for i in range(4)] * 2)


def test_num_feasible_nodes() -> None:
    assert num_feasible_nodes_to_find(50) == 50
    assert num_feasible_nodes_to_find(150) == 100  # at least 100
    assert num_feasible_nodes_to_find(5000) == 500  # 50 - 40 = 10%
    assert num_feasible_nodes_to_find(10000) == 500  # floor of 5%
    assert num_feasible_nodes_to_find(1000, 30) == 300


def test_only_sample_is_evaluated(cache: SchedulerCache, profile: Profile) -> None:
    for i in range(1000):
        cache.add_node(make_node(f"n{i}"))
    r = profile.schedule(make_pod("p"), cache)
    assert r.node_name and r.feasible_nodes == num_feasible_nodes_to_find(1000) == 420
    assert r.evaluated_nodes < 1000


def test_no_nodes(cache: SchedulerCache, profile: Profile) -> None:
    assert profile.schedule(make_pod("p"), cache).message == "no nodes available to schedule pods"


def test_nominated_node_is_tried_first(cache: SchedulerCache, profile: Profile) -> None:
    for n in ("a", "b", "c"):
        cache.add_node(make_node(n))
    pod = make_pod("p")
    pod["status"]["nominatedNodeName"] = "b"
    assert profile.schedule(pod, cache).node_name == "b"


def test_condition_and_binding() -> None:
    c = pod_scheduled_condition_unschedulable("0/1 nodes are available: 1 Too many pods.")
    assert c["type"] == "PodScheduled" and c["status"] == "False" and c["reason"] == "Unschedulable"
    b = binding_for(make_pod("p", ns="team"), "n1")
    assert b == {"apiVersion": "v1", "kind": "Binding",
                 "metadata": {"name": "p", "namespace": "team", "uid": "uid-p"},
                 "target": {"apiVersion": "v1", "kind": "Node", "name": "n1"}}


def test_nominated_pods_of_equal_or_higher_priority_hold_their_room(cache: SchedulerCache,
                                                                   profile: Profile) -> None:
    cache.add_node(make_node("a", cpu="2"))
    waiting = make_pod("waiting", "2", priority=100)
    cache.add_nominated_pod(PodInfo(waiting), "a")
    for prio in (50, 100):
        r = profile.schedule(make_pod("p", "1", priority=prio), cache)
        assert r.node_name is None and r.reasons == {"Insufficient cpu": 1}
    assert profile.schedule(make_pod("p", "1", priority=101), cache).node_name == "a"
    # Its own nomination does not stand in the pod's way.
    waiting["status"]["nominatedNodeName"] = "a"
    assert profile.schedule(waiting, cache).node_name == "a"
    # Elsewhere there is room.
    cache.add_node(make_node("b", cpu="2"))
    assert profile.schedule(make_pod("p", "1", priority=50), cache).node_name == "b"


def test_with_nominated_pods_the_pod_must_fit_both_ways(cache: SchedulerCache, profile: Profile) -> None:
    cache.add_node(make_node("a", labels={"zone": "z"}))
    # Affinity to a pod that is only nominated: it must also fit without it.
    cache.add_nominated_pod(PodInfo(make_pod("db", labels={"app": "db"}, priority=100)), "a")
    aff = {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "zone"}]}}
    r = profile.schedule(make_pod("p", affinity=aff, priority=0), cache)
    assert r.node_name is None and r.reasons == {"node(s) didn't match pod affinity rules": 1}
