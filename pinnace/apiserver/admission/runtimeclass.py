"""The RuntimeClass admission plugin: a pod naming a RuntimeClass gets its
overhead and its scheduling constraints, and is refused when the class does
not exist or the pod contradicts it (upstream plugin/pkg/admission/runtimeclass)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from pinnace.api import quantity
from pinnace.storage.interface import Store

from ..status import APIError
from . import CREATE, Attributes

Obj = dict[str, Any]
PREFIX = "/registry/node.k8s.io/runtimeclasses/"


async def admit_pod(store: Store, pod: Obj, forbid: Callable[[str], APIError]) -> None:
    spec = pod.setdefault("spec", {})
    name = spec.get("runtimeClassName")
    if not name:
        return
    kv = await store.get(PREFIX + name)
    if kv is None:
        raise forbid(f'pod rejected: RuntimeClass "{name}" not found')
    rc: Obj = orjson.loads(kv.value)
    fixed = (rc.get("overhead") or {}).get("podFixed")
    if fixed:
        given = spec.get("overhead")
        if given is not None and not _same(given, fixed):
            raise forbid("pod rejected: Pod's Overhead doesn't match RuntimeClass's defined "
                         "Overhead")
        spec["overhead"] = dict(fixed)
    scheduling = rc.get("scheduling") or {}
    selector = scheduling.get("nodeSelector") or {}
    if selector:
        mine = spec.get("nodeSelector") or {}
        for key, value in selector.items():
            if key in mine and mine[key] != value:
                raise forbid(f"conflict: runtimeClass.scheduling.nodeSelector[{key}] = {value}; "
                             f"pod.spec.nodeSelector[{key}] = {mine[key]}")
        spec["nodeSelector"] = {**mine, **selector}
    tolerations = scheduling.get("tolerations") or []
    if tolerations:
        mine_t = spec.get("tolerations") or []
        spec["tolerations"] = mine_t + [t for t in tolerations if t not in mine_t]


def _same(a: Any, b: Any) -> bool:
    if not isinstance(a, dict) or set(a) != set(b):
        return False
    try:
        return all(quantity.parse_quantity(a[k]) == quantity.parse_quantity(b[k]) for k in a)
    except quantity.QuantityError:
        return False


class RuntimeClass:
    """The RuntimeClass admission plugin over ``admit_pod``."""

    server_writes = True
    resources = frozenset({("", "pods")})

    def __init__(self, store: Store):
        self.store = store

    async def mutate(self, a: Attributes) -> None:
        if a.operation == CREATE and not a.subresource and a.obj is not None and \
                (a.info.group, a.info.resource) == ("", "pods"):
            await admit_pod(self.store, a.obj, a.forbidden)
