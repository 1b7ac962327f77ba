"""What each node may read: the objects its pods reference.

The Node authorizer lets a kubelet read a Secret, ConfigMap, claim or volume
only when a pod bound to that node uses it, as upstream's node authorizer
graph decides (plugin/pkg/auth/authorizer/node). pinnace keeps the same
relationships without a general graph, because they are only two steps deep:

    node <- pod <- secret | configmap | pvc | serviceaccount | resourceclaim
    node <- pod <- pvc <- pv <- secret

Per node, a count of how many of its pods reference each object; per claim,
the volume it is bound to. The API server feeds it pods, claims and volumes
from its watch cache.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

Obj = dict[str, Any]
Ref = tuple[str, str, str]  # kind ("secret", "configmap", "pvc", "serviceaccount",
#                             "resourceclaim"), namespace, name
PodKey = tuple[str, str]  # namespace, name

KINDS = ("Pod", "PersistentVolumeClaim", "PersistentVolume")


def _containers(spec: Obj) -> Iterator[Obj]:
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for c in spec.get(key) or ():
            if isinstance(c, dict):
                yield c


def pod_refs(pod: Obj) -> set[Ref]:
    """Every object a pod names, as upstream's VisitPod*Names see them."""
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    ns, name = meta.get("namespace") or "", meta.get("name") or ""
    refs: set[Ref] = set()

    def add(kind: str, ref_name: Any) -> None:
        if isinstance(ref_name, str) and ref_name:
            refs.add((kind, ns, ref_name))

    add("serviceaccount", spec.get("serviceAccountName"))
    for s in spec.get("imagePullSecrets") or ():
        if isinstance(s, dict):
            add("secret", s.get("name"))
    for c in _containers(spec):
        for src in c.get("envFrom") or ():
            if isinstance(src, dict):
                add("configmap", (src.get("configMapRef") or {}).get("name"))
                add("secret", (src.get("secretRef") or {}).get("name"))
        for env in c.get("env") or ():
            value_from = env.get("valueFrom") if isinstance(env, dict) else None
            if isinstance(value_from, dict):
                add("configmap", (value_from.get("configMapKeyRef") or {}).get("name"))
                add("secret", (value_from.get("secretKeyRef") or {}).get("name"))
    for vol in spec.get("volumes") or ():
        if not isinstance(vol, dict):
            continue
        add("configmap", (vol.get("configMap") or {}).get("name"))
        add("secret", (vol.get("secret") or {}).get("secretName"))
        add("pvc", (vol.get("persistentVolumeClaim") or {}).get("claimName"))
        if vol.get("ephemeral"):
            # The claim the ephemeral volume controller makes for it.
            add("pvc", f"{name}-{vol.get('name') or ''}")
        for source in (vol.get("projected") or {}).get("sources") or ():
            if isinstance(source, dict):
                add("configmap", (source.get("configMap") or {}).get("name"))
                add("secret", (source.get("secret") or {}).get("name"))
        # Volume plugins that name a Secret for their credentials.
        for plugin in ("azureFile", "cephfs", "cinder", "flexVolume", "iscsi", "rbd",
                       "scaleIO", "storageos", "csi"):
            src = vol.get(plugin)
            if isinstance(src, dict):
                ref = src.get("secretRef") or src.get("nodePublishSecretRef") or {}
                add("secret", src.get("secretName") or (ref.get("name") if
                                                        isinstance(ref, dict) else None))
    for claim in spec.get("resourceClaims") or ():
        if isinstance(claim, dict):
            add("resourceclaim", claim.get("resourceClaimName"))
    for st in (pod.get("status") or {}).get("resourceClaimStatuses") or ():
        if isinstance(st, dict):
            add("resourceclaim", st.get("resourceClaimName"))
    return refs


def _pv_secrets(pv: Obj) -> set[tuple[str, str]]:
    """The Secrets a PersistentVolume names (namespace, name): its plugins'
    secretRef and the CSI driver's *SecretRef fields."""
    out: set[tuple[str, str]] = set()
    for src in (pv.get("spec") or {}).values():
        if not isinstance(src, dict):
            continue
        for key, ref in src.items():
            if key.endswith(("secretRef", "SecretRef")) and isinstance(ref, dict) and \
                    ref.get("name"):
                out.add((ref.get("namespace") or "default", ref["name"]))
    return out


