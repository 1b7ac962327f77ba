from __future__ import annotations

from conftest import make_node, make_pod

from pinnace.scheduler.cache import PodInfo, SchedulerCache


def test_aggregates_follow_pods(cache: SchedulerCache) -> None:
    cache.add_node(make_node("n1", images=[{"names": ["nginx:1.27", "docker.io/library/nginx@sha256:ab"],
                                              "sizeBytes": 70_000_000}]))
    p = make_pod("a", "250m", "1Gi", node="n1")
    p["spec"]["containers"][0]["ports"] = [{"containerPort": 80, "hostPort": 8080}]
    cache.add_pod(p)
    ni = cache.nodes["n1"]
    assert (ni.req_cpu, ni.req_mem, len(ni.pods)) == (250, 1 << 30, 1)
    assert ni.free_cpu == 3750 and ni.free_pods == 109
    assert ("TCP", 8080) in ni.used_ports
    assert ni.images["nginx:1.27"] == 70_000_000 and cache.image_nodes["nginx:1.27"] == 1
    cache.remove_pod(p)
    assert (ni.req_cpu, ni.req_mem, len(ni.pods), ni.used_ports) == (0, 0, 0, {})


def test_terminal_pods_do_not_count_but_terminating_do(cache: SchedulerCache) -> None:
    cache.add_node(make_node("n1"))
    p = make_pod("a", "1", node="n1")
    p["metadata"]["deletionTimestamp"] = "2025-01-01T00:00:00Z"
    cache.add_pod(p)
    assert cache.nodes["n1"].req_cpu == 1000
    p2 = dict(p, status={"phase": "Succeeded"})
    cache.update_pod(p2)
    assert cache.nodes["n1"].req_cpu == 0


def test_assume_confirm_forget(cache: SchedulerCache) -> None:
    cache.add_node(make_node("n1"))
    pod = make_pod("a", "500m")
    cache.assume_pod(pod, "n1")
    assert cache.is_assumed("default/a") and cache.nodes["n1"].req_cpu == 500
    cache.forget_pod(pod)
    assert cache.nodes["n1"].req_cpu == 0
    cache.assume_pod(pod, "n1")
    cache.add_pod(make_pod("a", "500m", node="n1"))  # the informer confirms it
    assert not cache.is_assumed("default/a") and cache.nodes["n1"].req_cpu == 500
    cache.forget_pod(pod)  # not assumed any more: stays
    assert cache.nodes["n1"].req_cpu == 500


