"""DaemonSets through real kubectl: one pod per eligible node (selectors,
affinity, taints), pods pinned by node affinity with the upstream daemon
tolerations, rolling updates, OnDelete, rollout status/history/undo, failed
pods replaced under a backoff, and the status counts upstream reports."""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterator
from typing import Any

import pytest

from pinnace.controllers.daemonset import DaemonSetController, node_should_run
from tests.conftest import Server, wait_for
from tests.integration.controllers.workloads_harness import (
    HOLD_LABEL,
    Harness,
    ready_status,
    running,
)

_seq = itertools.count()


@pytest.fixture(scope="module")
def controllers(server: Server) -> Iterator[Harness]:
    with running(str(server.kubeconfig), [DaemonSetController]) as h:
        yield h


@pytest.fixture
def pool(server: Server) -> Iterator[str]:
    """A node-pool label value private to this test; its nodes are removed afterwards."""
    name = f"ds{os.getpid() % 10000}-{next(_seq)}"
    yield name
    server.kubectl("delete", "nodes", "-l", f"test-pool={name}", "--wait=false",
                   check=False)


def add_node(server: Server, name: str, labels: dict[str, str],
             taints: list[dict[str, str]] | None = None) -> None:
    body = {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"test-pool": name.rsplit("-", 1)[0],
                                                   **labels}},
            "spec": {"taints": taints or []}}
    server.kubectl("create", "-f", "-", input=json.dumps(body))
    status = {"status": {"conditions": [{"type": "Ready", "status": "True",
                                         "reason": "KubeletReady",
                                         "lastHeartbeatTime": "2024-01-01T00:00:00Z",
                                         "lastTransitionTime": "2024-01-01T00:00:00Z"}]}}
    server.kubectl("patch", "node", name, "--subresource=status", "--type=merge",
                   "-p", json.dumps(status))


def daemonset(name: str, pool: str, **spec: Any) -> str:
    body = {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": name},
            "spec": {"selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"nodeSelector": {"pool": pool},
                                           "containers": [{"name": "c", "image": "agent:1"}]}},
                     **spec}}
    return json.dumps(body)


def get(server: Server, ns: str, *what: str) -> Any:
    return json.loads(server.kubectl("-n", ns, "get", *what, "-o", "json").stdout)


def pods_by_node(server: Server, ns: str, app: str) -> dict[str, dict[str, Any]]:
    out = {}
    for p in get(server, ns, "pods", "-l", f"app={app}")["items"]:
        if p["metadata"].get("deletionTimestamp"):
            continue
        term = p["spec"]["affinity"]["nodeAffinity"][
            "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]
        out[term["matchFields"][0]["values"][0]] = p
    return out


def test_one_pod_per_eligible_node(server: Server, namespace: str, pool: str,
                                   controllers: Harness) -> None:
    k, ns = server.kubectl, namespace
    add_node(server, f"{pool}-a", {"pool": pool})
    add_node(server, f"{pool}-b", {"pool": pool},
             taints=[{"key": "node.kubernetes.io/memory-pressure", "effect": "NoSchedule"}])
    add_node(server, f"{pool}-tainted", {"pool": pool},
             taints=[{"key": "dedicated", "value": "db", "effect": "NoSchedule"}])
    add_node(server, f"{pool}-other", {"pool": "elsewhere"})
    k("-n", ns, "create", "-f", "-", input=daemonset("agent", pool))
    out = k("-n", ns, "rollout", "status", "ds/agent", "--timeout=30s").stdout
    assert 'daemon set "agent" successfully rolled out' in out
    pods = pods_by_node(server, ns, "agent")
    assert sorted(pods) == [f"{pool}-a", f"{pool}-b"]
    pod = pods[f"{pool}-a"]
    match = pod["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert match == [{"matchFields": [{"key": "metadata.name", "operator": "In",
                                       "values": [f"{pool}-a"]}]}]
    tols = {(t["key"], t["effect"]) for t in pod["spec"]["tolerations"]}
    assert tols >= {("node.kubernetes.io/not-ready", "NoExecute"),
                    ("node.kubernetes.io/unreachable", "NoExecute"),
                    ("node.kubernetes.io/disk-pressure", "NoSchedule"),
                    ("node.kubernetes.io/memory-pressure", "NoSchedule"),
                    ("node.kubernetes.io/pid-pressure", "NoSchedule"),
                    ("node.kubernetes.io/unschedulable", "NoSchedule")}
    assert ("node.kubernetes.io/network-unavailable", "NoSchedule") not in tols
    assert all("tolerationSeconds" not in t for t in pod["spec"]["tolerations"])
    ds = get(server, ns, "ds", "agent")
    st = ds["status"]
    assert (st["desiredNumberScheduled"], st["currentNumberScheduled"], st["numberReady"],
            st["numberAvailable"], st["updatedNumberScheduled"],
            st["numberMisscheduled"]) == (2, 2, 2, 2, 2, 0)
    assert st["observedGeneration"] == ds["metadata"]["generation"]
    [rev] = get(server, ns, "controllerrevisions")["items"]
    assert pod["metadata"]["labels"]["controller-revision-hash"] == \
        rev["metadata"]["labels"]["controller-revision-hash"]
    assert rev["metadata"]["name"] == "agent-" + rev["metadata"]["labels"][
        "controller-revision-hash"]
    assert "Created pod: agent-" in k("-n", ns, "describe", "ds", "agent").stdout

    # Nodes coming and going: a newly labelled node gets a pod, an unlabelled one loses it.
    k("label", "node", f"{pool}-other", f"pool={pool}", "--overwrite")
    wait_for(lambda: sorted(pods_by_node(server, ns, "agent")) ==
             [f"{pool}-a", f"{pool}-b", f"{pool}-other"], what="a pod on the relabelled node")
    k("label", "node", f"{pool}-a", "pool=elsewhere", "--overwrite")
    wait_for(lambda: sorted(pods_by_node(server, ns, "agent")) ==
             [f"{pool}-b", f"{pool}-other"], what="the pod removed from the unlabelled node")
    assert "Deleted pod: agent-" in k("-n", ns, "describe", "ds", "agent").stdout


