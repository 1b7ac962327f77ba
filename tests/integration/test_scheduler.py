"""The scheduler process (in `pinnace server`) binds pending pods to nodes."""

from __future__ import annotations

import json
import os

from tests.conftest import Server, wait_for


def _node(name: str, group: str, cpu: str = "4") -> str:
    return json.dumps({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "group": group}},
        "status": {"capacity": {"cpu": cpu, "memory": "8Gi", "pods": "110"},
                   "allocatable": {"cpu": cpu, "memory": "8Gi", "pods": "110"},
                   "conditions": [{"type": "Ready", "status": "True"}]}})


def test_pods_are_bound_and_unschedulable_pods_explained(cluster: Server, cluster_ns: str) -> None:
    k, ns = cluster.kubectl, cluster_ns
    group = f"g{os.getpid()}-{ns[-4:]}"
    for i in range(2):
        k("create", "-f", "-", input=_node(f"{group}-n{i}", group))
    rc = {"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "web"},
          "spec": {"replicas": 4, "selector": {"app": "web"},
                   "template": {"metadata": {"labels": {"app": "web"}},
                                "spec": {"nodeSelector": {"group": group},
                                         "containers": [{"name": "c", "image": "nginx",
                                                         "resources": {"requests": {
                                                             "cpu": "500m"}}}]}}}}
    k("-n", ns, "create", "-f", "-", input=json.dumps(rc))

    def bound() -> list[str]:
        pods = json.loads(k("-n", ns, "get", "pods", "-o", "json").stdout)["items"]
        nodes = [p["spec"].get("nodeName") for p in pods]
        return nodes if len(nodes) == 4 and all(nodes) else []

    nodes = wait_for(bound, what="4 pods bound")
    assert set(nodes) == {f"{group}-n0", f"{group}-n1"}  # spread by LeastAllocated
    events = k("-n", ns, "get", "events", "--field-selector", "reason=Scheduled").stdout
    assert "Successfully assigned" in events
    big = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "huge"},
           "spec": {"nodeSelector": {"group": group},
                    "containers": [{"name": "c", "image": "nginx",
                                    "resources": {"requests": {"cpu": "64"}}}]}}
    k("-n", ns, "create", "-f", "-", input=json.dumps(big))
    msg = wait_for(lambda: next((c.get("message") for c in json.loads(
        k("-n", ns, "get", "pod", "huge", "-o", "json").stdout).get("status", {}).get(
        "conditions", []) if c["type"] == "PodScheduled" and c["status"] == "False"), None),
        what="PodScheduled=False")
    assert "Insufficient cpu" in msg and msg.startswith("0/")
    described = k("-n", ns, "describe", "pod", "huge").stdout
    assert "FailedScheduling" in described
