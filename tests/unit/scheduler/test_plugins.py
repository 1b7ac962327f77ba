"""Each plugin's filter and score through a profile holding just that plugin."""

from __future__ import annotations

import random
from typing import Any

from conftest import make_node, make_pod

from pinnace.scheduler.cache import PodInfo, SchedulerCache
from pinnace.scheduler.framework import Profile
from pinnace.scheduler.plugins import (
    ImageLocality,
    InterPodAffinity,
    NodeAffinity,
    NodeName,
    NodePorts,
    NodeResourcesBalancedAllocation,
    NodeResourcesFit,
    NodeUnschedulable,
    PodTopologySpread,
    TaintToleration,
    VolumeBinding,
)


def only(*filters: Any, scores: list[tuple[Any, int]] | None = None) -> Profile:
    return Profile("t", filters, scores or [], preemption=False, rng=random.Random(0))


def reasons(profile: Profile, cache: SchedulerCache, pod: dict[str, Any]) -> dict[str, int]:
    r = profile.schedule(pod, cache)
    assert r.node_name is None, r
    return r.reasons


def feasible(profile: Profile, cache: SchedulerCache, pod: dict[str, Any]) -> set[str]:
    pi = PodInfo(pod)
    from pinnace.scheduler.framework import Diagnosis
    checks = profile.pre_filter(pi, cache, {})
    assert isinstance(checks, list)
    return {ni.name for ni in profile.run_checks(checks, cache.node_list(), Diagnosis())}


def failures(profile: Profile, cache: SchedulerCache, pod: dict[str, Any]) -> dict[str, int]:
    from pinnace.scheduler.framework import Diagnosis
    diag = Diagnosis()
    checks = profile.pre_filter(PodInfo(pod), cache, {})
    assert isinstance(checks, list)
    profile.run_checks(checks, cache.node_list(), diag)
    return diag.histogram()


def nodes(cache: SchedulerCache, *specs: dict[str, Any]) -> None:
    for s in specs:
        cache.add_node(s)


def test_node_name(cache: SchedulerCache) -> None:
    nodes(cache, make_node("a"), make_node("b"))
    assert feasible(only(NodeName()), cache, make_pod("p", nodeName="b")) == {"b"}
    assert reasons(only(NodeName()), cache, make_pod("p", nodeName="zz")) == {
        "node(s) didn't match the requested node name": 2}


