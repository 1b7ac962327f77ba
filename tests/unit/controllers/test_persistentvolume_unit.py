"""The PV controller's pure parts: matching claims to volumes, and the
volume the local-path provisioner makes."""

from __future__ import annotations

from typing import Any

from pinnace.controllers import localpath
from pinnace.controllers.persistentvolume import bound_to_claim, find_best_match


def pvc(name: str = "data", size: str = "1Gi", uid: str = "u1", **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns", "uid": uid},
            "spec": {"accessModes": ["ReadWriteOnce"],
                     "resources": {"requests": {"storage": size}}, **spec}}


def pv(name: str, size: str, modes: tuple[str, ...] = ("ReadWriteOnce",), cls: str = "",
       labels: dict[str, str] | None = None, claim_ref: dict[str, Any] | None = None,
       phase: str = "Available") -> dict[str, Any]:
    spec: dict[str, Any] = {"capacity": {"storage": size}, "accessModes": list(modes),
                            "storageClassName": cls, "hostPath": {"path": "/x"}}
    if claim_ref:
        spec["claimRef"] = claim_ref
    return {"metadata": {"name": name, "labels": labels or {}}, "spec": spec,
            "status": {"phase": phase}}


def names(found: dict[str, Any] | None) -> str | None:
    return None if found is None else found["metadata"]["name"]


def test_smallest_fitting_volume_of_the_class_wins() -> None:
    vols = [pv("small", "500Mi"), pv("big", "10Gi"), pv("mid", "2Gi"), pv("gold", "1Gi", cls="gold")]
    assert names(find_best_match(pvc(storageClassName=""), vols, False)) == "mid"
    assert names(find_best_match(pvc(storageClassName="gold"), vols, False)) == "gold"
    assert find_best_match(pvc(size="20Gi", storageClassName=""), vols, False) is None


def test_access_modes_selector_and_other_claims() -> None:
    rwx = pv("rwx", "1Gi", ("ReadWriteMany", "ReadWriteOnce"))
    rwo = pv("rwo", "5Gi")
    taken = pv("taken", "1Gi", claim_ref={"namespace": "ns", "name": "other", "uid": "u9"})
    released = pv("released", "1Gi", phase="Released")
    assert names(find_best_match(pvc(), [rwx, rwo, taken, released], False)) == "rwo"
    assert names(find_best_match(pvc(accessModes=["ReadWriteMany"]), [rwx, rwo], False)) == "rwx"
    labelled = pv("l", "9Gi", labels={"tier": "gold"})
    sel = {"matchLabels": {"tier": "gold"}}
    assert names(find_best_match(pvc(selector=sel), [rwo, labelled], False)) == "l"


def test_prebound_volume_wins_and_delay_binding_only_takes_those() -> None:
    mine = pv("mine", "3Gi", claim_ref={"namespace": "ns", "name": "data"})
    free = pv("free", "1Gi")
    claim = pvc()
    assert bound_to_claim(mine, claim) and not bound_to_claim(free, claim)
    assert names(find_best_match(claim, [free, mine], False)) == "mine"
    assert names(find_best_match(claim, [free], True)) is None
    assert names(find_best_match(claim, [free, mine], True)) == "mine"
    stale = pv("stale", "3Gi", claim_ref={"namespace": "ns", "name": "data", "uid": "old"})
    assert not bound_to_claim(stale, claim)


def test_local_path_volume() -> None:
    claim = pvc(size="2Gi")
    sc = {"metadata": {"name": "local-path"}, "provisioner": localpath.PROVISIONER,
          "reclaimPolicy": "Delete"}
    vol = localpath.provisioned_volume(claim, sc, "/data", "node-1")
    assert vol["metadata"] == {"name": "pvc-u1", "annotations": {
        "pv.kubernetes.io/provisioned-by": "rancher.io/local-path"}}
    spec = vol["spec"]
    assert spec["hostPath"] == {"path": "/data/storage/pvc-u1_ns_data", "type": "DirectoryOrCreate"}
    assert spec["capacity"] == {"storage": "2Gi"}
    assert spec["persistentVolumeReclaimPolicy"] == "Delete"
    assert spec["claimRef"]["uid"] == "u1"
    assert spec["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"] == [
        {"key": "kubernetes.io/hostname", "operator": "In", "values": ["node-1"]}]
    assert "nodeAffinity" not in localpath.provisioned_volume(claim, sc, "/data", None)["spec"]
    assert bound_to_claim(vol, claim)
