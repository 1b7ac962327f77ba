"""DefaultStorageClass: a claim created with no storageClassName (absent or
null, not "") gets the default class, the newest if several, as upstream's
plugin/pkg/admission/storage/storageclass/setdefault."""

from __future__ import annotations

from typing import Any

from pinnace.storage.interface import Store

from .. import codec
from . import CREATE, Attributes

Obj = dict[str, Any]
PREFIX = "/registry/storage.k8s.io/storageclasses/"
_DEFAULT = ("storageclass.kubernetes.io/is-default-class",
            "storageclass.beta.kubernetes.io/is-default-class")


def _annotations(obj: Obj) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("annotations") or {})


class DefaultStorageClass:
    server_writes = True
    resources = frozenset({("", "persistentvolumeclaims")})

    def __init__(self, store: Store):
        self.store = store

    async def mutate(self, a: Attributes) -> None:
        if a.operation != CREATE or a.subresource or a.obj is None or \
                (a.info.group, a.info.resource) != ("", "persistentvolumeclaims"):
            return
        spec = a.obj.get("spec")
        if not isinstance(spec, dict) or spec.get("storageClassName") is not None or \
                "volume.beta.kubernetes.io/storage-class" in _annotations(a.obj):
            return
        best: Obj | None = None
        for kv in (await self.store.list(PREFIX)).kvs:
            sc = codec.decode_stored(kv.value, kv.mod_revision)
            if "true" not in (_annotations(sc).get(k) for k in _DEFAULT):
                continue
            rank = (sc["metadata"].get("creationTimestamp") or "", sc["metadata"]["name"])
            if best is None or rank > (best["metadata"].get("creationTimestamp") or "",
                                       best["metadata"]["name"]):
                best = sc
        if best is not None:
            spec["storageClassName"] = best["metadata"]["name"]