def test_node_unschedulable_and_toleration(cache: SchedulerCache) -> None:
    nodes(cache, make_node("a", unschedulable=True), make_node("b"))
    assert feasible(only(NodeUnschedulable()), cache, make_pod("p")) == {"b"}
    tol = [{"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]
    assert feasible(only(NodeUnschedulable()), cache, make_pod("p", tolerations=tol)) == {"a", "b"}


def test_taints_filter_and_prefer_no_schedule_score(cache: SchedulerCache) -> None:
    nodes(cache, make_node("gpu", taints=[{"key": "gpu", "value": "true", "effect": "NoSchedule"}]),
          make_node("soft", taints=[{"key": "spot", "value": "yes", "effect": "PreferNoSchedule"}]),
          make_node("plain"))
    pl = TaintToleration()
    assert feasible(only(pl), cache, make_pod("p")) == {"soft", "plain"}
    tol = [{"key": "gpu", "operator": "Equal", "value": "true", "effect": "NoSchedule"}]
    assert feasible(only(pl), cache, make_pod("p", tolerations=tol)) == {"gpu", "soft", "plain"}
    assert feasible(only(pl), cache, make_pod("p", tolerations=[{"operator": "Exists"}])) == {"gpu", "soft", "plain"}
    assert reasons(only(pl, NodeName()), cache, make_pod("p", nodeName="x")) == {
        "node(s) had untolerated taint {gpu: true}": 1, "node(s) didn't match the requested node name": 2}
    prof = only(pl, scores=[(pl, 3)])
    assert {prof.schedule(make_pod(f"p{i}"), cache).node_name for i in range(10)} == {"plain"}


def test_node_affinity_and_selector(cache: SchedulerCache) -> None:
    nodes(cache, make_node("a", labels={"zone": "z1", "gen": "3"}), make_node("b", labels={"zone": "z2", "gen": "5"}),
          make_node("c", labels={"zone": "z3"}))
    pl = NodeAffinity()

    def aff(*exprs: dict[str, Any], fields: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        term: dict[str, Any] = {"matchExpressions": list(exprs)}
        if fields:
            term["matchFields"] = fields
        return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}}}

    assert feasible(only(pl), cache, make_pod("p", nodeSelector={"zone": "z2"})) == {"b"}
    assert feasible(only(pl), cache, make_pod("p", affinity=aff({"key": "zone", "operator": "In", "values": ["z1", "z3"]}))) == {"a", "c"}
    assert feasible(only(pl), cache, make_pod("p", affinity=aff({"key": "zone", "operator": "NotIn", "values": ["z1"]}))) == {"b", "c"}
    assert feasible(only(pl), cache, make_pod("p", affinity=aff({"key": "gen", "operator": "Exists"}))) == {"a", "b"}
    assert feasible(only(pl), cache, make_pod("p", affinity=aff({"key": "gen", "operator": "DoesNotExist"}))) == {"c"}
    assert feasible(only(pl), cache, make_pod("p", affinity=aff({"key": "gen", "operator": "Gt", "values": ["4"]}))) == {"b"}
    assert feasible(only(pl), cache, make_pod("p", affinity=aff({"key": "gen", "operator": "Lt", "values": ["4"]}))) == {"a"}
    assert feasible(only(pl), cache, make_pod("p", affinity=aff(fields=[
        {"key": "metadata.name", "operator": "In", "values": ["c"]}]))) == {"c"}
    # nodeSelector and affinity must both hold
    assert feasible(only(pl), cache, make_pod("p", nodeSelector={"zone": "z1"},
                                              affinity=aff({"key": "zone", "operator": "In", "values": ["z2"]}))) == set()
    pref = {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 10, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z3"]}]}}]}}
    prof = only(pl, scores=[(pl, 2)])
    assert prof.schedule(make_pod("p", affinity=pref), cache).node_name == "c"


def test_node_resources_fit(cache: SchedulerCache) -> None:
    nodes(cache, make_node("small", cpu="1", mem="1Gi", pods="2"), make_node("big", cpu="8", mem="16Gi"))
    pl = NodeResourcesFit()
    assert feasible(only(pl), cache, make_pod("p", "2", "1Gi")) == {"big"}
    cache.add_pod(make_pod("x", "100m", "100Mi", node="small"))
    cache.add_pod(make_pod("y", "100m", "100Mi", node="small"))
    assert reasons(only(pl), cache, make_pod("p", "9", "32Gi")) == {
        "Too many pods": 1, "Insufficient cpu": 2, "Insufficient memory": 2}
    gpu = make_pod("g")
    gpu["spec"]["containers"][0]["resources"]["requests"]["nvidia.com/gpu"] = "1"
    assert reasons(only(pl), cache, gpu) == {"Too many pods": 1, "Insufficient nvidia.com/gpu": 2}


def test_least_allocated_and_balanced(cache: SchedulerCache) -> None:
    nodes(cache, make_node("cpu-heavy", cpu="4", mem="8Gi"), make_node("even", cpu="4", mem="8Gi"))
    cache.add_pod(make_pod("x", "3", "1Gi", node="cpu-heavy"))
    cache.add_pod(make_pod("y", "2", "4Gi", node="even"))
    fit, bal = NodeResourcesFit(), NodeResourcesBalancedAllocation()
    # Least allocated: cpu-heavy (25%+87%)/2 > even (50%+50%)/2, balanced prefers even.
    assert only(fit, scores=[(fit, 1)]).schedule(make_pod("p", "100m", "100Mi"), cache).node_name == "cpu-heavy"
    assert only(fit, scores=[(bal, 1)]).schedule(make_pod("p", "100m", "100Mi"), cache).node_name == "even"


def test_node_ports(cache: SchedulerCache) -> None:
    nodes(cache, make_node("a"), make_node("b"))
    used = make_pod("x", node="a")
    used["spec"]["containers"][0]["ports"] = [{"containerPort": 80, "hostPort": 80, "protocol": "TCP"}]
    cache.add_pod(used)
    want = make_pod("p")
    want["spec"]["containers"][0]["ports"] = [{"containerPort": 80, "hostPort": 80}]
    assert feasible(only(NodePorts()), cache, want) == {"b"}
    want["spec"]["containers"][0]["ports"][0]["protocol"] = "UDP"
    assert feasible(only(NodePorts()), cache, want) == {"a", "b"}
    cache.remove_node("b")
    want["spec"]["containers"][0]["ports"][0]["protocol"] = "TCP"
    assert reasons(only(NodePorts()), cache, want) == {"node(s) didn't have free ports for the requested pod ports": 1}


def test_image_locality(cache: SchedulerCache) -> None:
    big = [{"names": ["registry.example/app:v1"], "sizeBytes": 800 * 1024 * 1024}]
    nodes(cache, make_node("has", images=big), make_node("lacks"), make_node("lacks2"))
    pl = ImageLocality()
    prof = only(scores=[(pl, 1)])
    assert prof.schedule(make_pod("p", image="registry.example/app:v1"), cache).node_name == "has"


def test_image_locality_skips_images_too_small_to_score(cache: SchedulerCache) -> None:
    small = [{"names": ["registry.example/app:v1"], "sizeBytes": 300_000}]
    nodes(cache, make_node("has", images=small), make_node("lacks"))
    pod = PodInfo(make_pod("p", image="registry.example/app:v1"))
    assert ImageLocality().pre_score(pod, cache, {}, cache.node_list()) is None
    big = [{"names": ["registry.example/app:v1"], "sizeBytes": 800 * 1024 * 1024}]
    cache.update_node(make_node("lacks", images=big))
    scorer = ImageLocality().pre_score(pod, cache, {}, cache.node_list())
    assert scorer is not None and scorer(cache.node_list()) == [0, 79]  # 100 * (800 - 23) // (1000 - 23)


def test_taint_and_cordon_filters_follow_the_nodes(cache: SchedulerCache) -> None:
    nodes(cache, make_node("a"), make_node("b"))
    pod = PodInfo(make_pod("p"))
    assert NodeUnschedulable().pre_filter(pod, cache, {}) is None  # nothing cordoned
    assert TaintToleration().pre_filter(pod, cache, {}) is None  # nothing tainted
    cache.update_node(make_node("b", unschedulable=True,
                                taints=[{"key": "k", "value": "v", "effect": "NoSchedule"}]))
    assert feasible(only(NodeUnschedulable()), cache, make_pod("p")) == {"a"}
    assert feasible(only(TaintToleration()), cache, make_pod("p")) == {"a"}
    cache.update_node(make_node("b"))  # uncordoned, untainted
    assert NodeUnschedulable().pre_filter(pod, cache, {}) is None
    assert TaintToleration().pre_filter(pod, cache, {}) is None
    cache.update_node(make_node("b", unschedulable=True))
    cache.remove_node("b")
    assert NodeUnschedulable().pre_filter(pod, cache, {}) is None


def test_fit_verdicts_follow_the_pods_on_a_node(cache: SchedulerCache) -> None:
    nodes(cache, make_node("a", cpu="1"))
    prof = only(NodeResourcesFit())
    assert feasible(prof, cache, make_pod("p", "600m")) == {"a"}
    cache.add_pod(make_pod("q", "600m", node="a"))
    assert feasible(prof, cache, make_pod("p", "600m")) == set()
    assert feasible(prof, cache, make_pod("p", None, "1Mi")) == {"a"}  # no cpu asked
    cache.remove_pod(make_pod("q", "600m", node="a"))
    assert feasible(prof, cache, make_pod("p", "600m")) == {"a"}


def test_topology_spread_filter(cache: SchedulerCache) -> None:
    nodes(cache, make_node("a1", labels={"zone": "a"}), make_node("b1", labels={"zone": "b"}), make_node("nolabel"))
    for i in range(2):
        cache.add_pod(make_pod(f"w{i}", node="a1", labels={"app": "web"}))
    c = [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule",
          "labelSelector": {"matchLabels": {"app": "web"}}}]
    pl = PodTopologySpread()
    pod = make_pod("p", labels={"app": "web"}, topologySpreadConstraints=c)
    assert feasible(only(pl), cache, pod) == {"b1"}
    assert failures(only(pl), cache, pod) == {
        "node(s) didn't match pod topology spread constraints": 1,
        "node(s) didn't match pod topology spread constraints (missing required label)": 1}
    cache.remove_node("b1")
    # One domain only: skew relative to itself is fine.
    assert feasible(only(pl), cache, pod) == {"a1"}


