"""PersistentVolumeClaims through the whole control plane (`pinnace server
--disable-agent`) and one simulated node, driven by real kubectl: the
default `local-path` StorageClass, WaitForFirstConsumer provisioning on the
pod's node, binding, reclaim on claim deletion, and static Immediate binding.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Server, start_server, wait_for
from tests.integration.test_sim import SimThread

NODE = "pv-sim-0"


@pytest.fixture(scope="module")
def pv_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    data = tmp_path_factory.mktemp("pv-cluster")
    srv = start_server(data, "--datastore", "memory", command="server")
    sim = SimThread(srv, [NODE], renew_interval=0.5)
    try:
        yield srv, data
    finally:
        sim.stop()
        srv.stop()


def _get(srv: Server, *args: str) -> Any:
    proc = srv.kubectl("get", *args, "-o", "json", check=False)
    return json.loads(proc.stdout) if proc.returncode == 0 else None


def _apply(srv: Server, ns: str, *objs: dict[str, Any]) -> None:
    srv.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(
        {"apiVersion": "v1", "kind": "List", "items": list(objs)}))


def _ns(srv: Server, name: str) -> str:
    srv.kubectl("create", "namespace", name)
    return name


def _pvc(name: str, size: str = "1Gi", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
            "spec": {"accessModes": ["ReadWriteOnce"],
                     "resources": {"requests": {"storage": size}}, **spec}}


def _pod(name: str, claim: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "busybox",
                                     "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
                     "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]}}


def test_default_storage_class_is_bootstrapped(pv_cluster: tuple[Server, Path]) -> None:
    srv, _ = pv_cluster
    sc = _get(srv, "storageclass", "local-path")
    assert sc["provisioner"] == "rancher.io/local-path"
    assert sc["volumeBindingMode"] == "WaitForFirstConsumer"
    assert sc["reclaimPolicy"] == "Delete"
    assert sc["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] == "true"
    out = srv.kubectl("get", "storageclass").stdout
    assert "local-path (default)" in out and "rancher.io/local-path" in out


def test_claim_is_provisioned_on_the_pods_node(pv_cluster: tuple[Server, Path]) -> None:
    srv, data = pv_cluster
    ns = _ns(srv, "pv-dynamic")
    _apply(srv, ns, _pvc("data", "2Gi"))
    pvc = _get(srv, "pvc", "-n", ns, "data")
    assert pvc["spec"]["storageClassName"] == "local-path"  # DefaultStorageClass admission
    # Waits for its first consumer: no volume yet.
    wait_for(lambda: any(e["reason"] == "WaitForFirstConsumer" for e in _get(
        srv, "events", "-n", ns)["items"]), what="a WaitForFirstConsumer event")
    assert _get(srv, "pvc", "-n", ns, "data").get("status", {}).get("phase") == "Pending"

    _apply(srv, ns, _pod("app", "data"))
    pod = wait_for(lambda: (p := _get(srv, "pod", "-n", ns, "app")) and
                   p["spec"].get("nodeName") and p, what="the pod to be scheduled")
    assert pod["spec"]["nodeName"] == NODE
    pvc = wait_for(lambda: (c := _get(srv, "pvc", "-n", ns, "data")) and
                   c.get("status", {}).get("phase") == "Bound" and c, what="the claim to bind")
    uid = pvc["metadata"]["uid"]
    ann = pvc["metadata"]["annotations"]
    assert ann["volume.kubernetes.io/selected-node"] == NODE
    assert ann["pv.kubernetes.io/bind-completed"] == "yes"
    assert ann["volume.kubernetes.io/storage-provisioner"] == "rancher.io/local-path"
    assert pvc["spec"]["volumeName"] == f"pvc-{uid}"
    assert pvc["status"]["capacity"] == {"storage": "2Gi"}
    assert pvc["status"]["accessModes"] == ["ReadWriteOnce"]

    pv = wait_for(lambda: (v := _get(srv, "pv", f"pvc-{uid}")) and
                  v.get("status", {}).get("phase") == "Bound" and v, what="the volume to bind")
    spec = pv["spec"]
    assert pv["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"] == \
        "rancher.io/local-path"
    # Under the server's data dir (the controller's local_path_root; /var/lib/pinnace
    # when the controller manager is not told).
    assert spec["hostPath"]["type"] == "DirectoryOrCreate"
    assert spec["hostPath"]["path"] in (f"{root}/storage/pvc-{uid}_{ns}_data"
                                        for root in (data, "/var/lib/pinnace"))
    assert spec["capacity"] == {"storage": "2Gi"}
    assert spec["storageClassName"] == "local-path"
    assert spec["persistentVolumeReclaimPolicy"] == "Delete"
    assert spec["claimRef"]["uid"] == uid and spec["claimRef"]["name"] == "data"
    assert spec["nodeAffinity"]["required"]["nodeSelectorTerms"] == [{"matchExpressions": [
        {"key": "kubernetes.io/hostname", "operator": "In", "values": [NODE]}]}]

    row = srv.kubectl("get", "pvc", "-n", ns, "data", "--no-headers").stdout.split()
    assert row[:6] == ["data", "Bound", f"pvc-{uid}", "2Gi", "RWO", "local-path"]

    # Reclaim: the pod goes, then the claim; the Delete policy deletes the volume.
    srv.kubectl("delete", "pod", "-n", ns, "app", "--wait=false")
    wait_for(lambda: _get(srv, "pod", "-n", ns, "app") is None, 30, what="the pod to go")
    srv.kubectl("delete", "pvc", "-n", ns, "data")
    wait_for(lambda: _get(srv, "pv", f"pvc-{uid}") is None, 30, what="the volume to be deleted")


def test_static_volume_binds_immediately(pv_cluster: tuple[Server, Path]) -> None:
    srv, _ = pv_cluster
    ns = _ns(srv, "pv-static")
    srv.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": "static-1", "labels": {"tier": "gold"}},
        "spec": {"capacity": {"storage": "5Gi"}, "accessModes": ["ReadWriteOnce", "ReadOnlyMany"],
                 "storageClassName": "", "hostPath": {"path": "/tmp/pinnace-static-1"}}}))
    wait_for(lambda: _get(srv, "pv", "static-1").get("status", {}).get("phase") == "Available",
             what="the volume to be Available")
    # Too big for the volume: stays Pending.
    _apply(srv, ns, _pvc("big", "10Gi", storageClassName=""),
           _pvc("claim", "1Gi", storageClassName="", selector={"matchLabels": {"tier": "gold"}}))
    pvc = wait_for(lambda: (c := _get(srv, "pvc", "-n", ns, "claim")) and
                   c.get("status", {}).get("phase") == "Bound" and c, what="the claim to bind")
    assert pvc["spec"]["volumeName"] == "static-1"
    assert pvc["spec"]["storageClassName"] == ""
    assert pvc["metadata"]["annotations"]["pv.kubernetes.io/bound-by-controller"] == "yes"
    assert pvc["status"]["capacity"] == {"storage": "5Gi"}
    pv = wait_for(lambda: (v := _get(srv, "pv", "static-1")) and
                  v.get("status", {}).get("phase") == "Bound" and v, what="the volume to bind")
    assert pv["spec"]["claimRef"]["uid"] == pvc["metadata"]["uid"]
    assert pv["metadata"]["annotations"]["pv.kubernetes.io/bound-by-controller"] == "yes"
    big = _get(srv, "pvc", "-n", ns, "big")
    assert big.get("status", {}).get("phase", "Pending") == "Pending"
    assert not big["spec"].get("volumeName")
    # Retain (the default for static volumes): the claim goes, the volume is Released.
    srv.kubectl("delete", "pvc", "-n", ns, "claim")
    wait_for(lambda: _get(srv, "pv", "static-1").get("status", {}).get("phase") == "Released",
             what="the volume to be Released")
    srv.kubectl("delete", "pv", "static-1")
