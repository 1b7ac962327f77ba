"""The HPA's arithmetic (replicacalc.py, hpabehavior.py) against cases
shaped like upstream's replica_calculator_test.go and horizontal_test.go."""

from __future__ import annotations

from typing import Any

import pytest

from pinnace.controllers import hpabehavior as behave
from pinnace.controllers import replicacalc as calc

Obj = dict[str, Any]
T0 = 1_700_000_000.0


def _ts(t: float) -> str:
    import datetime as dt
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def pod(name: str, cpu: str | None = "1", phase: str = "Running", ready: str = "True",
        started: float = T0 - 3600, ready_since: float = T0 - 3000, deleting: bool = False,
        ) -> Obj:
    requests = {"cpu": cpu} if cpu is not None else {}
    meta: Obj = {"name": name, "namespace": "ns"}
    if deleting:
        meta["deletionTimestamp"] = _ts(T0)
    return {"metadata": meta,
            "spec": {"containers": [{"name": "c", "resources": {"requests": requests}}]},
            "status": {"phase": phase, "startTime": _ts(started), "conditions": [
                {"type": "Ready", "status": ready, "lastTransitionTime": _ts(ready_since)}]}}


def metrics(**values: int) -> dict[str, calc.PodMetric]:
    return {k.replace("_", "-"): calc.PodMetric(v, T0, 30) for k, v in values.items()}


def inputs(current: int, pods: list[Obj], m: dict[str, calc.PodMetric],
           resource: str = "cpu") -> calc.Inputs:
    return calc.Inputs(current, pods, m, resource, calc.Tolerances(), now=T0)


def test_scale_up_and_down_by_utilization() -> None:
    pods = [pod("a"), pod("b"), pod("c")]
    # 300m + 500m + 700m of 3 cores requested, target 30%: 50% -> ceil(3 * 50/30) = 5
    assert calc.resource_replicas(inputs(3, pods, metrics(a=300, b=500, c=700)), 30) == \
        (5, 50, 500)
    # 10% of target 50%: ratio 0.2 -> 1
    assert calc.resource_replicas(inputs(3, pods, metrics(a=100, b=100, c=100)), 50)[0] == 1


def test_within_tolerance_keeps_the_count() -> None:
    pods = [pod("a"), pod("b")]
    assert calc.resource_replicas(inputs(2, pods, metrics(a=540, b=540)), 50)[0] == 2  # 1.08
    assert calc.resource_replicas(inputs(2, pods, metrics(a=560, b=560)), 50)[0] == 3  # 1.12
    wide = calc.Inputs(2, pods, metrics(a=560, b=560), "cpu", calc.Tolerances(up=0.2), now=T0)
    assert calc.resource_replicas(wide, 50)[0] == 2


def test_missing_pods_count_as_full_request_on_scale_down() -> None:
    pods = [pod("a"), pod("b"), pod("c"), pod("d")]
    # a, b at 10% of target 50%; c, d have no metric -> taken as 100%:
    # (100+100+1000+1000)/4000 = 55% -> ratio 1.1: within tolerance, keep 4
    got = calc.resource_replicas(inputs(4, pods, metrics(a=100, b=100)), 50)
    assert got[0] == 4


def test_missing_and_unready_pods_count_as_zero_on_scale_up() -> None:
    pods = [pod("a"), pod("b"), pod("c", phase="Pending"), pod("d")]
    # a, b at 100% of target 50% (ratio 2); c Pending, d missing -> 0:
    # (1000+1000+0+0)/4000 = 50% -> ratio 1.0 -> keep 4
    assert calc.resource_replicas(inputs(4, pods, metrics(a=1000, b=1000)), 50)[0] == 4
    # a, b at 300%: (3000+3000)/4000 = 150% -> ratio 3 -> ceil(3 * 4) = 12
    assert calc.resource_replicas(inputs(4, pods, metrics(a=3000, b=3000)), 50)[0] == 12


