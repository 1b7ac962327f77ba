from __future__ import annotations

import random
from typing import Any

from conftest import make_node, make_pod

from pinnace.scheduler import preemption
from pinnace.scheduler.cache import PodInfo, SchedulerCache
from pinnace.scheduler.framework import Profile, default_profile
from pinnace.scheduler.preemption import (
    budgets,
    disruption_target_condition,
    find_preemption,
    num_candidates,
    split_by_pdb,
)


def test_picks_lowest_priority_victims(cache: SchedulerCache, profile: Profile) -> None:
    cache.add_node(make_node("a", cpu="2"))
    cache.add_node(make_node("b", cpu="2"))
    cache.add_pod(make_pod("a-low", "1", node="a", priority=10))
    cache.add_pod(make_pod("a-mid", "1", node="a", priority=50))
    cache.add_pod(make_pod("b-mid", "1", node="b", priority=50))
    cache.add_pod(make_pod("b-mid2", "1", node="b", priority=50))
    got = find_preemption(make_pod("p", "1", priority=100), cache, profile)
    assert got is not None
    node, victims = got
    assert node == "a" and [v["metadata"]["name"] for v in victims] == ["a-low"]


def test_minimal_victims_reprieve(cache: SchedulerCache, profile: Profile) -> None:
    cache.add_node(make_node("a", cpu="3"))
    for i, prio in enumerate((1, 2, 3)):
        cache.add_pod(make_pod(f"v{i}", "1", node="a", priority=prio))
    node, victims = find_preemption(make_pod("p", "2", priority=10), cache, profile)  # type: ignore[misc]
    assert node == "a" and sorted(v["metadata"]["name"] for v in victims) == ["v0", "v1"]


def test_equal_or_higher_priority_never_victims(cache: SchedulerCache, profile: Profile) -> None:
    cache.add_node(make_node("a", cpu="1"))
    cache.add_pod(make_pod("same", "1", node="a", priority=100))
    assert find_preemption(make_pod("p", "1", priority=100), cache, profile) is None
    r = profile.schedule(make_pod("p", "1", priority=100), cache)
    assert r.message == ("0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: "
                         "1 No preemption victims found for incoming pod.")


def test_schedule_reports_nomination(cache: SchedulerCache, profile: Profile) -> None:
    cache.add_node(make_node("a", cpu="1"))
    cache.add_pod(make_pod("low", "1", node="a", priority=0))
    r = profile.schedule(make_pod("p", "1", priority=1000), cache)
    assert r.node_name is None and r.nominated_node == "a"
    assert [v["metadata"]["name"] for v in r.victims] == ["low"]
    assert r.message == "0/1 nodes are available: 1 Insufficient cpu."


def test_policy_never(cache: SchedulerCache, profile: Profile) -> None:
    cache.add_node(make_node("a", cpu="1"))
    cache.add_pod(make_pod("low", "1", node="a", priority=0))
    pod = make_pod("p", "1", priority=1000, preemptionPolicy="Never")
    assert find_preemption(pod, cache, profile) is None
    assert profile.schedule(pod, cache).message.endswith("preemption: not eligible due to preemptionPolicy=Never.")


def test_unresolvable_nodes_skipped(cache: SchedulerCache, profile: Profile) -> None:
    cache.add_node(make_node("a", cpu="1", unschedulable=True))
    cache.add_pod(make_pod("low", "1", node="a", priority=0))
    assert find_preemption(make_pod("p", "1", priority=1000), cache, profile) is None


# --- PodDisruptionBudgets ---------------------------------------------------


def pdb(name: str, labels: dict[str, str], allowed: int, ns: str = "default",
        disrupted: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"minAvailable": 1, "selector": {"matchLabels": labels}},
            "status": {"disruptionsAllowed": allowed, "disruptedPods": disrupted or {}}}


def with_pdbs(*pdbs: dict[str, Any]) -> Profile:
    return default_profile(rng=random.Random(0), pdb_lister=lambda: pdbs)