class NodeGraph:
    def __init__(self) -> None:
        self._pods: dict[PodKey, tuple[str, frozenset[Ref]]] = {}  # -> node, refs
        self._uses: dict[str, Counter[Ref]] = {}  # node -> ref -> pods using it
        self._claim_volume: dict[PodKey, str] = {}  # (ns, pvc) -> pv
        self._volume_claims: dict[str, set[PodKey]] = {}
        self._volume_secrets: dict[str, set[tuple[str, str]]] = {}
        self._secret_volumes: dict[tuple[str, str], set[str]] = {}
        # The newest revision applied per kind, for waiting on the watch.
        self.applied = dict.fromkeys(KINDS, 0)
        self._progress = asyncio.Event()
        # kind -> the newest revision the watch cache holds for it (set by the server).
        self.horizon: Callable[[], dict[str, int]] = dict

    # -- feeding ----------------------------------------------------------

    def event(self, type_: str, obj: Obj) -> None:
        """A change to a pod, claim or volume. A SKIPPED event (a pod the
        follower did not decode: not bound) only moves the pods' revision."""
        if type_ == "SKIPPED":
            self.applied["Pod"] = max(self.applied["Pod"],
                                      int(obj["metadata"]["resourceVersion"]))
            self._progress.set()
            self._progress = asyncio.Event()
            return
        kind, meta = obj.get("kind", ""), obj.get("metadata") or {}
        key = (meta.get("namespace") or "", meta.get("name") or "")
        gone = type_ == "DELETED"
        if kind == "Pod":
            self._set_pod(key, None if gone else obj)
        elif kind == "PersistentVolumeClaim":
            volume = "" if gone else (obj.get("spec") or {}).get("volumeName") or ""
            self._set_claim(key, volume)
        elif kind == "PersistentVolume":
            self._set_volume(key[1], set() if gone else _pv_secrets(obj))
        if kind in self.applied:
            self.applied[kind] = max(self.applied[kind], int(meta.get("resourceVersion") or 0))
            self._progress.set()
            self._progress = asyncio.Event()

    def _set_pod(self, key: PodKey, pod: Obj | None) -> None:
        node = ((pod.get("spec") or {}).get("nodeName") or "") if pod is not None else ""
        refs = frozenset(pod_refs(pod)) if node and pod is not None else frozenset()
        old = self._pods.get(key)
        if old == (node, refs):
            return  # a status change: the usual case
        if old is not None:
            uses = self._uses[old[0]]
            uses.subtract(old[1])
            uses.subtract([("pod", *key)])
            for ref in [*old[1], ("pod", *key)]:
                if uses[ref] <= 0:
                    del uses[ref]
            if not uses:
                del self._uses[old[0]]
            del self._pods[key]
        if node:
            self._pods[key] = (node, refs)
            uses = self._uses.setdefault(node, Counter())
            uses.update(refs)
            uses[("pod", *key)] += 1

    def _set_claim(self, key: PodKey, volume: str) -> None:
        old = self._claim_volume.pop(key, "")
        if old:
            self._volume_claims[old].discard(key)
            if not self._volume_claims[old]:
                del self._volume_claims[old]
        if volume:
            self._claim_volume[key] = volume
            self._volume_claims.setdefault(volume, set()).add(key)

    def _set_volume(self, name: str, secrets: set[tuple[str, str]]) -> None:
        for s in self._volume_secrets.pop(name, set()):
            self._secret_volumes[s].discard(name)
            if not self._secret_volumes[s]:
                del self._secret_volumes[s]
        if secrets:
            self._volume_secrets[name] = secrets
            for s in secrets:
                self._secret_volumes.setdefault(s, set()).add(name)

    async def caught_up(self, timeout: float = 1.0) -> None:
        """Wait (a little) until every kind is applied as far as ``horizon``
        says the watch feeding it has got."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    horizon = self.horizon()
                    if all(self.applied[k] >= horizon.get(k, 0) for k in KINDS):
                        return
                    await self._progress.wait()
        except TimeoutError:
            pass

    # -- asking -----------------------------------------------------------

    def knows_node(self, node: str) -> bool:
        return node in self._uses

    def related(self, node: str, kind: str, namespace: str, name: str) -> bool:
        """Does a pod bound to ``node`` need this object? ``kind`` is "pod",
        "secret", "configmap", "pvc", "pv", "serviceaccount" or "resourceclaim"."""
        uses = self._uses.get(node)
        if uses is None:
            return False
        if kind == "pv":
            return self._volume_used(uses, name)
        if uses.get((kind, namespace, name), 0) > 0:
            return True
        if kind == "secret":
            return any(self._volume_used(uses, pv)
                       for pv in self._secret_volumes.get((namespace, name), ()))
        return False

    def _volume_used(self, uses: Counter[Ref], volume: str) -> bool:
        return any(uses.get(("pvc", ns, claim), 0) > 0
                   for ns, claim in self._volume_claims.get(volume, ()))