def test_confirmation_and_status_updates_keep_the_node_as_it_was(cache: SchedulerCache) -> None:
    cache.add_node(make_node("n1"))
    pod = make_pod("a", "500m", labels={"app": "web"})
    cache.assume_pod(pod, "n1")
    ni = cache.nodes["n1"]
    ni.memo["score"] = 42  # a plugin's remembered result for this node
    generation = ni.generation
    bound = make_pod("a", "500m", node="n1", labels={"app": "web"})
    cache.add_pod(bound)
    assert not cache.is_assumed("default/a") and cache.get_pod("default/a").pod is bound
    running = dict(bound, status={"phase": "Running", "startTime": "2026-01-01T00:00:00Z"})
    cache.update_pod(running)
    assert cache.get_pod("default/a").start_time == "2026-01-01T00:00:00Z"
    assert (ni.memo, ni.generation, ni.req_cpu) == ({"score": 42}, generation, 500)
    # A change the scheduler counts is taken in full.
    relabeled = make_pod("a", "500m", node="n1", labels={"app": "db"})
    cache.update_pod(relabeled)
    assert ni.memo == {} and set(cache.pods_with_label("default", "app", "db")) == {"default/a"}
    assert not cache.pods_with_label("default", "app", "web")
    terminating = make_pod("a", "500m", node="n1", labels={"app": "db"})
    terminating["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    cache.update_pod(terminating)
    assert cache.get_pod("default/a").terminating and ni.req_cpu == 500


def test_init_containers_sidecars_and_overhead() -> None:
    pod = make_pod("a", "100m", "100Mi")
    pod["spec"]["initContainers"] = [
        {"name": "side", "image": "x", "restartPolicy": "Always", "resources": {"requests": {"cpu": "50m"}}},
        {"name": "init", "image": "x", "resources": {"requests": {"cpu": "1", "memory": "50Mi"}}},
    ]
    pod["spec"]["overhead"] = {"cpu": "10m", "memory": "1Mi"}
    pi = PodInfo(pod)
    # max(100m + 50m sidecar, 1 + 50m sidecar) + 10m overhead
    assert pi.cpu == 1060
    assert pi.mem == (100 << 20) + (1 << 20)


def test_nonzero_defaults_for_containers_without_requests() -> None:
    pi = PodInfo(make_pod("a", None, None))
    assert (pi.cpu, pi.mem) == (0, 0)
    assert (pi.nz_cpu, pi.nz_mem) == (100, 200 << 20)


def test_node_removed_and_back_keeps_pods(cache: SchedulerCache) -> None:
    cache.add_node(make_node("n1"))
    cache.add_pod(make_pod("a", "1", node="n1"))
    cache.remove_node("n1")
    assert cache.node_list() == []
    cache.add_node(make_node("n1"))
    assert cache.nodes["n1"].req_cpu == 1000 and len(cache.node_list()) == 1


def test_label_index_follows_pods(cache: SchedulerCache) -> None:
    cache.add_node(make_node("n1"))
    cache.add_pod(make_pod("a", node="n1", labels={"app": "web", "tier": "fe"}))
    cache.add_pod(make_pod("b", node="n1", labels={"app": "web"}, ns="other"))
    assert set(cache.pods_with_label("default", "app", "web")) == {"default/a"}
    cache.add_pod(make_pod("a", node="n1", labels={"app": "db"}))  # relabeled
    assert not cache.pods_with_label("default", "app", "web")
    assert set(cache.pods_with_label("default", "app", "db")) == {"default/a"}
    cache.remove_pod("default/a")
    assert not cache.pods_by_label.get(("default", "app", "db"))
    assert set(cache.pods_with_label("other", "app", "web")) == {"other/b"}


def test_candidate_pods_use_the_smallest_alternative(cache: SchedulerCache) -> None:
    cache.add_node(make_node("n1"))
    for i in range(5):
        cache.add_pod(make_pod(f"w{i}", node="n1", labels={"app": "web", "shard": str(i)}))
    cache.add_pod(make_pod("db", node="n1", labels={"app": "db"}))
    names = sorted(p.name for p in cache.candidate_pods(["default"], [(("app", "web"),), (("shard", "1"), ("shard", "2"))]))
    assert names == ["w1", "w2"]
    assert [p.name for p in cache.candidate_pods(None, [(("app", "db"),)])] == ["db"]
    assert len(list(cache.candidate_pods(["default"], None))) == 6  # nothing to look up: every pod
    assert list(cache.candidate_pods(["default"], [()])) == []  # a selector that matches nothing


def test_nominated_pods(cache: SchedulerCache) -> None:
    cache.add_node(make_node("n1"))
    pod = make_pod("p", "1", priority=10)
    pod["status"]["nominatedNodeName"] = "n1"
    cache.add_nominated_pod(PodInfo(pod))
    assert [p.name for p in cache.nominated_pods("n1")] == ["p"] and cache.nominated_node_of("default/p") == "n1"
    # Nominated in memory, the status update not seen yet: an unrelated update keeps it.
    fresh = make_pod("q", "1")
    cache.add_nominated_pod(PodInfo(fresh), "n1")
    cache.update_nominated_pod(fresh, PodInfo(make_pod("q", "1", labels={"x": "y"})))
    assert cache.nominated_node_of("default/q") == "n1"
    # The status clearing it does drop it.
    old = make_pod("p", "1", priority=10)
    old["status"]["nominatedNodeName"] = "n1"
    cache.update_nominated_pod(old, PodInfo(make_pod("p", "1", priority=10)))
    assert cache.nominated_node_of("default/p") is None
    # Placing the pod ends its nomination.
    cache.assume_pod(fresh, "n1")
    assert cache.nominated_node_of("default/q") is None and cache.nominated == {}