def victims_of(got: tuple[str, list[dict[str, Any]]] | None) -> tuple[str, list[str]]:
    assert got is not None
    return got[0], [v["metadata"]["name"] for v in got[1]]


def test_node_without_pdb_violation_wins(cache: SchedulerCache) -> None:
    cache.add_node(make_node("a", cpu="1"))
    cache.add_node(make_node("b", cpu="1"))
    # "a" would be chosen on priority alone (its victim is less important).
    cache.add_pod(make_pod("a-low", "1", node="a", priority=1, labels={"app": "db"}))
    cache.add_pod(make_pod("b-mid", "1", node="b", priority=5, labels={"app": "web"}))
    pod = make_pod("p", "1", priority=100)
    assert victims_of(find_preemption(pod, cache, with_pdbs())) == ("a", ["a-low"])
    assert victims_of(find_preemption(pod, cache, with_pdbs(pdb("db", {"app": "db"}, 0)))) == ("b", ["b-mid"])
    # A budget with room left is no obstacle; nor one in another namespace.
    assert victims_of(find_preemption(pod, cache, with_pdbs(pdb("db", {"app": "db"}, 1)))) == ("a", ["a-low"])
    assert victims_of(find_preemption(pod, cache, with_pdbs(pdb("db", {"app": "db"}, 0, ns="other")))) == \
        ("a", ["a-low"])
    # Every candidate violates: preemption still goes ahead, on the fewest violations.
    both = with_pdbs(pdb("db", {"app": "db"}, 0), pdb("web", {"app": "web"}, 0))
    assert victims_of(find_preemption(pod, cache, both)) == ("a", ["a-low"])


def test_pdb_allowance_is_shared_by_a_nodes_victims(cache: SchedulerCache) -> None:
    cache.add_node(make_node("a", cpu="2"))
    cache.add_node(make_node("b", cpu="2"))
    for n in ("a1", "a2"):
        cache.add_pod(make_pod(n, "1", node="a", priority=1, labels={"app": "db"}))
    for n in ("b1", "b2"):
        cache.add_pod(make_pod(n, "1", node="b", priority=2, labels={"app": "web"}))
    pod = make_pod("p", "2", priority=100)
    # One disruption allowed, two victims needed on "a": one violation there, none on "b".
    assert victims_of(find_preemption(pod, cache, with_pdbs(pdb("db", {"app": "db"}, 1)))) == \
        ("b", ["b1", "b2"])
    # A pod the API server already counts as disrupted uses up nothing.
    done = pdb("db", {"app": "db"}, 1, disrupted={"a1": "2025-01-01T00:00:00Z"})
    assert victims_of(find_preemption(pod, cache, with_pdbs(done)))[0] == "a"


def test_pdb_protected_pods_are_reprieved_first(cache: SchedulerCache) -> None:
    cache.add_node(make_node("a", cpu="2"))
    cache.add_pod(make_pod("protected", "1", node="a", priority=1, labels={"app": "db"}))
    cache.add_pod(make_pod("important", "1", node="a", priority=5, labels={"app": "web"}))
    pod = make_pod("p", "1", priority=100)
    # By importance alone the priority-5 pod stays and the protected one goes.
    assert victims_of(find_preemption(pod, cache, with_pdbs())) == ("a", ["protected"])
    assert victims_of(find_preemption(pod, cache, with_pdbs(pdb("db", {"app": "db"}, 0)))) == \
        ("a", ["important"])


def test_pdb_with_empty_selector_protects_nothing() -> None:
    empty = pdb("all", {}, 0)
    v, fine = split_by_pdb([PodInfo(make_pod("x", labels={"app": "db"}))], budgets([empty]))
    assert v == [] and [p.name for p in fine] == ["x"]
    unlabeled = PodInfo(make_pod("y"))
    v, _ = split_by_pdb([unlabeled], budgets([pdb("db", {"app": "db"}, 0)]))
    assert v == []


# --- choosing among candidates ---------------------------------------------


def started(pod: dict[str, Any], at: str) -> dict[str, Any]:
    pod["status"]["startTime"] = at
    return pod


