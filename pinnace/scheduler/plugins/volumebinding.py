"""VolumeBinding: a pod whose PVCs are bound to PVs with node affinity (local
volumes) may only go where those PVs are reachable. A PVC that is not bound
yet stops the pod, unless its StorageClass binds WaitForFirstConsumer: then
the pod may go anywhere and, once a node is chosen, ``claims_to_provision``
names the claims the scheduler annotates with volume.kubernetes.io/
selected-node before binding the pod (upstream's PreBind), so that the
provisioner creates the volume on that node.
PVCs, PVs and StorageClasses come from lookups the scheduler process provides.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pinnace.scheduler.cache import NodeInfo, PodInfo, SchedulerCache
from pinnace.scheduler.plugins._match import compile_node_selector_terms
from pinnace.scheduler.plugins.base import Check, Reject

ERR_NODE_CONFLICT = "node(s) had volume node affinity conflict"
ERR_UNBOUND_IMMEDIATE = "pod has unbound immediate PersistentVolumeClaims"
ERR_PV_MISSING = "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)"
ANN_SELECTED_NODE = "volume.kubernetes.io/selected-node"
ANN_BETA_CLASS = "volume.beta.kubernetes.io/storage-class"

PVCLookup = Callable[[str, str], dict[str, Any] | None]
PVLookup = Callable[[str], dict[str, Any] | None]
ClassLookup = Callable[[str], dict[str, Any] | None]


def claim_names(pod: PodInfo) -> list[str]:
    """The claims a pod uses: those it names, and those the ephemeral volume
    controller makes for its generic ephemeral volumes (<pod>-<volume>)."""
    return [v["persistentVolumeClaim"].get("claimName", "")
            if v.get("persistentVolumeClaim") else f"{pod.name}-{v.get('name', '')}"
            for v in pod.spec.get("volumes") or ()
            if v.get("persistentVolumeClaim") or v.get("ephemeral")]


def _ephemeral_names(pod: PodInfo) -> set[str]:
    return {f"{pod.name}-{v.get('name', '')}" for v in pod.spec.get("volumes") or ()
            if v.get("ephemeral")}


class VolumeBinding:
    name = "VolumeBinding"

    def __init__(self, pvc_lookup: PVCLookup | None = None, pv_lookup: PVLookup | None = None,
                 delayed_binding: Callable[[dict[str, Any]], bool] | None = None,
                 class_lookup: ClassLookup | None = None) -> None:
        self.pvc_lookup = pvc_lookup
        self.pv_lookup = pv_lookup
        # Where a claim's StorageClass is found (to tell WaitForFirstConsumer).
        self.class_lookup = class_lookup
        self.delayed_binding = delayed_binding or self._wait_for_first_consumer

    def _wait_for_first_consumer(self, pvc: dict[str, Any]) -> bool:
        if self.class_lookup is None:
            return False
        ann = (pvc.get("metadata") or {}).get("annotations") or {}
        name = ann.get(ANN_BETA_CLASS) or (pvc.get("spec") or {}).get("storageClassName")
        sc = self.class_lookup(name) if name else None
        return sc is not None and sc.get("volumeBindingMode") == "WaitForFirstConsumer"

    def claims_to_provision(self, pod: PodInfo | dict[str, Any]) -> list[dict[str, Any]]:
        """The pod's unbound WaitForFirstConsumer claims, waiting for a node."""
        pi = pod if isinstance(pod, PodInfo) else PodInfo(pod)
        if self.pvc_lookup is None:
            return []
        out = []
        for name in claim_names(pi):
            pvc = self.pvc_lookup(pi.namespace, name)
            if pvc is not None and not (pvc.get("spec") or {}).get("volumeName") and \
                    self.delayed_binding(pvc):
                out.append(pvc)
        return out

    def pre_filter(self, pod: PodInfo, cache: SchedulerCache, state: dict[str, Any]) -> Check | Reject | None:
        claims = claim_names(pod)
        if not claims or self.pvc_lookup is None:
            return None
        matchers = []
        missing_pv = False
        ephemeral = _ephemeral_names(pod)
        for name in claims:
            pvc = self.pvc_lookup(pod.namespace, name)
            if pvc is None:
                if name in ephemeral:  # the claim's add event brings the pod back
                    return Reject("waiting for ephemeral volume controller to create the "
                                  f'persistentvolumeclaim "{name}"')
                return Reject(f'persistentvolumeclaim "{name}" not found')
            if name in ephemeral and not any(
                    r.get("controller") and r.get("uid") == pod.uid
                    for r in (pvc.get("metadata") or {}).get("ownerReferences") or ()):
                return Reject(f"PVC {pod.namespace}/{name} was not created for pod "
                              f"{pod.namespace}/{pod.name} (pod is not owner)")
            if (pvc.get("metadata") or {}).get("deletionTimestamp"):
                return Reject(f'persistentvolumeclaim "{name}" is being deleted')
            volume = (pvc.get("spec") or {}).get("volumeName")
            if not volume:
                if self.delayed_binding(pvc):
                    continue
                return Reject(ERR_UNBOUND_IMMEDIATE)
            pv = self.pv_lookup(volume) if self.pv_lookup else None
            if pv is None:
                missing_pv = True
                continue
            req = ((pv.get("spec") or {}).get("nodeAffinity") or {}).get("required")
            if req is not None:
                matchers.append(compile_node_selector_terms(req.get("nodeSelectorTerms") or []))
        if missing_pv:
            return Check(lambda ni: False, (ERR_PV_MISSING,), unresolvable=True)
        if not matchers:
            return None

        def ok(ni: NodeInfo) -> bool:
            return all(m(ni) for m in matchers)

        return Check(ok, (ERR_NODE_CONFLICT,), unresolvable=True)
