"""ResourceQuota status against a real API server, read back through kubectl."""

from __future__ import annotations

import json
from typing import Any

from pinnace.controllers.resourcequota import ResourceQuotaController
from tests.conftest import Server
from tests.integration.controllers.nodes_harness import (
    eventually,
    kubectl,
    own_server,
    run_controllers,
)

__all__ = ["own_server"]

Obj = dict[str, Any]

HARD = {"pods": "4", "requests.cpu": "2", "requests.memory": "1Gi", "limits.cpu": "4",
        "limits.memory": "2Gi", "services": "3", "services.nodeports": "2",
        "services.loadbalancers": "1", "configmaps": "5", "count/deployments.apps": "2",
        "persistentvolumeclaims": "2", "requests.storage": "10Gi"}


def _pod(name: str, cpu: str | None = None, mem: str | None = None) -> str:
    res: Obj = {}
    if cpu:
        res = {"requests": {"cpu": cpu, "memory": mem}, "limits": {"cpu": cpu, "memory": mem}}
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                       "spec": {"containers": [{"name": "c", "image": "busybox",
                                                "resources": res}]}})


async def _used(server: Server, ns: str, name: str) -> dict[str, str]:
    q = json.loads(await kubectl(server, "-n", ns, "get", "quota", name, "-o", "json"))
    return dict((q.get("status") or {}).get("used") or {})


async def _used_is(server: Server, ns: str, name: str, want: dict[str, str]) -> bool:
    used = await _used(server, ns, name)
    return all(used.get(k) == v for k, v in want.items())


async def _wait_used(server: Server, ns: str, name: str, want: dict[str, str],
                     what: str) -> None:
    try:
        await eventually(lambda: _used_is(server, ns, name, want), what=what)
    except AssertionError:
        used = await _used(server, ns, name)
        assert {k: used.get(k) for k in want} == want, what


async def test_quota_status_counts_objects_and_compute(own_server: Server) -> None:
    k, ns = own_server, "quota-a"
    async with run_controllers(k, ResourceQuotaController,
                               options={"resource_quota_sync_period": 2}):
        await kubectl(k, "create", "namespace", ns)
        # Made before the quota: once it limits requests.cpu, admission wants
        # every pod to state it (test_quota_admission.py).
        await kubectl(k, "-n", ns, "create", "-f", "-", input=_pod("idle"))
        await kubectl(k, "-n", ns, "create", "-f", "-", input=json.dumps({
            "apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "compute"},
            "spec": {"hard": HARD}}))
        await kubectl(k, "-n", ns, "create", "-f", "-", input=json.dumps({
            "apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "besteffort"},
            "spec": {"hard": {"pods": "10"}, "scopes": ["BestEffort"]}}))
        zero = {"pods": "1", "requests.cpu": "0", "services": "0", "configmaps": "0",
                "count/deployments.apps": "0", "requests.storage": "0"}
        await _wait_used(k, ns, "compute", zero, "empty usage")
        q = json.loads(await kubectl(k, "-n", ns, "get", "quota", "compute", "-o", "json"))
        assert q["status"]["hard"] == HARD

        await kubectl(k, "-n", ns, "create", "-f", "-", input=_pod("a", "100m", "64Mi"))
        await kubectl(k, "-n", ns, "create", "-f", "-", input=_pod("b", "200m", "128Mi"))
        await kubectl(k, "-n", ns, "create", "service", "nodeport", "np", "--tcp=80:8080")
        await kubectl(k, "-n", ns, "create", "service", "loadbalancer", "lb", "--tcp=80:8080")
        await kubectl(k, "-n", ns, "create", "configmap", "cfg", "--from-literal=a=b")
        await kubectl(k, "-n", ns, "create", "deployment", "web", "--image=busybox")
        await kubectl(k, "-n", ns, "create", "-f", "-", input=json.dumps({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
            "spec": {"accessModes": ["ReadWriteOnce"],
                     "resources": {"requests": {"storage": "1Gi"}}}}))
        want = {"pods": "3", "requests.cpu": "300m", "requests.memory": "192Mi",
                "limits.cpu": "300m", "limits.memory": "192Mi", "services": "2",
                "services.nodeports": "2", "services.loadbalancers": "1", "configmaps": "1",
                "count/deployments.apps": "1", "persistentvolumeclaims": "1",
                "requests.storage": "1Gi"}
        await _wait_used(k, ns, "compute", want, "usage")
        await _wait_used(k, ns, "besteffort", {"pods": "1"}, "best-effort pods only")
        desc = await kubectl(k, "-n", ns, "describe", "quota", "compute")
        assert "Used" in desc and "Hard" in desc
        assert any(line.split() == ["requests.cpu", "300m", "2"] for line in desc.splitlines())

        # A finished pod no longer counts.
        await kubectl(k, "-n", ns, "patch", "pod", "b", "--subresource=status", "--type=merge",
                      "-p", '{"status":{"phase":"Succeeded"}}')
        await _wait_used(k, ns, "compute", {
            "pods": "2", "requests.cpu": "100m", "requests.memory": "64Mi"}, "b done")
        # Changing the hard limits is mirrored into status.hard.
        await kubectl(k, "-n", ns, "patch", "quota", "compute", "--type=merge",
                      "-p", '{"spec":{"hard":{"pods":"9"}}}')
        await eventually(lambda: _hard_pods(k, ns), what="status.hard updated")


async def _hard_pods(server: Server, ns: str) -> bool:
    q = json.loads(await kubectl(server, "-n", ns, "get", "quota", "compute", "-o", "json"))
    return bool(q["status"]["hard"].get("pods") == "9")