def test_rolling_update_history_and_undo(server: Server, namespace: str, pool: str,
                                         controllers: Harness) -> None:
    k, ns = server.kubectl, namespace
    for i in range(3):
        add_node(server, f"{pool}-{i}", {"pool": pool})
    k("-n", ns, "create", "-f", "-", input=daemonset("roll", pool))
    k("-n", ns, "rollout", "status", "ds/roll", "--timeout=30s")
    k("-n", ns, "set", "image", "ds/roll", "c=agent:2")
    out = k("-n", ns, "rollout", "status", "ds/roll", "--timeout=30s").stdout
    assert "successfully rolled out" in out
    pods = wait_for(lambda: (p := pods_by_node(server, ns, "roll")) and len(p) == 3 and all(
        x["spec"]["containers"][0]["image"] == "agent:2" for x in p.values()) and p,
        what="every node on the new image")
    assert len(pods) == 3
    assert len(get(server, ns, "controllerrevisions")["items"]) == 2
    hist = k("-n", ns, "rollout", "history", "ds/roll").stdout
    assert "1 " in hist and "2 " in hist
    k("-n", ns, "rollout", "undo", "ds/roll")
    k("-n", ns, "rollout", "status", "ds/roll", "--timeout=30s")
    wait_for(lambda: (p := pods_by_node(server, ns, "roll")) and len(p) == 3 and all(
        x["spec"]["containers"][0]["image"] == "agent:1" for x in p.values()),
        what="every node back on the old image")
    revs = sorted(r["revision"] for r in get(server, ns, "controllerrevisions")["items"])
    assert revs == [2, 3]  # the first revision was renumbered, not duplicated


def test_surge_and_on_delete(server: Server, namespace: str, pool: str,
                             controllers: Harness) -> None:
    k, ns = server.kubectl, namespace
    for i in range(2):
        add_node(server, f"{pool}-{i}", {"pool": pool})
    k("-n", ns, "create", "-f", "-", input=daemonset(
        "surge", pool, updateStrategy={"type": "RollingUpdate", "rollingUpdate": {
            "maxSurge": 1, "maxUnavailable": 0}}))
    k("-n", ns, "rollout", "status", "ds/surge", "--timeout=30s")
    k("-n", ns, "set", "image", "ds/surge", "c=agent:2")
    k("-n", ns, "rollout", "status", "ds/surge", "--timeout=30s")
    wait_for(lambda: (p := pods_by_node(server, ns, "surge")) and len(p) == 2 and all(
        x["spec"]["containers"][0]["image"] == "agent:2" for x in p.values()),
        what="surged onto the new image")

    k("-n", ns, "create", "-f", "-", input=daemonset(
        "od", pool, updateStrategy={"type": "OnDelete"}))
    wait_for(lambda: len(pods_by_node(server, ns, "od")) == 2, what="OnDelete pods")
    k("-n", ns, "set", "image", "ds/od", "c=agent:2")
    wait_for(lambda: get(server, ns, "ds", "od")["status"].get("observedGeneration") == 2,
             what="the update observed")
    pods = pods_by_node(server, ns, "od")
    assert all(p["spec"]["containers"][0]["image"] == "agent:1" for p in pods.values())
    k("-n", ns, "delete", "pod", pods[f"{pool}-0"]["metadata"]["name"])
    wait_for(lambda: (p := pods_by_node(server, ns, "od").get(f"{pool}-0")) and
             p["spec"]["containers"][0]["image"] == "agent:2", what="replaced on delete")
    st = wait_for(lambda: (x := get(server, ns, "ds", "od")["status"]).get(
        "updatedNumberScheduled") == 1 and x, what="one updated pod")
    assert st["desiredNumberScheduled"] == 2