def test_topology_spread_score(cache: SchedulerCache) -> None:
    nodes(cache, make_node("a1", labels={"zone": "a"}), make_node("b1", labels={"zone": "b"}))
    for i in range(3):
        cache.add_pod(make_pod(f"w{i}", node="a1", labels={"app": "web"}))
    c = [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "ScheduleAnyway",
          "labelSelector": {"matchLabels": {"app": "web"}}}]
    pl = PodTopologySpread()
    prof = only(scores=[(pl, 2)])
    assert prof.schedule(make_pod("p", labels={"app": "web"}, topologySpreadConstraints=c), cache).node_name == "b1"


def _affinity(kind: str, labels: dict[str, str], key: str = "zone") -> dict[str, Any]:
    return {kind: {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": labels}, "topologyKey": key}]}}


def test_inter_pod_affinity_filter(cache: SchedulerCache) -> None:
    nodes(cache, make_node("a1", labels={"zone": "a"}), make_node("a2", labels={"zone": "a"}),
          make_node("b1", labels={"zone": "b"}))
    cache.add_pod(make_pod("db", node="a1", labels={"app": "db"}))
    pl = InterPodAffinity()
    assert feasible(only(pl), cache, make_pod("p", affinity=_affinity("podAffinity", {"app": "db"}))) == {"a1", "a2"}
    assert feasible(only(pl), cache, make_pod("p", affinity=_affinity("podAntiAffinity", {"app": "db"}))) == {"b1"}
    assert reasons(only(pl), cache, make_pod("p", affinity=_affinity("podAffinity", {"app": "none"}))) == {
        "node(s) didn't match pod affinity rules": 3}
    # The first pod of a group that selects itself can go anywhere.
    first = make_pod("p", labels={"app": "cache"}, affinity=_affinity("podAffinity", {"app": "cache"}))
    assert feasible(only(pl), cache, first) == {"a1", "a2", "b1"}


def test_existing_pods_anti_affinity(cache: SchedulerCache) -> None:
    nodes(cache, make_node("a1", labels={"zone": "a"}), make_node("b1", labels={"zone": "b"}))
    cache.add_pod(make_pod("loner", node="a1", affinity=_affinity("podAntiAffinity", {"app": "web"}, "kubernetes.io/hostname")))
    pl = InterPodAffinity()
    assert feasible(only(pl), cache, make_pod("p", labels={"app": "web"})) == {"b1"}
    cache.remove_node("b1")
    assert reasons(only(pl), cache, make_pod("p", labels={"app": "web"})) == {
        "node(s) didn't satisfy existing pods anti-affinity rules": 1}
    assert feasible(only(pl), cache, make_pod("p", labels={"app": "other"})) == {"a1"}


def test_inter_pod_preferred_affinity_score(cache: SchedulerCache) -> None:
    nodes(cache, make_node("a1", labels={"zone": "a"}), make_node("b1", labels={"zone": "b"}))
    cache.add_pod(make_pod("db", node="b1", labels={"app": "db"}))
    pref = {"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 50, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "zone"}}]}}
    pl = InterPodAffinity()
    assert only(scores=[(pl, 2)]).schedule(make_pod("p", affinity=pref), cache).node_name == "b1"


def test_volume_binding_local_pv(cache: SchedulerCache) -> None:
    nodes(cache, make_node("a"), make_node("b"))
    pvcs = {("default", "data"): {"metadata": {"name": "data"}, "spec": {"volumeName": "pv-b"}},
            ("default", "unbound"): {"metadata": {"name": "unbound"}, "spec": {}}}
    pvs = {"pv-b": {"metadata": {"name": "pv-b"}, "spec": {"nodeAffinity": {"required": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["b"]}]}]}}}}}
    pl = VolumeBinding(lambda ns, n: pvcs.get((ns, n)), pvs.get)

    def with_claim(name: str) -> dict[str, Any]:
        return make_pod("p", volumes=[{"name": "v", "persistentVolumeClaim": {"claimName": name}}])

    assert feasible(only(pl), cache, with_claim("data")) == {"b"}
    r = only(pl).schedule(with_claim("missing"), cache)
    assert r.message == '0/2 nodes are available: persistentvolumeclaim "missing" not found.'
    r = only(pl).schedule(with_claim("unbound"), cache)
    assert r.message == "0/2 nodes are available: pod has unbound immediate PersistentVolumeClaims."
    cache.remove_node("b")
    assert reasons(only(pl), cache, with_claim("data")) == {"node(s) had volume node affinity conflict": 1}


