"""VolumeBinding, minimal: a pod whose PVCs are bound to PVs with node
affinity (local volumes) may only go where those PVs are reachable.
PVCs and PVs come from lookups the scheduler process provides."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pinnace.scheduler.cache import NodeInfo, PodInfo, SchedulerCache
from pinnace.scheduler.plugins._match import compile_node_selector_terms
from pinnace.scheduler.plugins.base import Check, Reject

ERR_NODE_CONFLICT = "node(s) had volume node affinity conflict"
ERR_UNBOUND_IMMEDIATE = "pod has unbound immediate PersistentVolumeClaims"
ERR_PV_MISSING = "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)"

PVCLookup = Callable[[str, str], dict[str, Any] | None]
PVLookup = Callable[[str], dict[str, Any] | None]


class VolumeBinding:
    name = "VolumeBinding"

    def __init__(self, pvc_lookup: PVCLookup | None = None, pv_lookup: PVLookup | None = None,
                 delayed_binding: Callable[[dict[str, Any]], bool] | None = None) -> None:
        self.pvc_lookup = pvc_lookup
        self.pv_lookup = pv_lookup
        # WaitForFirstConsumer claims are left to the PV controller here.
        self.delayed_binding = delayed_binding or (lambda pvc: False)

    def pre_filter(self, pod: PodInfo, cache: SchedulerCache, state: dict[str, Any]) -> Check | Reject | None:
        claims = [v["persistentVolumeClaim"].get("claimName", "") for v in pod.spec.get("volumes") or ()
                  if v.get("persistentVolumeClaim")]
        if not claims or self.pvc_lookup is None:
            return None
        matchers = []
        missing_pv = False
        for name in claims:
            pvc = self.pvc_lookup(pod.namespace, name)
            if pvc is None:
                return Reject(f'persistentvolumeclaim "{name}" not found')
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
