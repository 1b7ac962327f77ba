"""The HorizontalPodAutoscaler controller through real kubectl and the
official Python client: clamping to [minReplicas, maxReplicas] with no
metrics at all (status, conditions and events as upstream writes them), and
scaling on CPU utilization and memory AverageValue from metrics.k8s.io
(simulated nodes report the usage their pods' pinnace.dev/sim-usage
annotation asks for), with stabilization and behavior policies."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pinnace.controllers.deployment import DeploymentController
from pinnace.controllers.horizontal import HorizontalController
from pinnace.controllers.replicaset import ReplicaSetController
from pinnace.kubelet.sim import node_names
from tests.conftest import Server, wait_for
from tests.integration.controllers.batch_harness import Controllers
from tests.integration.test_sim import SimThread

Obj = dict[str, Any]
USAGE = "pinnace.dev/sim-usage"
NO_METRICS = ("the HPA was unable to compute the replica count: failed to get cpu utilization: "
              "unable to get metrics for resource cpu: no metrics returned from resource "
              "metrics API")


@pytest.fixture
def autoscaling(server: Server) -> Iterator[Callable[..., Controllers]]:
    """Start the ReplicaSet, Deployment and HPA controllers with options."""
    started: list[Controllers] = []

    def start(**options: Any) -> Controllers:
        options = {"hpa_sync_period": 1, "hpa_cpu_initialization_period": 0, **options}
        h = Controllers(server, [ReplicaSetController, DeploymentController,
                                 HorizontalController], options=options)
        h.__enter__()
        started.append(h)
        return h

    yield start
    for h in started:
        h.__exit__(None, None, None)


@pytest.fixture
def sim_node(server: Server, namespace: str) -> Iterator[str]:
    names = node_names(1, f"{namespace[:40]}-n")
    sim = SimThread(server, names, renew_interval=0.5)
    try:
        yield names[0]
    finally:
        sim.stop()
        server.kubectl("delete", "node", *names, "--wait=false", check=False)


def _get(server: Server, ns: str, *what: str) -> Obj:
    return json.loads(server.kubectl("-n", ns, "get", *what, "-o", "json").stdout)  # type: ignore[no-any-return]


def _apply(server: Server, ns: str, obj: Obj) -> None:
    server.kubectl("-n", ns, "apply", "-f", "-", input=json.dumps(obj))


def _cond(hpa: Obj, type_: str) -> Obj:
    for c in (hpa.get("status") or {}).get("conditions") or []:
        if c["type"] == type_:
            return c  # type: ignore[no-any-return]
    return {}


def _events(server: Server, ns: str, name: str) -> list[tuple[str, str]]:
    items = _get(server, ns, "events")["items"]
    return [(e["reason"], e["message"]) for e in items
            if e["involvedObject"].get("kind") == "HorizontalPodAutoscaler"
            and e["involvedObject"]["name"] == name]


def _replicas(server: Server, ns: str, kind: str, name: str) -> int:
    return int(_get(server, ns, kind, name)["spec"].get("replicas") or 0)


def test_clamps_to_min_and_max_without_metrics(server: Server, namespace: str,
                                               autoscaling: Callable[..., Controllers]) -> None:
    ns = namespace
    autoscaling()
    server.kubectl("-n", ns, "create", "deployment", "web", "--image=nginx:1.27",
                   "--replicas=1")
    server.kubectl("-n", ns, "autoscale", "deployment", "web", "--min=3", "--max=5",
                   "--cpu-percent=50")
    wait_for(lambda: _replicas(server, ns, "deployment", "web") == 3, timeout=10,
             what="the deployment scaled up to minReplicas")
    hpa = wait_for(lambda: (h := _get(server, ns, "hpa", "web")).get("status", {}).get(
        "desiredReplicas") == 3 and h, what="the HPA's status")
    assert hpa["status"]["currentReplicas"] == 1
    assert hpa["status"]["lastScaleTime"].endswith("Z")
    assert ("SuccessfulRescale", "New size: 3; reason: Current number of replicas below "
                                 "Spec.MinReplicas") in \
        wait_for(lambda: _events(server, ns, "web"), what="events")

    # No pod runs, so no metric: nothing more changes, and the HPA says why.
    hpa = wait_for(lambda: (h := _get(server, ns, "hpa", "web")) and
                   _cond(h, "ScalingActive").get("status") == "False" and h,
                   what="ScalingActive=False")
    active = _cond(hpa, "ScalingActive")
    assert active["reason"] == "FailedGetResourceMetric"
    assert active["message"] == NO_METRICS
    able = _cond(hpa, "AbleToScale")
    assert (able["status"], able["reason"], able["message"]) == (
        "True", "SucceededGetScale",
        "the HPA controller was able to get the target's current scale")
    assert hpa["status"]["currentReplicas"] == 3 and hpa["status"]["desiredReplicas"] == 3
    reasons = {r for r, _ in _events(server, ns, "web")}
    assert {"FailedGetResourceMetric", "FailedComputeMetricsReplicas"} <= reasons
    row = server.kubectl("-n", ns, "get", "hpa", "web", "--no-headers").stdout.split()
    assert row[:6] == ["web", "Deployment/web", "cpu:", "<unknown>/50%", "3", "5"]

    # Above maxReplicas: brought down to it at once.
    server.kubectl("-n", ns, "scale", "deployment", "web", "--replicas=9")
    wait_for(lambda: _replicas(server, ns, "deployment", "web") == 5, timeout=10,
             what="the deployment scaled down to maxReplicas")
    wait_for(lambda: ("SuccessfulRescale", "New size: 5; reason: Current number of replicas "
                                           "above Spec.MaxReplicas") in
             _events(server, ns, "web"), what="the rescale event")

    # The same autoscaler through autoscaling/v1 and the official client.
    from kubernetes import client as k8s

    with server.api_client() as api:
        v1 = k8s.AutoscalingV1Api(api)
        got = wait_for(lambda: (h := v1.read_namespaced_horizontal_pod_autoscaler("web", ns))
                       and h.status.desired_replicas == 5 and h, what="v1 status")
        assert got.status.current_replicas == 9
        assert got.spec.target_cpu_utilization_percentage == 50


def test_autoscaling_v1_created_by_the_official_client(
        server: Server, namespace: str, autoscaling: Callable[..., Controllers]) -> None:
    from kubernetes import client as k8s

    ns = namespace
    autoscaling()
    server.kubectl("-n", ns, "create", "deployment", "api", "--image=nginx:1.27",
                   "--replicas=1")
    with server.api_client() as api:
        k8s.AutoscalingV1Api(api).create_namespaced_horizontal_pod_autoscaler(ns, {
            "apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "api"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                        "name": "api"},
                     "minReplicas": 2, "maxReplicas": 4,
                     "targetCPUUtilizationPercentage": 60}})
        wait_for(lambda: _replicas(server, ns, "deployment", "api") == 2, timeout=10,
                 what="minReplicas applied")
        got = wait_for(lambda: (h := k8s.AutoscalingV1Api(api)
                                .read_namespaced_horizontal_pod_autoscaler("api", ns))
                       and h.status.last_scale_time and h, what="v1 status")
        assert (got.status.current_replicas, got.status.desired_replicas) == (1, 2)


def test_missing_target_sets_able_to_scale_false(
        server: Server, namespace: str, autoscaling: Callable[..., Controllers]) -> None:
    ns = namespace
    autoscaling()
    _apply(server, ns, {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                        "metadata": {"name": "ghost"},
                        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1",
                                                    "kind": "Deployment", "name": "nope"},
                                 "maxReplicas": 3}})
    hpa = wait_for(lambda: (h := _get(server, ns, "hpa", "ghost")) and
                   _cond(h, "AbleToScale") and h, what="a condition")
    able = _cond(hpa, "AbleToScale")
    assert (able["status"], able["reason"]) == ("False", "FailedGetScale")
    assert able["message"] == ('the HPA controller was unable to get the target\'s current '
                               'scale: deployments.apps "nope" not found')
    _apply(server, ns, {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                        "metadata": {"name": "odd"},
                        "spec": {"scaleTargetRef": {"apiVersion": "example.com/v1",
                                                    "kind": "Nothing", "name": "x"},
                                 "maxReplicas": 3}})
    hpa = wait_for(lambda: (h := _get(server, ns, "hpa", "odd")) and
                   _cond(h, "AbleToScale") and h, what="a condition")
    assert _cond(hpa, "AbleToScale")["message"] == (
        "the HPA controller was unable to get the target's current scale: "
        'no matches for kind "Nothing" in group "example.com"')


def _replicaset(name: str, node: str, replicas: int, usage: str, request: Obj) -> Obj:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels, "annotations": {USAGE: usage}},
                                  "spec": {"nodeName": node, "containers": [
                                      {"name": "app", "image": "nginx:1.27",
                                       "resources": {"requests": request}}]}}}}


def _hpa(name: str, metric: Obj, lo: int, hi: int, behavior: Obj | None = None) -> Obj:
    spec: Obj = {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                    "name": name},
                 "minReplicas": lo, "maxReplicas": hi, "metrics": [metric]}
    if behavior is not None:
        spec["behavior"] = behavior
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": name}, "spec": spec}


def _running(server: Server, ns: str, app: str) -> int:
    pods = _get(server, ns, "pods", "-l", f"app={app}")["items"]
    return sum(1 for p in pods if p.get("status", {}).get("phase") == "Running")


def test_scales_on_cpu_utilization(server: Server, namespace: str, sim_node: str,
                                   autoscaling: Callable[..., Controllers]) -> None:
    """100m used of 100m requested against a 50% target: ratio 2, so 2 -> 4
    (the default scale-up limit is max(2 * current, 4)), then 4 -> 8 capped
    at maxReplicas 6. Then usage drops: the default 300 s downscale
    stabilization keeps 6."""
    ns = namespace
    autoscaling()
    _apply(server, ns, _replicaset("cpu", sim_node, 2, "cpu=100m,memory=32Mi",
                                   {"cpu": "100m", "memory": "64Mi"}))
    wait_for(lambda: _running(server, ns, "cpu") == 2, timeout=30, what="two running pods")
    _apply(server, ns, _hpa("cpu", {"type": "Resource", "resource": {
        "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}, 1, 6))
    wait_for(lambda: _replicas(server, ns, "rs", "cpu") == 4, timeout=15, what="2 -> 4")
    hpa = _get(server, ns, "hpa", "cpu")
    assert hpa["status"]["currentMetrics"] == [{"type": "Resource", "resource": {
        "name": "cpu", "current": {"averageUtilization": 100, "averageValue": "100m"}}}]
    active = _cond(hpa, "ScalingActive")
    assert (active["status"], active["reason"], active["message"]) == (
        "True", "ValidMetricFound", "the HPA was able to successfully calculate a replica "
        "count from cpu resource utilization (percentage of request)")
    assert _cond(hpa, "ScalingLimited")["reason"] == "DesiredWithinRange"
    assert ("SuccessfulRescale", "New size: 4; reason: cpu resource utilization (percentage "
                                 "of request) above target") in _events(server, ns, "cpu")
    wait_for(lambda: _replicas(server, ns, "rs", "cpu") == 6, timeout=30, what="4 -> 6")
    hpa = wait_for(lambda: (h := _get(server, ns, "hpa", "cpu")) and
                   _cond(h, "ScalingLimited").get("status") == "True" and h,
                   what="ScalingLimited")
    limited = _cond(hpa, "ScalingLimited")
    assert (limited["reason"], limited["message"]) == (
        "TooManyReplicas", "the desired replica count is more than the maximum replica count")
    row = server.kubectl("-n", ns, "get", "hpa", "cpu", "--no-headers").stdout.split()
    assert row[1:6] == ["ReplicaSet/cpu", "cpu:", "100%/50%", "1", "6"]

    # Usage falls to 10%: the recommendation is 2, held at 6 by the window.
    wait_for(lambda: _running(server, ns, "cpu") == 6, timeout=30, what="six running pods")
    server.kubectl("-n", ns, "annotate", "pods", "-l", "app=cpu", "--overwrite",
                   f"{USAGE}=cpu=10m,memory=32Mi")
    hpa = wait_for(lambda: (h := _get(server, ns, "hpa", "cpu")) and
                   _cond(h, "AbleToScale").get("reason") == "ScaleDownStabilized" and h,
                   what="ScaleDownStabilized")
    assert _cond(hpa, "AbleToScale")["message"] == (
        "recent recommendations were higher than current one, applying the highest recent "
        "recommendation")
    assert hpa["status"]["desiredReplicas"] == 6
    assert _replicas(server, ns, "rs", "cpu") == 6


def test_memory_average_value_with_behavior(server: Server, namespace: str, sim_node: str,
                                            autoscaling: Callable[..., Controllers]) -> None:
    """16Mi used per pod against a 32Mi AverageValue: the metric asks for 2
    of 4. The scale-down window (3 s here) holds 4 first; then the policy
    (25% per 60 s) allows 3 only, and holds it there for the period."""
    ns = namespace
    autoscaling()
    _apply(server, ns, _replicaset("mem", sim_node, 4, "cpu=10m,memory=16Mi",
                                   {"cpu": "100m", "memory": "64Mi"}))
    wait_for(lambda: _running(server, ns, "mem") == 4, timeout=30, what="four running pods")
    _apply(server, ns, _hpa("mem", {"type": "Resource", "resource": {
        "name": "memory", "target": {"type": "AverageValue", "averageValue": "32Mi"}}}, 1, 10,
        behavior={"scaleDown": {"stabilizationWindowSeconds": 3, "policies": [
            {"type": "Percent", "value": 25, "periodSeconds": 60}]}}))
    hpa = wait_for(lambda: (h := _get(server, ns, "hpa", "mem")) and
                   _cond(h, "AbleToScale").get("reason") == "ScaleDownStabilized" and h,
                   timeout=10, what="the scale-down held by the window")
    assert _replicas(server, ns, "rs", "mem") == 4
    assert hpa["status"]["currentMetrics"] == [{"type": "Resource", "resource": {
        "name": "memory", "current": {"averageValue": "16777216"}}}]
    assert hpa["spec"]["behavior"]["scaleUp"]["policies"] == [
        {"type": "Pods", "value": 4, "periodSeconds": 15},
        {"type": "Percent", "value": 100, "periodSeconds": 15}]
    wait_for(lambda: _replicas(server, ns, "rs", "mem") == 3, timeout=15, what="4 -> 3")
    hpa = wait_for(lambda: (h := _get(server, ns, "hpa", "mem")) and
                   _cond(h, "ScalingLimited").get("reason") == "ScaleDownLimit" and h,
                   what="ScaleDownLimit")
    limited = _cond(hpa, "ScalingLimited")
    assert (limited["status"], limited["message"]) == (
        "True", "the desired replica count is decreasing faster than the maximum scale rate")
    assert ("SuccessfulRescale", "New size: 3; reason: All metrics below target") in \
        _events(server, ns, "mem")
    assert _replicas(server, ns, "rs", "mem") == 3