def _check(plugin: Any, cache: SchedulerCache, pod: dict[str, Any]) -> Any:
    c = plugin.pre_filter(PodInfo(pod), cache, {})
    assert c is not None
    return c


def test_affinity_terms_must_match_one_pod_together(cache: SchedulerCache) -> None:
    nodes(cache, make_node("a1", labels={"zone": "a"}), make_node("b1", labels={"zone": "b"}))
    cache.add_pod(make_pod("db", node="a1", labels={"app": "db"}))
    cache.add_pod(make_pod("ssd", node="a1", labels={"disk": "ssd"}))
    cache.add_pod(make_pod("both", node="b1", labels={"app": "db", "disk": "ssd"}))
    terms = [{"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "zone"},
             {"labelSelector": {"matchLabels": {"disk": "ssd"}}, "topologyKey": "zone"}]
    pod = make_pod("p", affinity={"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": terms}})
    assert feasible(only(InterPodAffinity()), cache, pod) == {"b1"}


def test_self_affinity_first_pod_needs_the_topology_key(cache: SchedulerCache) -> None:
    nodes(cache, make_node("a1", labels={"zone": "a"}), make_node("bare"))
    first = make_pod("p", labels={"app": "cache"}, affinity=_affinity("podAffinity", {"app": "cache"}))
    assert feasible(only(InterPodAffinity()), cache, first) == {"a1"}


