"""The scheduler process (in `pinnace server`) binds pending pods to nodes.

The nodes here are Node objects without a kubelet: pods bound to them stay
Pending, and a deleted one stays Terminating until force-deleted. They have
no heartbeat either, so each test finishes well inside the node monitor's
grace period (40 s), after which they would be tainted unreachable.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import Server, wait_for


def _node(name: str, group: str, cpu: str = "4") -> str:
    return json.dumps({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "group": group}},
        "status": {"capacity": {"cpu": cpu, "memory": "8Gi", "pods": "110"},
                   "allocatable": {"cpu": cpu, "memory": "8Gi", "pods": "110"},
                   "conditions": [{"type": "Ready", "status": "True"}]}})


class Scratch:
    """Cluster-scoped objects a test makes, removed when it ends."""

    def __init__(self, cluster: Server, ns: str) -> None:
        self.k, self.ns = cluster.kubectl, ns
        self.group = f"g{os.getpid()}-{ns[-4:]}"
        self.made: list[tuple[str, str]] = []

    def node(self, name: str, cpu: str = "4") -> str:
        full = f"{self.group}-{name}"
        self.k("create", "-f", "-", input=_node(full, self.group, cpu))
        self.made.append(("node", full))
        return full

    def priority_class(self, name: str, value: int) -> str:
        full = f"{self.group}-{name}"
        self.k("create", "-f", "-", input=json.dumps({
            "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
            "metadata": {"name": full}, "value": value}))
        self.made.append(("priorityclass", full))
        return full

    def create(self, obj: dict[str, Any]) -> None:
        self.k("-n", self.ns, "create", "-f", "-", input=json.dumps(obj))

    def get(self, kind: str, name: str) -> dict[str, Any]:
        return json.loads(self.k("-n", self.ns, "get", kind, name, "-o", "json").stdout)  # type: ignore[no-any-return]

    def cleanup(self) -> None:
        self.k("delete", "namespace", self.ns, "--wait=false", check=False)
        for kind, name in reversed(self.made):
            self.k("delete", kind, name, "--wait=false", check=False)


@pytest.fixture
def scratch(cluster: Server, cluster_ns: str) -> Iterator[Scratch]:
    s = Scratch(cluster, cluster_ns)
    yield s
    s.cleanup()


def _pod(name: str, cpu: str, *, selector: dict[str, str], labels: dict[str, str] | None = None,
         priority: tuple[str, int] | None = None, **spec: Any) -> dict[str, Any]:
    s: dict[str, Any] = {"nodeSelector": selector,
                         "containers": [{"name": "c", "image": "nginx",
                                         "resources": {"requests": {"cpu": cpu}}}], **spec}
    if priority:
        # The class's value stated as well: the Priority admission plugin accepts it when it agrees.
        s["priorityClassName"], s["priority"] = priority
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": labels or {}}, "spec": s}


def _condition(pod: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in (pod.get("status") or {}).get("conditions") or []
                 if c.get("type") == type_), None)


def test_pods_are_bound_and_unschedulable_pods_explained(scratch: Scratch) -> None:
    k, ns, group = scratch.k, scratch.ns, scratch.group
    for i in range(2):
        scratch.node(f"n{i}")
    rc = {"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "web"},
          "spec": {"replicas": 4, "selector": {"app": "web"},
                   "template": {"metadata": {"labels": {"app": "web"}},
                                "spec": {"nodeSelector": {"group": group},
                                         "containers": [{"name": "c", "image": "nginx",
                                                         "resources": {"requests": {
                                                             "cpu": "500m"}}}]}}}}
    scratch.create(rc)

    def bound() -> list[str]:
        pods = json.loads(k("-n", ns, "get", "pods", "-o", "json").stdout)["items"]
        nodes = [p["spec"].get("nodeName") for p in pods]
        return nodes if len(nodes) == 4 and all(nodes) else []

    nodes = wait_for(bound, what="4 pods bound")
    assert set(nodes) == {f"{group}-n0", f"{group}-n1"}  # spread by LeastAllocated
    # Events follow the bindings (sent after them, as kube-scheduler's broadcaster does).
    wait_for(lambda: "Successfully assigned" in k(
        "-n", ns, "get", "events", "--field-selector", "reason=Scheduled").stdout,
        what="Scheduled events")
    scratch.create(_pod("huge", "64", selector={"group": group}))
    msg = wait_for(lambda: (_condition(scratch.get("pod", "huge"), "PodScheduled") or {}).get("message"),
                   what="PodScheduled=False")
    assert "Insufficient cpu" in msg and msg.startswith("0/")
    described = k("-n", ns, "describe", "pod", "huge").stdout
    assert "FailedScheduling" in described


def test_preemption_spares_pdb_pods_marks_victims_and_nominates(scratch: Scratch) -> None:
    k, ns, group = scratch.k, scratch.ns, scratch.group
    n0, n1 = scratch.node("n0", cpu="2"), scratch.node("n1", cpu="2")
    low = (scratch.priority_class("low", 10), 10)
    mid = (scratch.priority_class("mid", 20), 20)
    high = (scratch.priority_class("high", 1000), 1000)
    # On priority alone "protected" (10) is the better victim; its PDB allows no disruption.
    scratch.create(_pod("protected", "1500m", selector={"kubernetes.io/hostname": n0},
                        labels={"app": "db"}, priority=low))
    scratch.create(_pod("spare", "1500m", selector={"kubernetes.io/hostname": n1},
                        labels={"app": "batch"}, priority=mid))
    wait_for(lambda: all(scratch.get("pod", p)["spec"].get("nodeName") for p in ("protected", "spare")),
             what="victims bound")
    scratch.create({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                    "metadata": {"name": "db"},
                    "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "db"}}}})
    # The disruption controller counts the budget: its one pod must stay.
    wait_for(lambda: (st := scratch.get("pdb", "db").get("status") or {}).get(
        "observedGeneration") == 1 and st.get("expectedPods") == 1 and
        st.get("disruptionsAllowed") == 0, what="PDB counted")
    scratch.create(_pod("urgent", "1500m", selector={"group": group}, priority=high))

    urgent = wait_for(lambda: (p := scratch.get("pod", "urgent"))["status"].get("nominatedNodeName")
                      and p, what="urgent nominated")
    assert urgent["status"]["nominatedNodeName"] == n1 and not urgent["spec"].get("nodeName")
    wide = k("-n", ns, "get", "pod", "urgent", "-o", "wide").stdout.splitlines()
    cols = wide[0].split()
    assert wide[1].split()[cols.index("NOMINATED")] == n1  # the NOMINATED NODE column
    spare = scratch.get("pod", "spare")
    assert spare["metadata"].get("deletionTimestamp")
    target = _condition(spare, "DisruptionTarget")
    assert target is not None and target["status"] == "True" and \
        target["reason"] == "PreemptionByScheduler" and \
        target["message"] == "default-scheduler: preempting to accommodate a higher priority pod"
    assert not scratch.get("pod", "protected")["metadata"].get("deletionTimestamp")
    events = json.loads(k("-n", ns, "get", "events", "--field-selector",
                          "reason=Preempted,involvedObject.name=spare", "-o", "json").stdout)["items"]
    assert [e["message"] for e in events] == [f"Preempted by pod {urgent['metadata']['uid']} on node {n1}"]

    # While the victim terminates, a pod that cannot preempt waits as well.
    scratch.create(_pod("intruder", "1500m", selector={"group": group}, priority=low))
    wait_for(lambda: _condition(scratch.get("pod", "intruder"), "PodScheduled"), what="intruder tried")
    # No kubelet to finish the victim off: do it by hand; the room is urgent's.
    k("-n", ns, "delete", "pod", "spare", "--grace-period=0", "--force")
    bound = wait_for(lambda: (p := scratch.get("pod", "urgent"))["spec"].get("nodeName") and p,
                     what="urgent bound")
    assert bound["spec"]["nodeName"] == n1
    wait_for(lambda: not scratch.get("pod", "urgent")["status"].get("nominatedNodeName"),
             what="nomination cleared once bound")
    intruder = scratch.get("pod", "intruder")
    assert not intruder["spec"].get("nodeName")
    assert (_condition(intruder, "PodScheduled") or {}).get("status") == "False"


def test_gated_pod_waits_until_its_gates_are_removed(scratch: Scratch) -> None:
    k, ns, group = scratch.k, scratch.ns, scratch.group
    node = scratch.node("n0")
    gates = [{"name": "example.com/quota"}, {"name": "example.com/arch"}]
    scratch.create(_pod("gated", "100m", selector={"group": group}, schedulingGates=gates))
    cond = wait_for(lambda: (c := _condition(scratch.get("pod", "gated"), "PodScheduled"))
                    and c.get("reason") == "SchedulingGated" and c, what="SchedulingGated condition")
    assert cond["status"] == "False" and \
        cond["message"] == "Scheduling is blocked due to non-empty scheduling gates"
    row = k("-n", ns, "get", "pod", "gated", "--no-headers").stdout.split()
    assert row[2] == "SchedulingGated"

    def still_gated_after(later: str) -> None:
        # A pod created after it is scheduled: the scheduler has looked at everything before.
        scratch.create(_pod(later, "100m", selector={"group": group}))
        wait_for(lambda: scratch.get("pod", later)["spec"].get("nodeName"), what=f"{later} bound")
        assert not scratch.get("pod", "gated")["spec"].get("nodeName")

    still_gated_after("first")
    # Gates may only be removed, never added.
    added = k("-n", ns, "patch", "pod", "gated", "--type=json", "-p", json.dumps(
        [{"op": "add", "path": "/spec/schedulingGates/-", "value": {"name": "example.com/more"}}]),
        check=False)
    assert added.returncode != 0 and 'The Pod "gated" is invalid' in added.stderr
    k("-n", ns, "patch", "pod", "gated", "--type=json", "-p",
      json.dumps([{"op": "remove", "path": "/spec/schedulingGates/0"}]))
    still_gated_after("second")
    failed = k("-n", ns, "get", "events", "--field-selector",
               "reason=FailedScheduling,involvedObject.name=gated", "--no-headers").stdout
    assert failed.strip() == ""
    k("-n", ns, "patch", "pod", "gated", "--type=json", "-p",
      json.dumps([{"op": "remove", "path": "/spec/schedulingGates"}]))
    pod = wait_for(lambda: (p := scratch.get("pod", "gated"))["spec"].get("nodeName") and p,
                   what="gated pod bound")
    assert pod["spec"]["nodeName"] == node
    assert (_condition(pod, "PodScheduled") or {}).get("status") == "True"
