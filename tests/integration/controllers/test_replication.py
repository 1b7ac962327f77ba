"""The replication controller through real kubectl: the classic example's core."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import Server, wait_for

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "classic"


def _pods(cluster: Server, ns: str, selector: str) -> list[dict]:
    out = cluster.kubectl("-n", ns, "get", "pods", "-l", selector, "-o", "json").stdout
    return [p for p in json.loads(out)["items"] if not p["metadata"].get("deletionTimestamp")]


def test_rc_keeps_replicas_scales_and_heals(cluster: Server, cluster_ns: str) -> None:
    k, ns = cluster.kubectl, cluster_ns
    k("-n", ns, "apply", "-f", str(EXAMPLES / "myweb-rc.yaml"))
    pods = wait_for(lambda: (p := _pods(cluster, ns, "app=myweb")) and len(p) == 2 and p,
                    what="2 myweb pods")
    ref = pods[0]["metadata"]["ownerReferences"][0]
    assert ref["kind"] == "ReplicationController" and ref["name"] == "myweb"
    assert ref["controller"] is True
    k("-n", ns, "scale", "rc", "myweb", "--replicas=3")
    wait_for(lambda: len(_pods(cluster, ns, "app=myweb")) == 3, what="3 pods after scale up")
    victim = pods[0]["metadata"]["name"]
    k("-n", ns, "delete", "pod", victim)
    wait_for(lambda: (names := [p["metadata"]["name"] for p in _pods(cluster, ns, "app=myweb")])
             and len(names) == 3 and victim not in names, what="a replacement pod")
    k("-n", ns, "scale", "rc", "myweb", "--replicas=1")
    wait_for(lambda: len(_pods(cluster, ns, "app=myweb")) == 1, what="1 pod after scale down")
    status = wait_for(lambda: (rc := json.loads(k("-n", ns, "get", "rc", "myweb", "-o",
                                                   "json").stdout)).get("status", {}).get(
        "replicas") == 1 and rc["status"], what="rc status")
    assert status["observedGeneration"] >= 3
    events = k("-n", ns, "describe", "rc", "myweb").stdout
    assert "SuccessfulCreate" in events and "replication-controller" in events


def test_rc_adopts_matching_orphans(cluster: Server, cluster_ns: str) -> None:
    k, ns = cluster.kubectl, cluster_ns
    orphan = {"apiVersion": "v1", "kind": "Pod",
              "metadata": {"name": "orphan", "labels": {"app": "adopt"}},
              "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
    k("-n", ns, "create", "-f", "-", input=json.dumps(orphan))
    rc = {"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "adopter"},
          "spec": {"replicas": 1, "selector": {"app": "adopt"},
                   "template": {"metadata": {"labels": {"app": "adopt"}},
                                "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}
    k("-n", ns, "create", "-f", "-", input=json.dumps(rc))
    adopted = wait_for(lambda: (p := json.loads(k("-n", ns, "get", "pod", "orphan", "-o",
                                                  "json").stdout))["metadata"].get(
        "ownerReferences") and p, what="the orphan adopted")
    assert adopted["metadata"]["ownerReferences"][0]["name"] == "adopter"
    assert len(_pods(cluster, ns, "app=adopt")) == 1  # adopted, so none created