def test_tie_breaks_sum_count_and_start_time(cache: SchedulerCache) -> None:
    for n in ("a", "b"):
        cache.add_node(make_node(n, cpu="2"))
    # Same highest victim priority (5); "b"'s victims sum lower.
    cache.add_pod(make_pod("a1", "1", node="a", priority=5))
    cache.add_pod(make_pod("a2", "1", node="a", priority=5))
    cache.add_pod(make_pod("b1", "1", node="b", priority=5))
    cache.add_pod(make_pod("b2", "1", node="b", priority=1))
    assert victims_of(find_preemption(make_pod("p", "2", priority=100), cache, with_pdbs()))[0] == "b"


def test_tie_break_fewest_victims(cache: SchedulerCache) -> None:
    cache.add_node(make_node("a", cpu="2"))
    cache.add_node(make_node("b", cpu="2"))
    cache.add_pod(make_pod("a1", "1", node="a", priority=-3))
    cache.add_pod(make_pod("a2", "1", node="a", priority=-3))
    cache.add_pod(make_pod("b1", "2", node="b", priority=-3))
    # Same top priority; sums of (priority + 2^31) are lower with one victim.
    assert victims_of(find_preemption(make_pod("p", "2", priority=100), cache, with_pdbs())) == ("b", ["b1"])


def test_tie_break_latest_start(cache: SchedulerCache) -> None:
    for n in ("a", "b", "c"):
        cache.add_node(make_node(n, cpu="1"))
    cache.add_pod(started(make_pod("old", "1", node="a", priority=1), "2025-01-01T00:00:00Z"))
    cache.add_pod(started(make_pod("new", "1", node="b", priority=1), "2025-06-01T00:00:00Z"))
    cache.add_pod(started(make_pod("mid", "1", node="c", priority=1), "2025-03-01T00:00:00Z"))
    assert victims_of(find_preemption(make_pod("p", "1", priority=100), cache, with_pdbs())) == ("b", ["new"])
    # A pod that has not started yet counts as started now: latest of all.
    cache.add_node(make_node("d", cpu="1"))
    cache.add_pod(make_pod("pending-start", "1", node="d", priority=1))
    assert victims_of(find_preemption(make_pod("p", "1", priority=100), cache, with_pdbs()))[0] == "d"


def test_victims_ordered_most_important_first(cache: SchedulerCache) -> None:
    cache.add_node(make_node("a", cpu="3"))
    cache.add_pod(started(make_pod("young", "1", node="a", priority=2), "2025-06-01T00:00:00Z"))
    cache.add_pod(started(make_pod("elder", "1", node="a", priority=2), "2025-01-01T00:00:00Z"))
    cache.add_pod(make_pod("top", "1", node="a", priority=3))
    assert victims_of(find_preemption(make_pod("p", "3", priority=100), cache, with_pdbs())) == \
        ("a", ["top", "elder", "young"])


def test_no_candidate_message_keeps_filter_reasons(cache: SchedulerCache, profile: Profile) -> None:
    cache.add_node(make_node("small", cpu="1"))
    cache.add_pod(make_pod("low", "500m", node="small", priority=0))
    r = profile.schedule(make_pod("p", "2", priority=100), cache)
    assert r.nominated_node == ""  # no candidate: any nomination is cleared
    assert r.message == ("0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are "
                         "available: 1 Insufficient cpu.")


def test_candidates_dry_run_is_bounded(cache: SchedulerCache) -> None:
    assert num_candidates(50) == 50 and num_candidates(500) == 100 and num_candidates(5000) == 500
    for i in range(300):
        cache.add_node(make_node(f"n{i}", cpu="1"))
        cache.add_pod(make_pod(f"v{i}", "1", node=f"n{i}", priority=1))
    prof = with_pdbs()
    tried: list[str] = []
    real = preemption.select_victims_on_node

    def counting(pod: Any, ni: Any, *rest: Any) -> Any:
        tried.append(ni.name)
        return real(pod, ni, *rest)

    preemption.select_victims_on_node = counting  # type: ignore[assignment]
    try:
        assert find_preemption(make_pod("p", "1", priority=100), cache, prof) is not None
    finally:
        preemption.select_victims_on_node = real  # type: ignore[assignment]
    assert len(tried) == 100


