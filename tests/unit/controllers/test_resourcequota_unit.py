"""Quota usage: what pods are charged, their effective requests and limits,
scopes, object counts and how sums are written."""

from __future__ import annotations

from typing import Any

from pinnace.controllers.resourcequota import (
    compute_used,
    pod_counts,
    pod_matches_scope,
    pod_resources,
    quota_scopes,
)

Obj = dict[str, Any]


def container(cpu: str | None = None, mem: str | None = None, limit_cpu: str | None = None,
              **extra: Any) -> Obj:
    req = {k: v for k, v in (("cpu", cpu), ("memory", mem)) if v}
    lim = {"cpu": limit_cpu} if limit_cpu else {}
    return {"name": "c", "resources": {"requests": req, "limits": lim}, **extra}


def pod(*containers: Obj, init: list[Obj] | None = None, phase: str = "Running",
        **spec: Any) -> Obj:
    return {"metadata": {"name": "p", "namespace": "ns"},
            "spec": {"containers": list(containers), "initContainers": init or [], **spec},
            "status": {"phase": phase}}


def simple(amounts: dict) -> dict[str, str]:
    from pinnace.api.quantity import format_quantity
    return {k: format_quantity(v, f) for k, (v, f) in amounts.items()}


def test_requests_sum_containers_and_take_the_init_peak() -> None:
    p = pod(container("100m", "64Mi"), container("200m", "64Mi"),
            init=[container("500m", "32Mi")])
    assert simple(pod_resources(p, "requests")) == {"cpu": "500m", "memory": "128Mi"}


def test_sidecars_add_to_steady_state_and_to_later_inits() -> None:
    sidecar = container("100m", restartPolicy="Always")
    p = pod(container("200m"), init=[sidecar, container("250m")])
    # steady: 200m + 100m sidecar = 300m; init peak: 250m + 100m sidecar = 350m
    assert simple(pod_resources(p, "requests")) == {"cpu": "350m"}


def test_overhead_and_limits() -> None:
    p = pod(container("100m", limit_cpu="1"), overhead={"cpu": "50m", "memory": "10Mi"})
    assert simple(pod_resources(p, "requests")) == {"cpu": "150m", "memory": "10Mi"}
    # Overhead only adds to limits that are set.
    assert simple(pod_resources(p, "limits")) == {"cpu": "1050m"}


def test_finished_and_long_deleted_pods_are_not_charged() -> None:
    assert pod_counts(pod(), 0)
    assert not pod_counts(pod(phase="Succeeded"), 0)
    assert not pod_counts(pod(phase="Failed"), 0)
    deleting = pod()
    deleting["metadata"].update(deletionTimestamp="2030-01-01T00:00:00Z",
                                deletionGracePeriodSeconds=30)
    assert pod_counts(deleting, 1893456000.0 + 10)
    assert not pod_counts(deleting, 1893456000.0 + 31)


def test_scopes() -> None:
    best = pod(container())
    burst = pod(container("100m"), activeDeadlineSeconds=60, priorityClassName="high")
    assert pod_matches_scope(best, "BestEffort") and not pod_matches_scope(burst, "BestEffort")
    assert pod_matches_scope(burst, "NotBestEffort")
    assert pod_matches_scope(burst, "Terminating") and pod_matches_scope(best, "NotTerminating")
    assert pod_matches_scope(burst, "PriorityClass", "In", ["high", "low"])
    assert not pod_matches_scope(best, "PriorityClass", "In", ["high"])
    assert pod_matches_scope(best, "PriorityClass", "NotIn", ["high"])
    assert pod_matches_scope(best, "PriorityClass", "DoesNotExist")
    assert pod_matches_scope(burst, "PriorityClass", "Exists")
    cross = pod(container(), affinity={"podAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": [{"namespaces": ["other"]}]}})
    assert pod_matches_scope(cross, "CrossNamespacePodAffinity")
    assert not pod_matches_scope(best, "CrossNamespacePodAffinity")
    q = {"spec": {"scopes": ["BestEffort"], "scopeSelector": {"matchExpressions": [
        {"scopeName": "PriorityClass", "operator": "In", "values": ["high"]}]}}}
    assert quota_scopes(q) == [("BestEffort", "Exists", []), ("PriorityClass", "In", ["high"])]


def lister(objs: dict[str, list[Obj]]) -> Any:
    async def objects(api_version: str, resource: str) -> list[Obj]:
        return objs.get(resource, [])
    return objects


def svc(type_: str, ports: int = 1, **spec: Any) -> Obj:
    return {"metadata": {"name": "s"},
            "spec": {"type": type_, "ports": [{"port": 80 + i} for i in range(ports)], **spec}}


async def test_compute_used() -> None:
    objs = {
        "pods": [pod(container("100m", "64Mi")), pod(container("1", "1Gi")),
                 pod(container("5"), phase="Succeeded"), pod(container())],
        "services": [svc("ClusterIP"), svc("NodePort", 2), svc("LoadBalancer"),
                     svc("LoadBalancer", allocateLoadBalancerNodePorts=False)],
        "persistentvolumeclaims": [
            {"metadata": {"name": "a"}, "spec": {"storageClassName": "fast",
                                                  "resources": {"requests": {"storage": "1Gi"}}}},
            {"metadata": {"name": "b"}, "spec": {"resources": {"requests": {"storage": "512Mi"}}}}],
        "configmaps": [{"metadata": {"name": "c"}}],
    }
    hard = {k: "100" for k in (
        "pods", "count/pods", "requests.cpu", "cpu", "requests.memory", "limits.cpu",
        "services", "services.nodeports", "services.loadbalancers", "persistentvolumeclaims",
        "requests.storage", "fast.storageclass.storage.k8s.io/requests.storage",
        "fast.storageclass.storage.k8s.io/persistentvolumeclaims", "configmaps",
        "count/configmaps", "secrets", "requests.nvidia.com/gpu", "count/widgets.example.com")}

    async def generic(group: str, resource: str) -> list[Obj]:
        assert (group, resource) == ("example.com", "widgets")
        return [{}, {}]

    used = await compute_used({"spec": {"hard": hard}}, lister(objs), 0, generic)
    assert used == {
        "pods": "3", "count/pods": "3", "requests.cpu": "1100m", "cpu": "1100m",
        "requests.memory": "1088Mi", "limits.cpu": "0", "services": "4",
        "services.nodeports": "3", "services.loadbalancers": "2",
        "persistentvolumeclaims": "2", "requests.storage": "1536Mi",
        "fast.storageclass.storage.k8s.io/requests.storage": "1Gi",
        "fast.storageclass.storage.k8s.io/persistentvolumeclaims": "1",
        "configmaps": "1", "count/configmaps": "1", "secrets": "0",
        "requests.nvidia.com/gpu": "0", "count/widgets.example.com": "2"}


async def test_scoped_quota_counts_only_matching_pods() -> None:
    objs = {"pods": [pod(container("100m")), pod(container()), pod(container())],
            "services": [svc("ClusterIP")]}
    q = {"spec": {"hard": {"pods": "5", "services": "5"}, "scopes": ["BestEffort"]}}
    assert await compute_used(q, lister(objs), 0) == {"pods": "2", "services": "0"}