def test_ignored_and_unready_pods() -> None:
    pods = [pod("a"), pod("b", deleting=True), pod("c", phase="Failed"),
            pod("d", ready="False", started=T0 - 20, ready_since=T0 - 20)]
    g = calc.group_pods(pods, metrics(a=1, b=1, c=1, d=1), "cpu", 300, 30, T0)
    assert (g.ready, g.ignored, g.unready, g.missing) == (1, {"b", "c"}, {"d"}, set())
    # Within the initialization period a Ready pod sampled less than a window
    # after it became Ready is unready too, for CPU only.
    fresh = [pod("e", started=T0 - 60, ready_since=T0 - 10)]
    assert calc.group_pods(fresh, metrics(e=1), "cpu", 300, 30, T0).unready == {"e"}
    assert calc.group_pods(fresh, metrics(e=1), "memory", 300, 30, T0).ready == 1
    # Past it, an unready pod that was never ready stays out; one that was counts.
    never = [pod("f", ready="False", started=T0 - 900, ready_since=T0 - 890)]
    assert calc.group_pods(never, metrics(f=1), "cpu", 300, 30, T0).unready == {"f"}
    was = [pod("g", ready="False", started=T0 - 900, ready_since=T0 - 100)]
    assert calc.group_pods(was, metrics(g=1), "cpu", 300, 30, T0).ready == 1


def test_errors_say_what_upstream_says() -> None:
    with pytest.raises(calc.MetricError, match="^missing request for cpu in container c of "
                                               "Pod a$"):
        calc.resource_replicas(inputs(1, [pod("a", cpu=None)], metrics(a=1)), 50)
    with pytest.raises(calc.MetricError, match="^no pods returned by selector"):
        calc.resource_replicas(inputs(1, [], metrics(a=1)), 50)
    with pytest.raises(calc.MetricError, match=r"pods might be unready"):
        calc.resource_replicas(inputs(1, [pod("a", phase="Pending")], metrics(a=1)), 50)


def test_average_value() -> None:
    pods = [pod("a"), pod("b")]
    mib = 2**20 * 1000
    # 48Mi average against 32Mi: ratio 1.5 -> 3
    assert calc.raw_resource_replicas(inputs(2, pods, metrics(a=40 * mib, b=56 * mib),
                                             "memory"), 32 * mib) == (3, 48 * mib)
    # a missing pod on a scale-down counts as exactly the target
    got = calc.raw_resource_replicas(inputs(2, pods, metrics(a=8 * mib), "memory"), 32 * mib)
    assert got == (2, 8 * mib)  # (8 + 32) / 2 = 20 of 32 -> ratio 0.625 -> ceil(1.25) = 2


def test_pod_metrics_from_metrics_api() -> None:
    items = [{"metadata": {"name": "a", "namespace": "ns"}, "timestamp": _ts(T0),
              "window": "10s", "containers": [
                  {"name": "c", "usage": {"cpu": "250m", "memory": "64Mi"}},
                  {"name": "s", "usage": {"cpu": "1500000n", "memory": "1Mi"}}]},
             {"metadata": {"name": "b"}, "timestamp": _ts(T0), "window": "1m30s",
              "containers": []}]
    got = calc.pod_metrics(items, "cpu")
    assert got == {"a": calc.PodMetric(252, T0, 10.0)}  # 250m + 1.5m rounded up
    assert calc.pod_metrics(items[:1], "memory", "s")["a"].value == 2**20 * 1000
    with pytest.raises(calc.MetricError, match="container x not present in metrics"):
        calc.pod_metrics(items[:1], "cpu", "x")
    assert calc.parse_go_duration("1m30s") == 90.0


# -- stabilization and limits ------------------------------------------------------------


def test_default_downscale_stabilization_is_300_seconds() -> None:
    mem = behave.Memory()
    mem.record_initial(10, T0)
    assert behave.stabilize(mem, 4, 300, T0 + 1) == 10
    assert behave.stabilize(mem, 3, 300, T0 + 299) == 10
    # the 10 is older than the window now; 4 and 3 are not
    assert behave.stabilize(mem, 2, 300, T0 + 301) == 4
    assert behave.stabilize(mem, 2, 300, T0 + 602) == 2
    # scaling up is never held
    assert behave.stabilize(mem, 20, 300, T0 + 603) == 20


