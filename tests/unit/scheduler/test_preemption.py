from __future__ import annotations

from conftest import make_node, make_pod

from pinnace.scheduler.cache import SchedulerCache
from pinnace.scheduler.framework import Profile
from pinnace.scheduler.preemption import find_preemption


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