# --- eligibility --------------------------------------------------------------


def test_terminating_victims_on_nominated_node_block_more_preemption(cache: SchedulerCache,
                                                                     profile: Profile) -> None:
    cache.add_node(make_node("a", cpu="1"))
    cache.add_node(make_node("b", cpu="1"))
    going = make_pod("going", "1", node="a", priority=0)
    going["metadata"]["deletionTimestamp"] = "2025-01-01T00:00:00Z"
    going["status"]["conditions"] = [disruption_target_condition("default-scheduler", "2025-01-01T00:00:00Z")]
    cache.add_pod(going)
    cache.add_pod(make_pod("other", "1", node="b", priority=0))
    pod = make_pod("p", "1", priority=100)
    pod["status"]["nominatedNodeName"] = "a"
    r = profile.schedule(pod, cache)
    assert r.nominated_node is None and not r.victims  # keeps its nomination, preempts no more
    assert r.message.endswith("preemption: not eligible due to a terminating pod on the nominated node.")
    # A pod terminating for another reason does not count.
    going["status"]["conditions"] = []
    cache.add_pod(going)
    assert profile.schedule(pod, cache).nominated_node in ("a", "b")


def test_disruption_target_condition() -> None:
    c = disruption_target_condition("default-scheduler", "2025-01-01T00:00:00Z", 3)
    assert c == {"type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler",
                 "message": "default-scheduler: preempting to accommodate a higher priority pod",
                 "lastTransitionTime": "2025-01-01T00:00:00Z", "observedGeneration": 3}


# --- filters that look at other nodes' pods --------------------------------


def test_evicting_a_pod_with_anti_affinity_makes_room(cache: SchedulerCache, profile: Profile) -> None:
    cache.add_node(make_node("a"))
    anti = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}]}}
    cache.add_pod(make_pod("loner", node="a", priority=0, affinity=anti))
    r = profile.schedule(make_pod("web", labels={"app": "web"}, priority=100), cache)
    assert r.nominated_node == "a" and [v["metadata"]["name"] for v in r.victims] == ["loner"]


def test_evictions_count_in_topology_spread(cache: SchedulerCache, profile: Profile) -> None:
    cache.add_node(make_node("a"))
    cache.add_node(make_node("b", unschedulable=True))
    for i in range(2):
        cache.add_pod(make_pod(f"x{i}", node="a", priority=0, labels={"app": "x"}))
    spread = [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "DoNotSchedule",
               "labelSelector": {"matchLabels": {"app": "x"}}}]
    r = profile.schedule(make_pod("p", labels={"app": "x"}, priority=100, topologySpreadConstraints=spread), cache)
    # "b" has no pods: "a" may hold at most one more than it, the pod included.
    assert r.nominated_node == "a" and sorted(v["metadata"]["name"] for v in r.victims) == ["x0", "x1"]


# --- nominated pods ------------------------------------------------------------


def test_preemption_leaves_room_for_higher_nominated_pods(cache: SchedulerCache, profile: Profile) -> None:
    cache.add_node(make_node("a", cpu="2"))
    cache.add_pod(make_pod("low", "1", node="a", priority=0))
    cache.add_pod(make_pod("low2", "1", node="a", priority=0))
    cache.add_nominated_pod(PodInfo(make_pod("first", "1", priority=500)), "a")
    # Evicting both low pods frees 2 cpu, one of which is kept for "first".
    r = profile.schedule(make_pod("p", "1", priority=100), cache)
    assert r.nominated_node == "a" and len(r.victims) == 2
    r = profile.schedule(make_pod("p", "2", priority=100), cache)
    assert r.nominated_node == "" and "1 Insufficient cpu" in r.message.split("preemption:")[1]
