"""The disruption controller against a real API server: PodDisruptionBudget
status from the pods' controllers (Deployment, StatefulSet, RC, a custom
resource's scale subresource), unmanaged pods, sync failures, expiring
disruptedPods, stale DisruptionTarget conditions, and `kubectl drain` held
back by a budget. Workload controllers and a fake kubelet run alongside."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from pinnace.controllers.deployment import DeploymentController
from pinnace.controllers.disruption import DisruptionController
from pinnace.controllers.replicaset import ReplicaSetController
from pinnace.controllers.statefulset import StatefulSetController
from tests.conftest import Server, wait_for
from tests.integration.controllers.batch_harness import Controllers
from tests.integration.controllers.workloads_harness import FakeKubelet

DELETION_TIMEOUT = 4  # seconds an entry of disruptedPods is waited for (upstream: 2 min)
STALE_TIMEOUT = 2  # seconds before a DisruptionTarget on a live pod is reset (upstream: 2 min)


@pytest.fixture(scope="module")
def controllers(server: Server) -> Iterator[Controllers]:
    with Controllers(server, [ReplicaSetController, DeploymentController, StatefulSetController,
                              DisruptionController],
                     options={"pdb_deletion_timeout_seconds": DELETION_TIMEOUT,
                              "pdb_stale_disruption_seconds": STALE_TIMEOUT}) as h:
        async def kubelet() -> None:
            assert h.client is not None and h.informers is not None
            h.fake = FakeKubelet(h.client, h.informers)  # type: ignore[attr-defined]
        h.run(kubelet())
        yield h


@pytest.fixture
def ns(server: Server, namespace: str, controllers: Controllers) -> Iterator[str]:
    yield namespace
    server.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def get(server: Server, ns: str, *what: str) -> Any:
    return json.loads(server.kubectl("-n", ns, "get", *what, "-o", "json").stdout)


def create(server: Server, ns: str, obj: dict[str, Any]) -> None:
    server.kubectl("-n", ns, "create", "-f", "-", input=json.dumps(obj))


def budget(name: str, app: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": name},
            "spec": {"selector": {"matchLabels": {"app": app}}, **spec}}


def template(app: str) -> dict[str, Any]:
    return {"metadata": {"labels": {"app": app}},
            "spec": {"containers": [{"name": "c", "image": "nginx:1"}]}}


def bare_pod(name: str, app: str, owner: dict[str, Any] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": {"app": app}}
    if owner is not None:
        meta["ownerReferences"] = [{"apiVersion": owner["apiVersion"], "kind": owner["kind"],
                                    "name": owner["metadata"]["name"],
                                    "uid": owner["metadata"]["uid"], "controller": True}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": {"containers": [{"name": "c", "image": "nginx:1"}]}}


def make_ready(server: Server, ns: str, name: str) -> None:
    """What a kubelet reports for a running pod (the fake kubelet only runs workload pods)."""
    status = {"status": {"phase": "Running", "conditions": [
        {"type": "Ready", "status": "True", "lastTransitionTime": "2024-01-01T00:00:00Z"}]}}
    server.kubectl("-n", ns, "patch", "pod", name, "--subresource=status", "--type=merge",
                   "-p", json.dumps(status))


def counted(server: Server, ns: str, name: str, expected: int, healthy: int) -> dict[str, Any]:
    """The budget once the controller has counted ``expected`` pods, ``healthy`` of them ready."""
    def check() -> dict[str, Any] | None:
        pdb = get(server, ns, "pdb", name)
        st = pdb.get("status") or {}
        if st.get("observedGeneration") == pdb["metadata"]["generation"] and \
                st.get("expectedPods") == expected and st.get("currentHealthy") == healthy:
            return pdb  # type: ignore[no-any-return]
        return None
    return wait_for(check, what=f"{name} counted {healthy}/{expected}")  # type: ignore[no-any-return]


def allowed_condition(pdb: dict[str, Any]) -> tuple[str, str, str]:
    c = next(c for c in pdb["status"]["conditions"] if c["type"] == "DisruptionAllowed")
    return c["status"], c["reason"], c["message"]


def test_budgets_of_a_deployment(server: Server, ns: str) -> None:
    create(server, ns, {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                                 "template": template("web")}})
    for name, spec in (("min-int", {"minAvailable": 2}), ("min-pct", {"minAvailable": "50%"}),
                       ("max-pct", {"maxUnavailable": "34%"}), ("max-0", {"maxUnavailable": 0})):
        create(server, ns, budget(name, "web", **spec))
    want = {"min-int": (2, 1), "min-pct": (2, 1), "max-pct": (1, 2), "max-0": (3, 0)}
    for name, (desired, allowed) in want.items():
        pdb = counted(server, ns, name, expected=3, healthy=3)
        st = pdb["status"]
        assert (st["desiredHealthy"], st["disruptionsAllowed"]) == (desired, allowed), name
        assert allowed_condition(pdb) == (("True", "SufficientPods", "") if allowed else
                                          ("False", "InsufficientPods", ""))
    rows = {r.split()[0]: r.split()[1:4] for r in
            server.kubectl("-n", ns, "get", "pdb", "--no-headers").stdout.splitlines()}
    assert rows == {"min-int": ["2", "N/A", "1"], "min-pct": ["50%", "N/A", "1"],
                    "max-pct": ["N/A", "34%", "2"], "max-0": ["N/A", "0", "0"]}
    # The official client reads the status (its conditions hold every required field).
    from kubernetes import client

    read = client.PolicyV1Api(server.api_client()).read_namespaced_pod_disruption_budget(
        "max-pct", ns)
    assert read.status.disruptions_allowed == 2 and read.status.conditions[0].reason == \
        "SufficientPods"

    # Scaled up, the percentages follow the Deployment's replicas.
    server.kubectl("-n", ns, "scale", "deployment", "web", "--replicas=4")
    assert counted(server, ns, "max-pct", expected=4, healthy=4)["status"]["desiredHealthy"] == 2
    # A spec change is counted again (observedGeneration follows the generation).
    server.kubectl("-n", ns, "patch", "pdb", "min-int", "--type=merge", "-p",
                   '{"spec": {"minAvailable": 4}}')
    pdb = counted(server, ns, "min-int", expected=4, healthy=4)
    assert pdb["metadata"]["generation"] == 2 and pdb["status"]["disruptionsAllowed"] == 0


def test_statefulset_rc_and_scale_subresource(server: Server, ns: str) -> None:
    create(server, ns, {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
                        "spec": {"replicas": 2, "serviceName": "db",
                                 "selector": {"matchLabels": {"app": "db"}},
                                 "template": template("db")}})
    create(server, ns, budget("db", "db", maxUnavailable=1))
    assert counted(server, ns, "db", expected=2, healthy=2)["status"]["disruptionsAllowed"] == 1

    create(server, ns, {"apiVersion": "v1", "kind": "ReplicationController",
                        "metadata": {"name": "legacy"},
                        "spec": {"replicas": 2, "selector": {"app": "legacy"},
                                 "template": template("legacy")}})
    rc = get(server, ns, "rc", "legacy")
    for i in range(2):  # no RC controller here: its pods are made by hand
        create(server, ns, bare_pod(f"legacy-{i}", "legacy", owner=rc))
        make_ready(server, ns, f"legacy-{i}")
    create(server, ns, budget("legacy", "legacy", minAvailable="50%"))
    assert counted(server, ns, "legacy", expected=2, healthy=2)["status"]["desiredHealthy"] == 1

    # Any kind with a scale subresource: its spec.replicas is what counts.
    group = f"g{ns[-10:].replace('-', '')}.example.com"
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": f"widgets.{group}"},
           "spec": {"group": group, "scope": "Namespaced",
                    "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                    "versions": [{"name": "v1", "served": True, "storage": True,
                                  "subresources": {"scale": {
                                      "specReplicasPath": ".spec.replicas",
                                      "statusReplicasPath": ".status.replicas"}},
                                  "schema": {"openAPIV3Schema": {
                                      "type": "object",
                                      "x-kubernetes-preserve-unknown-fields": True}}}]}}
    server.kubectl("create", "-f", "-", input=json.dumps(crd))
    try:
        wait_for(lambda: server.kubectl("-n", ns, "get", f"widgets.{group}",
                                        check=False).returncode == 0, what="CRD served")
        create(server, ns, {"apiVersion": f"{group}/v1", "kind": "Widget",
                            "metadata": {"name": "w"}, "spec": {"replicas": 4}})
        widget = get(server, ns, f"widgets.{group}", "w")
        for i in range(2):
            create(server, ns, bare_pod(f"w-{i}", "widget", owner=widget))
            make_ready(server, ns, f"w-{i}")
        create(server, ns, budget("widget", "widget", maxUnavailable=1))
        pdb = counted(server, ns, "widget", expected=4, healthy=2)
        assert (pdb["status"]["desiredHealthy"], pdb["status"]["disruptionsAllowed"]) == (3, 0)
    finally:
        server.kubectl("delete", "crd", f"widgets.{group}", "--wait=false", check=False)


def test_unmanaged_pods_and_failed_syncs(server: Server, ns: str) -> None:
    for i in range(2):
        create(server, ns, bare_pod(f"loose-{i}", "loose"))
        make_ready(server, ns, f"loose-{i}")
    # An integer minAvailable needs no controller; a percentage cannot count bare pods.
    create(server, ns, budget("loose-int", "loose", minAvailable=1))
    assert counted(server, ns, "loose-int", expected=2, healthy=2)["status"][
        "disruptionsAllowed"] == 1
    create(server, ns, budget("loose-pct", "loose", minAvailable="50%"))
    pdb = counted(server, ns, "loose-pct", expected=0, healthy=2)
    assert pdb["status"]["disruptionsAllowed"] == 0  # nothing is expected: nothing may go
    events = wait_for(lambda: [e for e in get(server, ns, "events")["items"]
                               if e["reason"] == "UnmanagedPods"], what="UnmanagedPods event")
    assert events[0]["involvedObject"]["name"] == "loose-pct" and events[0]["message"] == (
        "Pods selected by this PodDisruptionBudget (selector: &LabelSelector{MatchLabels:"
        "map[string]string{app: loose,},MatchExpressions:[]LabelSelectorRequirement{},}) were "
        "found to be unmanaged. As a result, the status of the PDB cannot be calculated "
        "correctly, which may result in undefined behavior. To account for these pods please "
        "set \".spec.minAvailable\" field of the PDB to an integer value.")

    # A controller the budget cannot scale fails the sync, which allows nothing.
    create(server, ns, budget("odd", "odd", maxUnavailable=1))
    counted(server, ns, "odd", expected=0, healthy=0)
    create(server, ns, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owner"}})
    create(server, ns, bare_pod("odd", "odd", owner=get(server, ns, "configmap", "owner")))
    make_ready(server, ns, "odd")
    pdb = wait_for(lambda: (p := get(server, ns, "pdb", "odd"))["status"]["conditions"][0][
        "reason"] == "SyncFailed" and p, what="odd budget failed")
    assert allowed_condition(pdb) == ("False", "SyncFailed",
                                      "configmaps does not implement the scale subresource")
    assert pdb["status"]["disruptionsAllowed"] == 0
    create(server, ns, bare_pod("orphan", "orphan", owner={
        "apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "gone", "uid": "u-1"}}))
    create(server, ns, budget("orphan", "orphan", minAvailable="10%"))
    pdb = wait_for(lambda: (p := get(server, ns, "pdb", "orphan")).get("status", {}).get(
        "conditions") and p, what="orphan budget synced")
    assert allowed_condition(pdb) == ("False", "SyncFailed", 'found no controllers for pod "orphan"')
    # Never counted: its generation is not observed yet.
    assert pdb["status"].get("observedGeneration") is None
    # The eviction subresource says why, since the healthy counts cannot be trusted.
    code, st = server.http().call("POST", f"/api/v1/namespaces/{ns}/pods/odd/eviction", {
        "apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "odd"}})
    assert code == 429 and st["details"]["causes"][0]["message"] == (
        "The disruption budget odd does not allow evicting pods currently because it failed "
        "sync: configmaps does not implement the scale subresource")


def test_disrupted_pods_expire_and_stale_conditions_reset(server: Server, ns: str) -> None:
    create(server, ns, {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "rs"},
                        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "rs"}},
                                 "template": template("rs")}})
    create(server, ns, budget("rs", "rs", minAvailable=1))
    counted(server, ns, "rs", expected=2, healthy=2)
    victim = sorted(p["metadata"]["name"] for p in get(server, ns, "pods", "-l", "app=rs")["items"])[0]
    # An eviction that was let through but whose pod was never deleted.
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    server.kubectl("-n", ns, "patch", "pdb", "rs", "--subresource=status", "--type=merge", "-p",
                   json.dumps({"status": {"disruptedPods": {victim: now}}}))
    events = wait_for(lambda: [e for e in get(server, ns, "events")["items"]
                               if e["reason"] == "NotDeleted"], timeout=DELETION_TIMEOUT + 20,
                      what="NotDeleted event")
    assert events[0]["involvedObject"]["name"] == victim and events[0]["message"] == \
        f"Pod was expected by PDB {ns}/{ns} to be deleted but it wasn't"
    pdb = counted(server, ns, "rs", expected=2, healthy=2)
    assert "disruptedPods" not in pdb["status"] and pdb["status"]["disruptionsAllowed"] == 1

    # A DisruptionTarget on a pod nobody deleted is set back to False.
    cond = {"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI",
            "message": "Eviction API: evicting", "lastTransitionTime": now}
    pod = get(server, ns, "pod", victim)
    server.kubectl("-n", ns, "patch", "pod", victim, "--subresource=status", "--type=merge",
                   "-p", json.dumps({"status": {"conditions":
                                                pod["status"]["conditions"] + [cond]}}))
    reset = wait_for(lambda: next((c for c in get(server, ns, "pod", victim)["status"]["conditions"]
                                   if c["type"] == "DisruptionTarget"
                                   and c["status"] == "False"), None),
                     timeout=STALE_TIMEOUT + 20, what="DisruptionTarget reset")
    assert "reason" not in reset and "message" not in reset


def test_drain_waits_for_the_budget(server: Server, ns: str) -> None:
    node = f"drain-{ns[-12:]}"
    server.kubectl("create", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Node", "metadata": {"name": node},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]}}))
    try:
        create(server, ns, {"apiVersion": "apps/v1", "kind": "Deployment",
                            "metadata": {"name": "api"},
                            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "api"}},
                                     "template": template("api")}})
        create(server, ns, budget("api", "api", minAvailable=2))
        counted(server, ns, "api", expected=3, healthy=3)
        http = server.http()
        # No scheduler here: the pods are bound to the node by hand.
        for p in get(server, ns, "pods", "-l", "app=api")["items"]:
            name = p["metadata"]["name"]
            assert http.call("POST", f"/api/v1/namespaces/{ns}/pods/{name}/binding", {
                "apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
                "target": {"kind": "Node", "name": node}})[0] == 201
        out = server.kubectl("drain", node, "--ignore-daemonsets", "--timeout=90s", timeout=120)
        text = out.stdout + out.stderr
        # Three pods, one disruption at a time: drain was refused and retried.
        assert "Cannot evict pod as it would violate the pod's disruption budget." in text
        assert f"node/{node} drained" in text
        assert not [p for p in get(server, ns, "pods", "-l", "app=api")["items"]
                    if p["spec"].get("nodeName") == node]
        counted(server, ns, "api", expected=3, healthy=3)
    finally:
        server.kubectl("delete", "node", node, "--wait=false", check=False)
