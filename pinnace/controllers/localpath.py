"""The local-path provisioner, as k3s ships it (rancher/local-path-provisioner):
a claim of a class whose provisioner is ``rancher.io/local-path`` gets a
hostPath PersistentVolume named ``pvc-<claim uid>`` on the node the
scheduler picked (annotation volume.kubernetes.io/selected-node), in

    <root>/storage/pvc-<uid>_<namespace>_<name>     (type DirectoryOrCreate)

The kubelet creates the directory when the pod's volume is set up. Deleting
such a volume deletes the PV object only: the directory stays on the node
(the upstream provisioner runs a helper pod to remove it).
"""

from __future__ import annotations

import posixpath
from typing import Any

Obj = dict[str, Any]

PROVISIONER = "rancher.io/local-path"
DEFAULT_ROOT = "/var/lib/pinnace"
ANN_PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
ANN_SELECTED_NODE = "volume.kubernetes.io/selected-node"
HOSTNAME_LABEL = "kubernetes.io/hostname"


def volume_name(pvc: Obj) -> str:
    return f"pvc-{pvc['metadata']['uid']}"


def volume_path(root: str, pvc: Obj) -> str:
    meta = pvc["metadata"]
    return posixpath.join(root, "storage",
                          f"{volume_name(pvc)}_{meta.get('namespace') or 'default'}_{meta['name']}")


def claim_ref(pvc: Obj) -> Obj:
    meta = pvc["metadata"]
    ref = {"kind": "PersistentVolumeClaim", "apiVersion": "v1",
           "namespace": meta.get("namespace") or "default", "name": meta["name"],
           "uid": meta.get("uid", "")}
    if meta.get("resourceVersion"):
        ref["resourceVersion"] = meta["resourceVersion"]
    return ref


def provisioned_volume(pvc: Obj, storage_class: Obj, root: str, node: str | None) -> Obj:
    """The PersistentVolume to create for ``pvc``; ``node`` None (Immediate
    binding: nobody chose a node) leaves it without node affinity."""
    spec = pvc.get("spec") or {}
    request = ((spec.get("resources") or {}).get("requests") or {}).get("storage")
    pv_spec: Obj = {
        "capacity": {"storage": request},
        "accessModes": list(spec.get("accessModes") or ["ReadWriteOnce"]),
        "persistentVolumeReclaimPolicy": storage_class.get("reclaimPolicy") or "Delete",
        "storageClassName": storage_class["metadata"]["name"],
        "volumeMode": spec.get("volumeMode") or "Filesystem",
        "hostPath": {"path": volume_path(root, pvc), "type": "DirectoryOrCreate"},
        "claimRef": claim_ref(pvc),
    }
    if storage_class.get("mountOptions"):
        pv_spec["mountOptions"] = list(storage_class["mountOptions"])
    if node:
        pv_spec["nodeAffinity"] = {"required": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": HOSTNAME_LABEL, "operator": "In", "values": [node]}]}]}}
    return {"apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": volume_name(pvc),
                         "annotations": {ANN_PROVISIONED_BY: PROVISIONER}},
            "spec": pv_spec}
