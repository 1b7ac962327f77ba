"""Storage object in-use protection (upstream pkg/controller/volume/
pvcprotection and pvprotection): a claim a pod still uses, or a volume
still bound, is not removed when deleted; it waits, deletionTimestamp set,
until nothing uses it.

Both controllers add their finalizer to every object that is not being
deleted and lacks it (upstream's admission plugin adds it on create; the
controllers add it to objects created without it), and remove it from an
object being deleted once it is unused:
- kubernetes.io/pvc-protection: no scheduled pod (spec.nodeName set) of the
  claim's namespace names it in a persistentVolumeClaim volume, and no pod
  that is not shut down (deleted with grace period 0) has an ephemeral
  volume whose claim (``<pod>-<volume>``, owned by that pod) it is. The
  informer is asked first; "unused" is confirmed with a live list of pods.
- kubernetes.io/pv-protection: the volume's phase is not Bound.
"""

from __future__ import annotations

from typing import Any

from pinnace.client import ApiError, key_of

from .base import Context, Controller, controller_ref

Obj = dict[str, Any]

PVC_PROTECTION = "kubernetes.io/pvc-protection"
PV_PROTECTION = "kubernetes.io/pv-protection"
POD_PVC_INDEX = "pod-pvc"


def claim_names(pod: Obj) -> list[str]:
    """The claims ``pod``'s volumes refer to (ephemeral ones by the name
    their claim gets)."""
    out = []
    pod_name = pod["metadata"]["name"]
    for v in (pod.get("spec") or {}).get("volumes") or []:
        if v.get("persistentVolumeClaim"):
            out.append(str((v["persistentVolumeClaim"] or {}).get("claimName") or ""))
        elif v.get("ephemeral") is not None:
            out.append(f"{pod_name}-{v.get('name', '')}")
    return out


def pod_pvc_index(pod: Obj) -> list[str]:
    ns = pod["metadata"].get("namespace") or ""
    return [f"{ns}/{name}" for name in claim_names(pod)]


def is_for_pod(pod: Obj, pvc: Obj) -> bool:
    """Whether ``pvc`` was made for ``pod``'s ephemeral volume (upstream
    ephemeral.VolumeIsForPod: the pod is its controller)."""
    ref = controller_ref(pvc)
    return ref is not None and ref.get("uid") == pod["metadata"].get("uid")


def _shut_down(pod: Obj) -> bool:
    meta = pod["metadata"]
    return bool(meta.get("deletionTimestamp")) and meta.get("deletionGracePeriodSeconds") == 0


def pod_uses_claim(pod: Obj, pvc: Obj) -> bool:
    spec = pod.get("spec") or {}
    if not spec.get("nodeName"):
        return False  # the kubelet only starts scheduled pods, and not with a deleted claim
    name = pvc["metadata"]["name"]
    for v in spec.get("volumes") or []:
        if (v.get("persistentVolumeClaim") or {}).get("claimName") == name:
            return True
        if v.get("ephemeral") is not None and not _shut_down(pod) and \
                f"{pod['metadata']['name']}-{v.get('name', '')}" == name and is_for_pod(pod, pvc):
            return True
    return False