def test_legacy_scale_up_limit_and_bounds() -> None:
    assert behave.limit(1, 10, 1, 20) == behave.Limited(
        4, "ScaleUpLimit", "the desired replica count is increasing faster than the maximum "
                           "scale rate")
    assert behave.limit(5, 30, 1, 20).replicas == 10
    assert behave.limit(5, 30, 1, 8).reason == "TooManyReplicas"
    assert behave.limit(5, 0, 2, 8) == behave.Limited(
        2, "TooFewReplicas", "the desired replica count is less than the minimum replica count")
    assert behave.limit(5, 6, 2, 8).reason == "DesiredWithinRange"


DEFAULT_BEHAVIOR: Obj = {
    "scaleUp": {"stabilizationWindowSeconds": 0, "selectPolicy": "Max",
                "policies": [{"type": "Pods", "value": 4, "periodSeconds": 15},
                             {"type": "Percent", "value": 100, "periodSeconds": 15}]},
    "scaleDown": {"stabilizationWindowSeconds": 300, "selectPolicy": "Max",
                  "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]}}


def test_default_scale_up_policy() -> None:
    """+4 pods or +100% per 15 s, whichever is more, counting the changes
    already made within the period."""
    mem = behave.Memory()
    got = behave.limit_with_behavior(mem, DEFAULT_BEHAVIOR, 1, 20, 1, 50, T0)
    assert (got.replicas, got.reason) == (5, "ScaleUpLimit")
    behave.store_scale_event(mem, DEFAULT_BEHAVIOR, 1, 5, T0)
    # within the period: the period started at 1, so 5 is the most
    assert behave.limit_with_behavior(mem, DEFAULT_BEHAVIOR, 5, 20, 1, 50, T0 + 5).replicas == 5
    # after it: max(5 + 4, 5 * 2) = 10
    assert behave.limit_with_behavior(mem, DEFAULT_BEHAVIOR, 5, 20, 1, 50,
                                      T0 + 16).replicas == 10
    assert behave.limit_with_behavior(mem, DEFAULT_BEHAVIOR, 5, 20, 1, 8,
                                      T0 + 16).reason == "TooManyReplicas"


def test_scale_down_policies_and_select() -> None:
    rules: Obj = {"scaleUp": DEFAULT_BEHAVIOR["scaleUp"], "scaleDown": {
        "selectPolicy": "Max", "policies": [{"type": "Pods", "value": 2, "periodSeconds": 60},
                                            {"type": "Percent", "value": 10,
                                             "periodSeconds": 60}]}}
    mem = behave.Memory()
    # Max: the policy allowing the bigger change (-2 pods beats -10% of 10)
    got = behave.limit_with_behavior(mem, rules, 10, 1, 1, 20, T0)
    assert (got.replicas, got.reason) == (8, "ScaleDownLimit")
    rules["scaleDown"]["selectPolicy"] = "Min"
    assert behave.limit_with_behavior(mem, rules, 10, 1, 1, 20, T0).replicas == 9
    rules["scaleDown"]["selectPolicy"] = "Disabled"
    assert behave.limit_with_behavior(mem, rules, 10, 1, 1, 20, T0).replicas == 10


def test_stabilization_with_behavior() -> None:
    mem = behave.Memory()
    mem.record_initial(6, T0)
    rec, reason, _ = behave.stabilize_with_behavior(mem, DEFAULT_BEHAVIOR, 6, 2, 300, T0 + 10)
    assert (rec, reason) == (6, "ScaleDownStabilized")
    behavior = {**DEFAULT_BEHAVIOR, "scaleUp": {**DEFAULT_BEHAVIOR["scaleUp"],
                                                "stabilizationWindowSeconds": 60}}
    mem = behave.Memory()
    mem.record_initial(2, T0)
    rec, reason, _ = behave.stabilize_with_behavior(mem, behavior, 2, 8, 300, T0 + 10)
    assert (rec, reason) == (2, "ScaleUpStabilized")
    rec, _, _ = behave.stabilize_with_behavior(mem, behavior, 2, 8, 300, T0 + 71)
    assert rec == 8
