"""Storage object in-use protection and generic ephemeral volumes through
real kubectl: kubernetes.io/pvc-protection keeps a claim a scheduled pod
uses, kubernetes.io/pv-protection keeps a Bound volume, and a pod's
ephemeral volume gets its own claim, owned by the pod."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from pinnace.controllers.ephemeral import EphemeralVolumeController
from pinnace.controllers.garbagecollector import GarbageCollector
from pinnace.controllers.volumeprotection import PVCProtectionController, PVProtectionController
from tests.conftest import Server, wait_for
from tests.integration.controllers.batch_harness import Controllers

Obj = dict[str, Any]


@pytest.fixture
def storage(server: Server) -> Iterator[Controllers]:
    with Controllers(server, [PVCProtectionController, PVProtectionController,
                              EphemeralVolumeController, GarbageCollector]) as h:
        yield h


def _get(server: Server, ns: str | None, *what: str) -> Obj | None:
    args = (("-n", ns) if ns else ()) + ("get", *what, "-o", "json")
    proc = server.kubectl(*args, check=False)
    return json.loads(proc.stdout) if proc.returncode == 0 else None


def _create(server: Server, ns: str | None, obj: Obj) -> None:
    server.kubectl(*(("-n", ns) if ns else ()), "create", "-f", "-", input=json.dumps(obj))


def _pvc(name: str) -> Obj:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "manual",
                     "resources": {"requests": {"storage": "1Gi"}}}}


def _pod(name: str, volume: Obj, node: str | None = None) -> Obj:
    spec: Obj = {"containers": [{"name": "c", "image": "busybox",
                                 "volumeMounts": [{"name": volume["name"],
                                                   "mountPath": "/data"}]}],
                 "volumes": [volume]}
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def _finalizers(obj: Obj | None) -> list[str]:
    return list(((obj or {}).get("metadata") or {}).get("finalizers") or [])


def test_claim_in_use_is_kept_until_its_pod_is_gone(server: Server, namespace: str,
                                                    storage: Controllers) -> None:
    ns = namespace
    _create(server, ns, _pvc("data"))
    wait_for(lambda: _finalizers(_get(server, ns, "pvc", "data")) ==
             ["kubernetes.io/pvc-protection"], what="the protection finalizer")
    _create(server, ns, _pod("user", {"name": "d", "persistentVolumeClaim":
                                       {"claimName": "data"}}, node="somewhere"))
    server.kubectl("-n", ns, "delete", "pvc", "data", "--wait=false")
    time.sleep(1.5)
    pvc = _get(server, ns, "pvc", "data")
    assert pvc is not None and pvc["metadata"].get("deletionTimestamp")
    assert "Terminating" in server.kubectl("-n", ns, "get", "pvc", "data").stdout
    server.kubectl("-n", ns, "delete", "pod", "user", "--grace-period=0", "--force")
    wait_for(lambda: _get(server, ns, "pvc", "data") is None, what="the claim removed")

    # A pod not scheduled yet does not hold its claim.
    _create(server, ns, _pvc("loose"))
    _create(server, ns, _pod("waiting", {"name": "d", "persistentVolumeClaim":
                                          {"claimName": "loose"}}))
    wait_for(lambda: _finalizers(_get(server, ns, "pvc", "loose")), what="the finalizer")
    server.kubectl("-n", ns, "delete", "pvc", "loose", "--timeout=20s")
    assert _get(server, ns, "pvc", "loose") is None


def test_bound_volume_is_kept_until_released(server: Server, storage: Controllers) -> None:
    name = f"pv-protect-{uuid.uuid4().hex[:6]}"
    _create(server, None, {"apiVersion": "v1", "kind": "PersistentVolume",
                           "metadata": {"name": name},
                           "spec": {"capacity": {"storage": "1Gi"},
                                    "accessModes": ["ReadWriteOnce"],
                                    "hostPath": {"path": f"/tmp/{name}"}}})
    try:
        wait_for(lambda: _finalizers(_get(server, None, "pv", name)) ==
                 ["kubernetes.io/pv-protection"], what="the protection finalizer")
        server.kubectl("patch", "pv", name, "--subresource=status", "--type=merge",
                       "-p", '{"status":{"phase":"Bound"}}')
        server.kubectl("delete", "pv", name, "--wait=false")
        time.sleep(1.5)
        pv = _get(server, None, "pv", name)
        assert pv is not None and pv["metadata"].get("deletionTimestamp")
        server.kubectl("patch", "pv", name, "--subresource=status", "--type=merge",
                       "-p", '{"status":{"phase":"Released"}}')
        wait_for(lambda: _get(server, None, "pv", name) is None, what="the volume removed")
    finally:
        if _get(server, None, "pv", name) is not None:
            server.kubectl("patch", "pv", name, "--type=json", "-p",
                           '[{"op":"remove","path":"/metadata/finalizers"}]', check=False)
            server.kubectl("delete", "pv", name, "--ignore-not-found", check=False)


EPHEMERAL: Obj = {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {
    "metadata": {"labels": {"type": "scratch"}, "annotations": {"note": "temporary"}},
    "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "manual",
             "resources": {"requests": {"storage": "2Gi"}}}}}}


def test_ephemeral_volume_gets_its_claim(server: Server, namespace: str,
                                         storage: Controllers) -> None:
    ns = namespace
    _create(server, ns, _pod("app", EPHEMERAL))
    pod = _get(server, ns, "pod", "app")
    assert pod is not None
    pvc = wait_for(lambda: _get(server, ns, "pvc", "app-scratch"), what="the claim")
    assert pvc["metadata"]["ownerReferences"] == [{
        "apiVersion": "v1", "kind": "Pod", "name": "app", "uid": pod["metadata"]["uid"],
        "controller": True, "blockOwnerDeletion": True}]
    assert pvc["metadata"]["labels"] == {"type": "scratch"}
    assert pvc["metadata"]["annotations"]["note"] == "temporary"
    assert pvc["spec"]["resources"]["requests"]["storage"] == "2Gi"
    assert pvc["spec"]["storageClassName"] == "manual"

    # Deleted while the pod lives: made again.
    first = pvc["metadata"]["uid"]
    server.kubectl("-n", ns, "delete", "pvc", "app-scratch", "--timeout=20s")
    wait_for(lambda: (c := _get(server, ns, "pvc", "app-scratch")) and
             c["metadata"]["uid"] != first, what="the claim made again")

    # A claim of that name the pod does not own is not taken over.
    _create(server, ns, _pvc("other-scratch"))
    _create(server, ns, _pod("other", EPHEMERAL))
    events = wait_for(lambda: [e for e in _get(server, ns, "events")["items"]  # type: ignore[index]
                               if e["involvedObject"]["name"] == "other"
                               and e["reason"] == "FailedBinding"], what="FailedBinding")
    assert events[0]["message"] == (f"ephemeral volume scratch: PVC {ns}/other-scratch was not "
                                    f"created for pod {ns}/other (pod is not owner)")
    assert events[0]["source"]["component"] == "ephemeral_volume"

    # The pod goes: the garbage collector takes its claim.
    server.kubectl("-n", ns, "delete", "pod", "app", "--grace-period=0", "--force")
    wait_for(lambda: _get(server, ns, "pvc", "app-scratch") is None, what="the claim collected")
    assert _get(server, ns, "pvc", "other-scratch") is not None


def test_claims_and_volumes_carry_their_protection_from_creation(server: Server,
                                                                 namespace: str) -> None:
    """StorageObjectInUseProtection admission: the finalizer is there from
    the first write, before any controller could add it."""
    k = server.kubectl
    k("-n", namespace, "apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "early"},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "",
                 "resources": {"requests": {"storage": "1Gi"}}}}))
    pvc = json.loads(k("-n", namespace, "get", "pvc", "early", "-o", "json").stdout)
    assert pvc["metadata"]["finalizers"] == ["kubernetes.io/pvc-protection"]
    name = f"early-{namespace}"[:60]
    k("apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                 "hostPath": {"path": "/tmp/unused"}}}))
    pv = json.loads(k("get", "pv", name, "-o", "json").stdout)
    assert pv["metadata"]["finalizers"] == ["kubernetes.io/pv-protection"]
    k("patch", "pv", name, "--type=json", "-p", '[{"op": "remove", "path": "/metadata/finalizers"}]')
    k("delete", "pv", name)