def test_affinity_counts_move_with_update(cache: SchedulerCache) -> None:
    nodes(cache, make_node("a1", labels={"zone": "a"}), make_node("b1", labels={"zone": "b"}))
    web = PodInfo(make_pod("w", node="a1", labels={"app": "web"}))
    cache.add_pod(web.pod)
    anti = _check(InterPodAffinity(), cache, make_pod("p", affinity=_affinity("podAntiAffinity", {"app": "web"})))
    a1, b1 = cache.nodes["a1"], cache.nodes["b1"]
    assert anti.run([a1, b1]) == [b1]
    moved = anti.copy()
    moved.update(web, a1, -1)
    moved.update(web, b1, 1)
    assert moved.run([a1, b1]) == [a1]
    assert anti.run([a1, b1]) == [b1]  # the copy's counts are its own
    # A placed pod's own anti-affinity, added by update.
    loner = PodInfo(make_pod("l", affinity=_affinity("podAntiAffinity", {"app": "x"})))
    plain = InterPodAffinity().pre_filter(PodInfo(make_pod("x", labels={"app": "x"})), cache, {})
    assert plain is None  # nothing to say before
    c = _check(InterPodAffinity(), cache, make_pod("x", labels={"app": "x"},
                                                   affinity=_affinity("podAntiAffinity", {"app": "none"})))
    c.update(loner, a1, 1)
    assert c.run([a1, b1]) == [b1]


def test_spread_counts_move_with_update(cache: SchedulerCache) -> None:
    nodes(cache, make_node("a1", labels={"zone": "a"}), make_node("b1", labels={"zone": "b"}))
    c = [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule",
          "labelSelector": {"matchLabels": {"app": "web"}}}]
    pod = make_pod("p", labels={"app": "web"}, topologySpreadConstraints=c)
    check = _check(PodTopologySpread(), cache, pod)
    a1, b1 = cache.nodes["a1"], cache.nodes["b1"]
    assert check.run([a1, b1]) == [a1, b1]
    moved = check.copy()
    for i in range(2):
        moved.update(PodInfo(make_pod(f"w{i}", labels={"app": "web"})), a1, 1)
    assert moved.run([a1, b1]) == [b1]
    moved.update(PodInfo(make_pod("w9", labels={"app": "web"})), b1, 1)
    assert moved.run([a1, b1]) == [b1]  # a:2 b:1, min 1: a would be 3 - 1 = 2 > 1
    moved.update(PodInfo(make_pod("w0", labels={"app": "web"})), a1, -1)
    assert moved.run([a1, b1]) == [a1, b1]
    # Other namespaces and non-matching pods do not count.
    moved.update(PodInfo(make_pod("o", labels={"app": "web"}, ns="other")), a1, 5)
    moved.update(PodInfo(make_pod("d", labels={"app": "db"})), a1, 5)
    assert moved.run([a1, b1]) == [a1, b1]
    assert check.run([a1, b1]) == [a1, b1]
