"""Generic ephemeral volumes (upstream pkg/controller/volume/ephemeral):
for each volume of a pod with an ``ephemeral.volumeClaimTemplate``, create
the PersistentVolumeClaim ``<pod name>-<volume name>`` in the pod's
namespace from the template (its labels, annotations and spec), owned by
the pod (controller, blockOwnerDeletion), so the claim lives and dies with
the pod: the garbage collector deletes it after the pod.

A claim of that name that the pod does not own is not touched: the pod gets
a FailedBinding event and cannot start (as upstream). Pods being deleted
are left alone; a deleted claim whose pod still exists is made again.
"""

from __future__ import annotations

from typing import Any

from pinnace.client import ApiError, key_of

from .base import Context, Controller
from .volumeprotection import POD_PVC_INDEX, is_for_pod, pod_pvc_index

Obj = dict[str, Any]


def ephemeral_volumes(pod: Obj) -> list[Obj]:
    return [v for v in (pod.get("spec") or {}).get("volumes") or []
            if v.get("ephemeral") is not None]


def claim_for(pod: Obj, volume: Obj) -> Obj:
    """The claim upstream makes for ``volume`` of ``pod``."""
    meta = pod["metadata"]
    template = (volume.get("ephemeral") or {}).get("volumeClaimTemplate") or {}
    tmeta = template.get("metadata") or {}
    claim_meta: Obj = {"name": f"{meta['name']}-{volume.get('name', '')}",
                       "namespace": meta.get("namespace"),
                       "ownerReferences": [{"apiVersion": "v1", "kind": "Pod",
                                            "name": meta["name"], "uid": meta["uid"],
                                            "controller": True, "blockOwnerDeletion": True}]}
    if tmeta.get("labels"):
        claim_meta["labels"] = dict(tmeta["labels"])
    if tmeta.get("annotations"):
        claim_meta["annotations"] = dict(tmeta["annotations"])
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": claim_meta,
            "spec": dict(template.get("spec") or {})}


class EphemeralVolumeController(Controller):
    name = "ephemeral-volume"
    event_source = "ephemeral_volume"
    workers = 2

    def __init__(self, ctx: Context):
        super().__init__(ctx)
        self.pods = ctx.informers.informer("v1", "pods")
        self.claims = ctx.informers.informer("v1", "persistentvolumeclaims")
        self.pvc_api = self.client.resource("v1", "persistentvolumeclaims")

    def setup(self) -> None:
        if not self.pods.has_index(POD_PVC_INDEX):
            self.pods.add_index(POD_PVC_INDEX, pod_pvc_index)
        self.pods.add_handler(self._pod_changed, lambda old, new: self._pod_changed(new))
        self.claims.add_handler(None, None, self._claim_deleted)

    def _pod_changed(self, pod: Obj) -> None:
        if ephemeral_volumes(pod) and not pod["metadata"].get("deletionTimestamp"):
            self.enqueue(pod)

    def _claim_deleted(self, pvc: Obj) -> None:
        # Deleted by someone while its pod lives on: it is made again.
        for pod in self.pods.by_index(POD_PVC_INDEX, key_of(pvc)):
            self._pod_changed(pod)

    async def sync(self, key: str) -> None:
        pod = self.pods.get(key)
        if pod is None or pod["metadata"].get("deletionTimestamp"):
            return
        for volume in ephemeral_volumes(pod):
            try:
                await self._ensure_claim(pod, volume)
            except (ApiError, ValueError) as e:
                message = getattr(e, "status", {}).get("message") or str(e)
                self.recorder.event(pod, "Warning", "FailedBinding",
                                    f"ephemeral volume {volume.get('name', '')}: {message}")
                raise

    async def _ensure_claim(self, pod: Obj, volume: Obj) -> None:
        want = claim_for(pod, volume)
        ns, name = want["metadata"]["namespace"], want["metadata"]["name"]
        have = self.claims.get(f"{ns}/{name}")
        if have is None:
            try:
                await self.pvc_api.create(want, ns)
                self.log.info("created claim %s/%s for pod %s", ns, name, pod["metadata"]["name"])
                return
            except ApiError as e:
                if e.code != 409:
                    raise
                have = await self.pvc_api.get(name, ns)
        if not is_for_pod(pod, have):
            raise ValueError(f"PVC {ns}/{name} was not created for pod "
                             f"{ns}/{pod['metadata']['name']} (pod is not owner)")


CONTROLLERS: dict[str, type[Controller]] = {"ephemeral-volume": EphemeralVolumeController}
