"""StatefulSets through real kubectl: stable names and claims, ordered and
parallel pod management, rolling updates with partitions, OnDelete, and
rollout status/history/undo, with a fake kubelet."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from pinnace.controllers.statefulset import StatefulSetController
from tests.conftest import Server, wait_for
from tests.integration.controllers.workloads_harness import HOLD_LABEL, Harness, running


@pytest.fixture(scope="module")
def controllers(server: Server) -> Iterator[Harness]:
    with running(str(server.kubeconfig), [StatefulSetController]) as h:
        yield h


def sts(name: str, replicas: int = 3, hold: bool = False, claims: bool = True,
        **spec: Any) -> str:
    labels = {"app": name}
    if hold:
        labels[HOLD_LABEL] = "true"
    body: dict[str, Any] = {
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name},
        "spec": {"replicas": replicas, "serviceName": name,
                 "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"containers": [{"name": "c", "image": "nginx:1"}]}},
                 **spec}}
    if claims:
        body["spec"]["volumeClaimTemplates"] = [{
            "metadata": {"name": "data"},
            "spec": {"accessModes": ["ReadWriteOnce"],
                     "resources": {"requests": {"storage": "1Gi"}}}}]
    return json.dumps(body)


def get(server: Server, ns: str, *what: str) -> Any:
    return json.loads(server.kubectl("-n", ns, "get", *what, "-o", "json").stdout)


def pods(server: Server, ns: str, app: str) -> dict[str, dict[str, Any]]:
    return {p["metadata"]["name"]: p for p in get(server, ns, "pods", "-l", f"app={app}")["items"]
            if not p["metadata"].get("deletionTimestamp")}


def make_ready(server: Server, ns: str, name: str) -> None:
    status = {"status": {"phase": "Running", "conditions": [
        {"type": "Ready", "status": "True", "lastTransitionTime": "2024-01-01T00:00:00Z"}]}}
    server.kubectl("-n", ns, "patch", "pod", name, "--subresource=status", "--type=merge",
                   "-p", json.dumps(status))


def test_ordered_creation_claims_and_reverse_scale_down(server: Server, namespace: str,
                                                        controllers: Harness) -> None:
    k, ns = server.kubectl, namespace
    k("-n", ns, "create", "-f", "-", input=sts("web", hold=True))
    wait_for(lambda: "web-0" in pods(server, ns, "web"), what="web-0")
    assert list(pods(server, ns, "web")) == ["web-0"]  # web-1 waits for web-0 to be ready
    claims = [c["metadata"]["name"] for c in get(server, ns, "pvc")["items"]]
    assert claims == ["data-web-0"]
    make_ready(server, ns, "web-0")
    wait_for(lambda: "web-1" in pods(server, ns, "web"), what="web-1 after web-0 is ready")
    make_ready(server, ns, "web-1")
    wait_for(lambda: "web-2" in pods(server, ns, "web"), what="web-2")
    make_ready(server, ns, "web-2")
    out = k("-n", ns, "rollout", "status", "sts/web", "--timeout=30s").stdout
    # A defaulted partition (0) makes kubectl report a partitioned roll out, as upstream.
    assert "partitioned roll out complete: 3 new pods have been updated" in out
    p = pods(server, ns, "web")["web-1"]
    labels = p["metadata"]["labels"]
    assert labels["statefulset.kubernetes.io/pod-name"] == "web-1"
    assert labels["apps.kubernetes.io/pod-index"] == "1"
    s = get(server, ns, "sts", "web")
    assert labels["controller-revision-hash"] == s["status"]["updateRevision"]
    assert p["spec"]["hostname"] == "web-1" and p["spec"]["subdomain"] == "web"
    vol = next(v for v in p["spec"]["volumes"] if v["name"] == "data")
    assert vol["persistentVolumeClaim"]["claimName"] == "data-web-1"
    st = s["status"]
    assert (st["replicas"], st["readyReplicas"], st["currentReplicas"],
            st["updatedReplicas"], st["availableReplicas"]) == (3, 3, 3, 3, 3)
    assert st["currentRevision"] == st["updateRevision"]
    assert st["observedGeneration"] == s["metadata"]["generation"]
    k("-n", ns, "scale", "sts/web", "--replicas=1")
    wait_for(lambda: list(pods(server, ns, "web")) == ["web-0"], what="scale down to web-0")
    described = k("-n", ns, "describe", "sts", "web").stdout
    assert described.index("delete Pod web-2 in StatefulSet web successful") < \
        described.index("delete Pod web-1 in StatefulSet web successful")
    assert "create Pod web-0 in StatefulSet web successful" in described
    assert "create Claim data-web-0 Pod web-0 in StatefulSet web success" in described
    claims = sorted(c["metadata"]["name"] for c in get(server, ns, "pvc")["items"])
    assert claims == ["data-web-0", "data-web-1", "data-web-2"]  # retained


def test_parallel_creates_all_at_once(server: Server, namespace: str,
                                      controllers: Harness) -> None:
    k, ns = server.kubectl, namespace
    k("-n", ns, "create", "-f", "-",
      input=sts("par", hold=True, claims=False, podManagementPolicy="Parallel"))
    wait_for(lambda: sorted(pods(server, ns, "par")) == ["par-0", "par-1", "par-2"],
             what="all pods without waiting for readiness")


def test_rolling_update_history_and_undo(server: Server, namespace: str,
                                         controllers: Harness) -> None:
    k, ns = server.kubectl, namespace
    k("-n", ns, "create", "-f", "-", input=sts("db", claims=False))
    k("-n", ns, "rollout", "status", "sts/db", "--timeout=30s")
    first = get(server, ns, "sts", "db")["status"]["updateRevision"]
    k("-n", ns, "set", "image", "sts/db", "c=nginx:2")
    k("-n", ns, "rollout", "status", "sts/db", "--timeout=30s")
    s = wait_for(lambda: (x := get(server, ns, "sts", "db"))["status"]["currentRevision"] !=
                 first and x, what="new current revision")
    second = s["status"]["updateRevision"]
    assert s["status"]["currentRevision"] == second
    ps = pods(server, ns, "db")
    assert all(p["spec"]["containers"][0]["image"] == "nginx:2" and
               p["metadata"]["labels"]["controller-revision-hash"] == second
               for p in ps.values()) and len(ps) == 3
    revs = get(server, ns, "controllerrevisions")["items"]
    assert sorted((r["metadata"]["name"], r["revision"]) for r in revs) == \
        sorted([(first, 1), (second, 2)])
    hist = k("-n", ns, "rollout", "history", "sts/db").stdout
    assert "REVISION" in hist and "1 " in hist and "2 " in hist
    k("-n", ns, "rollout", "undo", "sts/db")
    k("-n", ns, "rollout", "status", "sts/db", "--timeout=30s")
    s = wait_for(lambda: (x := get(server, ns, "sts", "db"))["status"]["currentRevision"] ==
                 first and x, what="rolled back to the first revision")
    assert s["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1"
    revs = {r["metadata"]["name"]: r["revision"]
            for r in get(server, ns, "controllerrevisions")["items"]}
    assert revs[first] == 3  # the equal old revision is renumbered, not duplicated


def test_partition_and_on_delete(server: Server, namespace: str, controllers: Harness) -> None:
    k, ns = server.kubectl, namespace
    k("-n", ns, "create", "-f", "-", input=sts(
        "part", claims=False,
        updateStrategy={"type": "RollingUpdate", "rollingUpdate": {"partition": 2}}))
    k("-n", ns, "rollout", "status", "sts/part", "--timeout=30s")
    k("-n", ns, "set", "image", "sts/part", "c=nginx:2")
    out = k("-n", ns, "rollout", "status", "sts/part", "--timeout=30s").stdout
    assert "partitioned roll out complete: 1 new pods have been updated" in out
    images = {n: p["spec"]["containers"][0]["image"] for n, p in pods(server, ns, "part").items()}
    assert images == {"part-0": "nginx:1", "part-1": "nginx:1", "part-2": "nginx:2"}

    k("-n", ns, "create", "-f", "-", input=sts(
        "od", replicas=2, claims=False, updateStrategy={"type": "OnDelete"}))
    wait_for(lambda: len(pods(server, ns, "od")) == 2, what="two OnDelete pods")
    k("-n", ns, "set", "image", "sts/od", "c=nginx:2")
    wait_for(lambda: get(server, ns, "sts", "od")["status"].get("observedGeneration") == 2,
             what="the update observed")
    assert all(p["spec"]["containers"][0]["image"] == "nginx:1"
               for p in pods(server, ns, "od").values())
    k("-n", ns, "delete", "pod", "od-1")
    wait_for(lambda: (p := pods(server, ns, "od").get("od-1")) and
             p["spec"]["containers"][0]["image"] == "nginx:2", what="od-1 recreated as new")
    st = wait_for(lambda: (x := get(server, ns, "sts", "od")["status"]).get(
        "updatedReplicas") == 1 and x, what="one updated replica")
    assert st["currentReplicas"] == 1 and st["currentRevision"] != st["updateRevision"]


def test_claims_deleted_on_scale_down_when_asked(server: Server, namespace: str,
                                                 controllers: Harness) -> None:
    k, ns = server.kubectl, namespace
    k("-n", ns, "create", "-f", "-", input=sts(
        "tmp", replicas=2, podManagementPolicy="Parallel",
        persistentVolumeClaimRetentionPolicy={"whenScaled": "Delete", "whenDeleted": "Retain"}))
    wait_for(lambda: sorted(c["metadata"]["name"] for c in get(server, ns, "pvc")["items"]) ==
             ["data-tmp-0", "data-tmp-1"], what="both claims")
    k("-n", ns, "rollout", "status", "sts/tmp", "--timeout=30s")
    k("-n", ns, "scale", "sts/tmp", "--replicas=1")
    wait_for(lambda: [c["metadata"]["name"] for c in get(server, ns, "pvc")["items"]
                      if not c["metadata"].get("deletionTimestamp")] == ["data-tmp-0"],
             what="the scaled-down claim deleted")
    assert list(pods(server, ns, "tmp")) == ["tmp-0"]