def _terminated(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def deletion_candidate(obj: Obj, finalizer: str) -> bool:
    meta = obj["metadata"]
    return bool(meta.get("deletionTimestamp")) and finalizer in (meta.get("finalizers") or [])


def needs_finalizer(obj: Obj, finalizer: str) -> bool:
    meta = obj["metadata"]
    return not meta.get("deletionTimestamp") and finalizer not in (meta.get("finalizers") or [])


async def set_finalizer(api: Any, obj: Obj, finalizer: str, present: bool) -> None:
    """Add or remove ``finalizer`` with a resourceVersion precondition (a
    conflict is retried by the workqueue with the informer's newer copy)."""
    meta = obj["metadata"]
    fins = [f for f in meta.get("finalizers") or [] if f != finalizer]
    if present:
        fins.append(finalizer)
    try:
        await api.patch(meta["name"], {"metadata": {"finalizers": fins or None,
                                                    "resourceVersion": meta["resourceVersion"]}},
                        meta.get("namespace"))
    except ApiError as e:
        if not e.not_found:
            raise


class PVCProtectionController(Controller):
    name = "pvc-protection"
    event_source = "pvc-protection-controller"
    workers = 2

    def __init__(self, ctx: Context):
        super().__init__(ctx)
        self.claims = ctx.informers.informer("v1", "persistentvolumeclaims")
        self.pods = ctx.informers.informer("v1", "pods")
        self.pvc_api = self.client.resource("v1", "persistentvolumeclaims")
        self.pod_api = self.client.resource("v1", "pods")

    def setup(self) -> None:
        if not self.pods.has_index(POD_PVC_INDEX):
            self.pods.add_index(POD_PVC_INDEX, pod_pvc_index)
        self.claims.add_handler(self._claim_changed, lambda old, new: self._claim_changed(new))
        self.pods.add_handler(lambda p: self._pod_changed(p, False),
                              lambda old, new: self._pod_update(old, new),
                              lambda p: self._pod_changed(p, True))

    def _claim_changed(self, pvc: Obj) -> None:
        if needs_finalizer(pvc, PVC_PROTECTION) or deletion_candidate(pvc, PVC_PROTECTION):
            self.enqueue(pvc)

    def _pod_update(self, old: Obj, new: Obj) -> None:
        self._pod_changed(new, False)
        if old["metadata"].get("uid") != new["metadata"].get("uid"):
            self._pod_changed(old, True)

    def _pod_changed(self, pod: Obj, deleted: bool) -> None:
        # Only a pod that is gone, finished or not scheduled can free a claim.
        if not deleted and not _terminated(pod) and (pod.get("spec") or {}).get("nodeName"):
            return
        for key in pod_pvc_index(pod):
            self.queue.add(key)

    async def sync(self, key: str) -> None:
        pvc = self.claims.get(key)
        if pvc is None:
            return
        if deletion_candidate(pvc, PVC_PROTECTION):
            if not await self._in_use(pvc):
                await set_finalizer(self.pvc_api, pvc, PVC_PROTECTION, False)
                self.log.info("removed protection finalizer from claim %s", key)
            else:
                self.log.debug("keeping claim %s: a pod uses it", key)
            return
        if needs_finalizer(pvc, PVC_PROTECTION):
            await set_finalizer(self.pvc_api, pvc, PVC_PROTECTION, True)

    async def _in_use(self, pvc: Obj) -> bool:
        if any(pod_uses_claim(p, pvc) for p in self.pods.by_index(POD_PVC_INDEX, key_of(pvc))):
            return True
        # The informer may not have a pod just created: ask the API server.
        live = await self.pod_api.list(pvc["metadata"]["namespace"])
        return any(pod_uses_claim(p, pvc) for p in live.get("items") or [])


class PVProtectionController(Controller):
    name = "pv-protection"
    event_source = "pv-protection-controller"
    workers = 1

    def __init__(self, ctx: Context):
        super().__init__(ctx)
        self.volumes = ctx.informers.informer("v1", "persistentvolumes")
        self.pv_api = self.client.resource("v1", "persistentvolumes")

    def setup(self) -> None:
        self.volumes.add_handler(self._changed, lambda old, new: self._changed(new))

    def _changed(self, pv: Obj) -> None:
        if needs_finalizer(pv, PV_PROTECTION) or deletion_candidate(pv, PV_PROTECTION):
            self.enqueue(pv)

    async def sync(self, key: str) -> None:
        pv = self.volumes.get(key)
        if pv is None:
            return
        if deletion_candidate(pv, PV_PROTECTION):
            if (pv.get("status") or {}).get("phase") != "Bound":
                await set_finalizer(self.pv_api, pv, PV_PROTECTION, False)
                self.log.info("removed protection finalizer from volume %s", key)
            return
        if needs_finalizer(pv, PV_PROTECTION):
            await set_finalizer(self.pv_api, pv, PV_PROTECTION, True)


CONTROLLERS: dict[str, type[Controller]] = {"pvc-protection": PVCProtectionController,
                                            "pv-protection": PVProtectionController}
