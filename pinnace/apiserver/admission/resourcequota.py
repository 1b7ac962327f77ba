"""ResourceQuota admission: a create that would take a namespace past one of
its quotas is refused with kube-apiserver's message, and one that fits is
charged to the quota's status.used before it is stored.

The check and the charge are one compare-and-swap on the quota, retried on
conflict against the quota as stored, as upstream's quota admission does, so
two creates racing for the last unit cannot both get it. The resourcequota
controller recomputes status.used afterwards (a create refused later in the
chain, or deleted, is given back then). What an object uses is computed by
the same functions the controller uses.

Only creates are charged; updates that change usage (a bigger claim, a
Service turned NodePort) are counted by the controller alone.
"""

from __future__ import annotations

import time
from fractions import Fraction
from typing import Any

from pinnace.api import quantity
from pinnace.api.resources import ResourceInfo
from pinnace.controllers.resourcequota import compute_used

from .. import status
from ..rest import Options, Registry
from . import CREATE, Attributes

Obj = dict[str, Any]

# Compute resources a pod's every container must state once a quota limits
# them (upstream's validationSet): quota name -> (requests or limits, resource).
_MUST_SPECIFY = {"requests.cpu": ("requests", "cpu"), "requests.memory": ("requests", "memory"),
                 "cpu": ("requests", "cpu"), "memory": ("requests", "memory"),
                 "limits.cpu": ("limits", "cpu"), "limits.memory": ("limits", "memory")}


def _amount(q: Any) -> Fraction:
    try:
        return quantity.parse_with_format(q)[0]
    except (ValueError, TypeError):
        return Fraction(0)


def _pretty(values: dict[str, Any]) -> str:
    return ",".join(f"{k}={values[k]}" for k in sorted(values))


def _unspecified(quota: Obj, pod: Obj) -> str:
    """What the pod's containers leave out that the quota limits, as upstream says it."""
    hard = (quota.get("spec") or {}).get("hard") or {}
    spec = pod.get("spec") or {}
    missing: dict[str, set[str]] = {}
    for name, (kind, resource) in _MUST_SPECIFY.items():
        if name not in hard:
            continue
        for c in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]:
            if resource not in ((c.get("resources") or {}).get(kind) or {}):
                missing.setdefault(name, set()).add(c.get("name") or "")
    return "; ".join(f"{r} for: {','.join(sorted(cs))}" for r, cs in sorted(missing.items()))


class ResourceQuota:
    def __init__(self, registry: Registry, quotas: ResourceInfo):
        self.registry = registry
        self.quotas_info = quotas
        self._names: dict[str, set[str]] = {}  # namespace -> its quotas' names

    def event(self, type_: str, quota: Obj) -> None:
        meta = quota["metadata"]
        names = self._names.setdefault(meta.get("namespace") or "", set())
        if type_ == "DELETED":
            names.discard(meta["name"])
        else:
            names.add(meta["name"])

    async def validate(self, a: Attributes) -> None:
        if a.operation != CREATE or a.subresource or not a.namespace or a.obj is None:
            return
        if (a.info.group, a.info.resource) == ("", "resourcequotas"):
            return
        for name in sorted(self._names.get(a.namespace) or ()):
            await self._charge(a, name)

    async def _usage(self, quota: Obj, a: Attributes) -> dict[str, Fraction]:
        """What ``a.obj`` adds to each resource the quota limits."""
        obj: Obj = a.obj or {}
        info = a.info

        async def objects(api_version: str, resource: str) -> list[Obj]:
            return [obj] if (api_version, resource) == (info.group_version, info.resource) \
                else []

        async def generic(group: str, resource: str) -> list[Obj]:
            return [obj] if (group, resource) == (info.group, info.resource) else []

        used = await compute_used(quota, objects, time.time(), generic)
        return {k: _amount(v) for k, v in used.items() if _amount(v) > 0}

    async def _charge(self, a: Attributes, name: str) -> None:
        info = self.quotas_info
        try:
            current = await self.registry.get(info, a.namespace, name)
        except status.APIError as e:
            if e.code == 404:
                return
            raise
        if (a.info.group, a.info.resource) == ("", "pods"):
            missing = _unspecified(current, a.obj or {})
            if missing:
                raise a.forbidden(f"failed quota: {name}: must specify {missing}")
        delta = await self._usage(current, a)
        if not delta:
            return

        def check_and_charge(quota: Obj) -> Obj:
            hard = (quota.get("spec") or {}).get("hard") or {}
            st = quota.setdefault("status", {})
            used = st.get("used") or {}
            unknown = sorted(r for r in delta if r in hard and r not in used)
            if unknown:
                raise a.forbidden(f"status unknown for quota: {name}, resource: "
                                  f"{','.join(unknown)}")
            over = [r for r in delta if r in hard and
                    _amount(used[r]) + delta[r] > _amount(hard[r])]
            if over:
                raise a.forbidden(
                    f"exceeded quota: {name}, requested: "
                    f"{_pretty({r: quantity.format_quantity(delta[r], _fmt(hard[r])) for r in over})}"
                    f", used: {_pretty({r: used[r] for r in over})}"
                    f", limited: {_pretty({r: hard[r] for r in over})}")
            st["used"] = {**used, **{r: quantity.format_quantity(
                _amount(used[r]) + delta[r], _fmt(used[r])) for r in delta if r in hard}}
            return quota

        if a.dry_run:
            check_and_charge(current)
            return
        kv = await self.registry.get_kv(info, a.namespace, name)
        await self.registry.guaranteed_update(info, a.namespace, name, kv, check_and_charge,
                                              Options(), "status", manage=False)


def _fmt(q: Any) -> str:
    try:
        return quantity.parse_with_format(q)[1]
    except (ValueError, TypeError):
        return "DecimalSI"
