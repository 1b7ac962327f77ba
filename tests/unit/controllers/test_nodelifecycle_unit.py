"""Node lifecycle rules: conditions marked Unknown, taints mirrored from
conditions, and when a NoExecute taint evicts a pod."""

from __future__ import annotations

from typing import Any

from pinnace.controllers.nodelifecycle import (
    desired_taints,
    eviction_time,
    tolerates,
    unknown_conditions,
)

Obj = dict[str, Any]
NOW = "2030-01-01T00:00:00Z"
T0 = 1893456000.0  # NOW as epoch seconds


def node(ready: str | None = "True", taints: list[Obj] | None = None, **conds: str) -> Obj:
    c = [{"type": t, "status": s, "reason": "x"} for t, s in conds.items()]
    if ready is not None:
        c.append({"type": "Ready", "status": ready, "reason": "KubeletReady",
                  "lastHeartbeatTime": "2029-12-31T23:59:00Z"})
    return {"metadata": {"name": "n"}, "spec": {"taints": taints or []},
            "status": {"conditions": c}}


def keys(taints: list[Obj]) -> set[tuple[str, str]]:
    return {(t["key"], t["effect"]) for t in taints}


def test_lost_node_conditions_become_unknown_and_missing_ones_are_added() -> None:
    conds = unknown_conditions(node("True", MemoryPressure="False"), NOW)
    assert conds is not None
    by = {c["type"]: c for c in conds}
    assert by["Ready"]["status"] == "Unknown"
    assert by["Ready"]["reason"] == "NodeStatusUnknown"
    assert by["Ready"]["message"] == "Kubelet stopped posting node status."
    assert by["Ready"]["lastTransitionTime"] == NOW
    assert by["Ready"]["lastHeartbeatTime"] == "2029-12-31T23:59:00Z"  # the kubelet's last
    assert by["MemoryPressure"]["status"] == "Unknown"
    assert by["DiskPressure"]["reason"] == "NodeStatusNeverUpdated"
    assert by["DiskPressure"]["message"] == "Kubelet never posted node status."
    assert unknown_conditions({"status": {"conditions": conds}}, NOW) is None


def test_taints_follow_ready_condition() -> None:
    assert keys(desired_taints(node("Unknown"), NOW)) == {
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/unreachable", "NoSchedule")}
    assert keys(desired_taints(node("False"), NOW)) == {
        ("node.kubernetes.io/not-ready", "NoExecute"),
        ("node.kubernetes.io/not-ready", "NoSchedule")}
    noexec = [t for t in desired_taints(node("False"), NOW) if t["effect"] == "NoExecute"]
    assert noexec[0]["timeAdded"] == NOW
    assert desired_taints(node("True"), NOW) == []


def test_pressure_conditions_and_unschedulable_add_no_schedule_taints() -> None:
    n = node("True", MemoryPressure="True", DiskPressure="False", PIDPressure="True",
             NetworkUnavailable="True")
    n["spec"]["unschedulable"] = True
    assert keys(desired_taints(n, NOW)) == {
        ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        ("node.kubernetes.io/pid-pressure", "NoSchedule"),
        ("node.kubernetes.io/network-unavailable", "NoSchedule"),
        ("node.kubernetes.io/unschedulable", "NoSchedule")}


def test_recovery_removes_only_managed_taints_and_keeps_time_added() -> None:
    own = {"key": "example.com/gpu", "value": "x", "effect": "NoSchedule"}
    old = {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute",
           "timeAdded": "2029-01-01T00:00:00Z"}
    stale = {"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule"}
    assert desired_taints(node("True", taints=[own, old, stale]), NOW) == [own]
    again = desired_taints(node("Unknown", taints=[own, old]), NOW)
    assert old in again and own in again  # timeAdded not reset


def test_toleration_matching() -> None:
    taint = {"key": "k", "value": "v", "effect": "NoExecute"}
    assert tolerates({"key": "k", "operator": "Exists"}, taint)
    assert tolerates({"key": "k", "value": "v"}, taint)  # Equal is the default
    assert not tolerates({"key": "k", "value": "w"}, taint)
    assert not tolerates({"key": "k", "operator": "Exists", "effect": "NoSchedule"}, taint)
    assert tolerates({"operator": "Exists"}, taint)  # empty key: everything
    assert not tolerates({"key": "other", "operator": "Exists"}, taint)


def pod(*tolerations: Obj) -> Obj:
    return {"spec": {"tolerations": list(tolerations)}}


UNREACHABLE = {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute", "timeAdded": NOW}


def test_eviction_time() -> None:
    # Not tolerated: at once.
    assert eviction_time(pod(), [UNREACHABLE], {}) == 0.0
    # Tolerated for a while: from when the taint was added.
    tol = {"key": "node.kubernetes.io/unreachable", "operator": "Exists",
           "effect": "NoExecute", "tolerationSeconds": 300}
    assert eviction_time(pod(tol), [UNREACHABLE], {}) == T0 + 300
    # Tolerated without a limit: never.
    forever = {"operator": "Exists"}
    assert eviction_time(pod(forever), [UNREACHABLE], {}) is None
    assert eviction_time(pod(tol, forever), [UNREACHABLE], {}) is None
    # The shortest of several taints wins; one untolerated taint wins outright.
    other = {"key": "b", "effect": "NoExecute", "timeAdded": NOW}
    short = {"key": "b", "operator": "Exists", "tolerationSeconds": 5}
    assert eviction_time(pod(tol, short), [UNREACHABLE, other], {}) == T0 + 5
    assert eviction_time(pod(tol), [UNREACHABLE, other], {}) == 0.0
    # A taint without timeAdded counts from when the controller first saw it.
    bare = {"key": "b", "effect": "NoExecute"}
    assert eviction_time(pod(short), [bare], {"b": 100.0}) == 105.0
    assert eviction_time(pod(), [], {}) is None