def _node(labels: dict[str, str] | None = None, taints: list[dict[str, str]] | None = None
          ) -> dict[str, Any]:
    return {"metadata": {"name": "n1", "labels": labels or {}}, "spec": {"taints": taints or []}}


def _ds(**pod_spec: Any) -> dict[str, Any]:
    return {"spec": {"template": {"spec": {"containers": [{"name": "c"}], **pod_spec}}}}


def test_node_eligibility_rules() -> None:
    assert node_should_run(_ds(), _node()) == (True, True)
    assert node_should_run(_ds(nodeSelector={"a": "b"}), _node({"a": "c"})) == (False, False)
    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [
            {"key": "zone", "operator": "In", "values": ["z1", "z2"]}]}]}}}
    assert node_should_run(_ds(affinity=affinity), _node({"zone": "z2"}))[0]
    assert not node_should_run(_ds(affinity=affinity), _node({"zone": "z3"}))[0]
    no_exec = [{"key": "k", "value": "v", "effect": "NoExecute"}]
    no_sched = [{"key": "k", "value": "v", "effect": "NoSchedule"}]
    assert node_should_run(_ds(), _node(taints=no_exec)) == (False, False)
    assert node_should_run(_ds(), _node(taints=no_sched)) == (False, True)
    tol = [{"key": "k", "operator": "Equal", "value": "v"}]
    assert node_should_run(_ds(tolerations=tol), _node(taints=no_exec)) == (True, True)
    down = [{"key": "node.kubernetes.io/network-unavailable", "effect": "NoSchedule"}]
    assert not node_should_run(_ds(), _node(taints=down))[0]
    assert node_should_run(_ds(hostNetwork=True), _node(taints=down))[0]
    unreachable = [{"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}]
    assert node_should_run(_ds(), _node(taints=unreachable)) == (True, True)


# -- failed and finished daemon pods, status ---------------------------------------


def held(name: str, pool: str, **spec: Any) -> str:
    """A DaemonSet whose pods the fake kubelet leaves Pending (the test plays kubelet)."""
    body = json.loads(daemonset(name, pool, **spec))
    body["spec"]["template"]["metadata"]["labels"][HOLD_LABEL] = "true"
    return json.dumps(body)


def set_phase(server: Server, ns: str, pod: str, phase: str) -> None:
    server.kubectl("-n", ns, "patch", "pod", pod, "--subresource=status", "--type=merge",
                   "-p", json.dumps({"status": {"phase": phase}}))


def events(server: Server, ns: str, reason: str) -> list[dict[str, Any]]:
    return [e for e in get(server, ns, "events")["items"] if e["reason"] == reason]


def test_failed_and_succeeded_pods_are_replaced(server: Server, namespace: str, pool: str,
                                                controllers: Harness) -> None:
    k, ns = server.kubectl, namespace
    node = f"{pool}-a"
    add_node(server, node, {"pool": pool})
    k("-n", ns, "create", "-f", "-", input=held("crash", pool))
    first = wait_for(lambda: pods_by_node(server, ns, "crash").get(node), what="a daemon pod")
    name = first["metadata"]["name"]
    set_phase(server, ns, name, "Failed")
    second = wait_for(lambda: (p := pods_by_node(server, ns, "crash").get(node)) and
                      p["metadata"]["name"] != name and p, what="the failed pod replaced")
    [ev] = wait_for(lambda: events(server, ns, "FailedDaemonPod"), what="FailedDaemonPod event")
    assert ev["type"] == "Warning"
    assert ev["message"] == (f"Found failed daemon pod {ns}/{name} on node {node}, "
                             "will try to kill it")
    assert ev["involvedObject"]["kind"] == "DaemonSet"
    assert "FailedDaemonPod" in k("-n", ns, "describe", "ds", "crash").stdout

    # A daemon pod that ran to completion is replaced as well, with a Normal event.
    set_phase(server, ns, second["metadata"]["name"], "Succeeded")
    wait_for(lambda: (p := pods_by_node(server, ns, "crash").get(node)) and
             p["metadata"]["name"] != second["metadata"]["name"], what="the finished pod replaced")
    [done] = wait_for(lambda: events(server, ns, "SucceededDaemonPod"), what="the event")
    assert done["type"] == "Normal"
    assert done["message"] == (f"Found succeeded daemon pod {ns}/{second['metadata']['name']}"
                               f" on node {node}, will try to delete it")


def test_crash_looping_pod_is_replaced_again_and_again(server: Server, namespace: str,
                                                      pool: str, controllers: Harness) -> None:
    """A kubelet that fails every daemon pod at once: the controller keeps
    replacing it (the backoff between replacements, 1 s then 2 s, ..., is
    shown on a fake clock in tests/unit/controllers/test_daemonset_unit.py)."""
    k, ns = server.kubectl, namespace
    node = f"{pool}-a"
    add_node(server, node, {"pool": pool})
    k("-n", ns, "create", "-f", "-", input=held("loop", pool))
    api = server.api_client()
    try:
        from kubernetes import client

        core = client.CoreV1Api(api)
        seen: set[str] = set()

        def crash_all() -> bool:
            for p in core.list_namespaced_pod(ns, label_selector="app=loop").items:
                seen.add(p.metadata.name)
                if p.status.phase != "Failed" and not p.metadata.deletion_timestamp:
                    core.patch_namespaced_pod_status(p.metadata.name, ns,
                                                     {"status": {"phase": "Failed"}})
            return len(seen) >= 4

        wait_for(crash_all, timeout=60, interval=0.05, what="three replacements")
    finally:
        api.close()
    assert len(events(server, ns, "FailedDaemonPod")) >= 1


def test_status_counts_as_upstream(server: Server, namespace: str, pool: str,
                                   controllers: Harness) -> None:
    k, ns = server.kubectl, namespace
    add_node(server, f"{pool}-a", {"pool": pool})
    add_node(server, f"{pool}-b", {"pool": pool})
    k("-n", ns, "create", "-f", "-", input=held("stat", pool))
    wait_for(lambda: len(pods_by_node(server, ns, "stat")) == 2, what="two pods")
    ds = wait_for(lambda: (d := get(server, ns, "ds", "stat"))["status"].get(
        "currentNumberScheduled") == 2 and d, what="status")
    st = ds["status"]
    # Nothing is ready: Go's omitempty leaves the zero counts out of the JSON.
    assert st["desiredNumberScheduled"] == 2 and st["numberReady"] == 0
    assert st["numberMisscheduled"] == 0
    assert "numberAvailable" not in st
    assert st["numberUnavailable"] == 2 and st["updatedNumberScheduled"] == 2
    assert st["observedGeneration"] == ds["metadata"]["generation"]
    api = server.api_client()
    try:
        from kubernetes import client

        seen = client.AppsV1Api(api).read_namespaced_daemon_set_status("stat", ns).status
        assert seen.number_available is None and seen.number_unavailable == 2
    finally:
        api.close()

    # A NoSchedule taint the pods do not tolerate: the running pod may stay,
    # but the node no longer should run one, so it counts as misscheduled.
    k("taint", "node", f"{pool}-b", "dedicated=db:NoSchedule")
    st = wait_for(lambda: (s := get(server, ns, "ds", "stat")["status"]).get(
        "numberMisscheduled") == 1 and s, what="a misscheduled node")
    assert (st["desiredNumberScheduled"], st["currentNumberScheduled"],
            st["numberUnavailable"], st["updatedNumberScheduled"]) == (1, 1, 1, 1)
    assert sorted(pods_by_node(server, ns, "stat")) == [f"{pool}-a", f"{pool}-b"]

    # One pod ready: available and unavailable move, the misscheduled pod stays out of it.
    pod = pods_by_node(server, ns, "stat")[f"{pool}-a"]
    k("-n", ns, "patch", "pod", pod["metadata"]["name"], "--subresource=status",
      "--type=merge", "-p", json.dumps({"status": ready_status(pod)}))
    st = wait_for(lambda: (s := get(server, ns, "ds", "stat")["status"]).get(
        "numberAvailable") == 1 and s, what="one available pod")
    assert st["numberReady"] == 1 and "numberUnavailable" not in st
