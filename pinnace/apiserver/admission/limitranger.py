"""LimitRanger: a namespace's LimitRanges fill in what containers leave out
and refuse pods and claims outside their bounds, as upstream's
plugin/pkg/admission/limitranger does.

Mutating: a new pod's containers get the Container items' default limits and
defaultRequest requests they do not state, and the pod says so in its
``kubernetes.io/limit-ranger`` annotation. Validating: min, max and
maxLimitRequestRatio per Container and per Pod (the pod's effective totals),
and min and max storage per PersistentVolumeClaim, with upstream's messages
(a kubectl user reads them as they are). Pod updates are left alone: their
containers' resources cannot change there.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from pinnace.api import quantity
from pinnace.controllers.resourcequota import pod_resources

from . import CREATE, UPDATE, Attributes

Obj = dict[str, Any]
ANNOTATION = "kubernetes.io/limit-ranger"


def _value(q: Any) -> Fraction:
    return quantity.parse_with_format(q)[0]


def _text(q: Any) -> str:
    return quantity.canonical(q)


def _min(kind: str, name: str, enforced: Any, request: Obj, limit: Obj) -> str | None:
    if name not in request:
        return f"minimum {name} usage per {kind} is {_text(enforced)}.  No request is specified"
    if _value(request[name]) < _value(enforced):
        return (f"minimum {name} usage per {kind} is {_text(enforced)}, but request is "
                f"{_text(request[name])}")
    if name in limit and _value(limit[name]) < _value(enforced):
        return (f"minimum {name} usage per {kind} is {_text(enforced)}, but limit is "
                f"{_text(limit[name])}")
    return None


def _max(kind: str, name: str, enforced: Any, request: Obj, limit: Obj) -> str | None:
    if name not in limit:
        return f"maximum {name} usage per {kind} is {_text(enforced)}.  No limit is specified"
    if _value(limit[name]) > _value(enforced):
        return (f"maximum {name} usage per {kind} is {_text(enforced)}, but limit is "
                f"{_text(limit[name])}")
    if name in request and _value(request[name]) > _value(enforced):
        return (f"maximum {name} usage per {kind} is {_text(enforced)}, but request is "
                f"{_text(request[name])}")
    return None


def _ratio(kind: str, name: str, enforced: Any, request: Obj, limit: Obj) -> str | None:
    head = f"{name} max limit to request ratio per {kind} is {_text(enforced)}"
    req = _value(request[name]) if name in request else Fraction(0)
    lim = _value(limit[name]) if name in limit else Fraction(0)
    if req == 0:
        return f"{head}, but no request is specified or request is 0"
    if lim == 0:
        return f"{head}, but no limit is specified or limit is 0"
    if lim / req > _value(enforced):
        return f"{head}, but provided ratio is {float(lim / req):f}"
    return None


def _max_request(kind: str, name: str, enforced: Any, request: Obj, limit: Obj) -> str | None:
    """A claim's maximum: on its request, which is all a claim states."""
    if name not in request:
        return f"maximum {name} usage per {kind} is {_text(enforced)}.  No request is specified"
    if _value(request[name]) > _value(enforced):
        return (f"maximum {name} usage per {kind} is {_text(enforced)}, but request is "
                f"{_text(request[name])}")
    return None


def _bounds(item: Obj, kind: str, request: Obj, limit: Obj) -> list[str]:
    errs = []
    checks = (("min", _min), ("max", _max_request)) if kind == "PersistentVolumeClaim" else \
        (("min", _min), ("max", _max), ("maxLimitRequestRatio", _ratio))
    for key, check in checks:
        for name, enforced in sorted((item.get(key) or {}).items()):
            err = check(kind, name, enforced, request, limit)
            if err:
                errs.append(err)
    return errs


def _containers(pod: Obj) -> list[tuple[str, Obj]]:
    spec = pod.get("spec") or {}
    return [("init container", c) for c in spec.get("initContainers") or []] + \
        [("container", c) for c in spec.get("containers") or []]


class LimitRanger:
    resources = frozenset({("", "pods"), ("", "persistentvolumeclaims")})

    def __init__(self) -> None:
        # namespace -> name -> the LimitRange's limits
        self._ranges: dict[str, dict[str, list[Obj]]] = {}

    def event(self, type_: str, lr: Obj) -> None:
        meta = lr["metadata"]
        ranges = self._ranges.setdefault(meta.get("namespace") or "", {})
        if type_ == "DELETED":
            ranges.pop(meta["name"], None)
        else:
            ranges[meta["name"]] = [i for i in (lr.get("spec") or {}).get("limits") or []
                                    if isinstance(i, dict)]

    def _items(self, namespace: str, type_: str) -> list[Obj]:
        return [item for _, items in sorted((self._ranges.get(namespace) or {}).items())
                for item in items if item.get("type") == type_]

    def _applies(self, a: Attributes, resource: str) -> bool:
        return (a.info.group, a.info.resource) == ("", resource) and not a.subresource and \
            a.obj is not None and bool(self._ranges.get(a.namespace))

    async def mutate(self, a: Attributes) -> None:
        if a.operation != CREATE or not self._applies(a, "pods"):
            return
        pod = a.obj or {}
        notes: list[str] = []
        for item in self._items(a.namespace, "Container"):
            for where, c in _containers(pod):
                resources = c.setdefault("resources", {})
                for key, default_key, word in (("requests", "defaultRequest", "request"),
                                               ("limits", "default", "limit")):
                    defaults = item.get(default_key) or {}
                    have = resources.setdefault(key, {})
                    added = sorted(k for k in defaults if k not in have)
                    for k in added:
                        have[k] = defaults[k]
                    if not have:
                        del resources[key]
                    if added:
                        notes.append(f"{', '.join(added)} {word} for {where} "
                                     f"{c.get('name') or ''}")
        if notes:
            annotations = pod.setdefault("metadata", {}).setdefault("annotations", {})
            annotations[ANNOTATION] = "LimitRanger plugin set: " + "; ".join(notes)

    async def validate(self, a: Attributes) -> None:
        if a.operation not in (CREATE, UPDATE):
            return
        errs: list[str] = []
        if a.operation == CREATE and self._applies(a, "pods"):
            pod = a.obj or {}
            for item in self._items(a.namespace, "Container"):
                for _, c in _containers(pod):
                    res = c.get("resources") or {}
                    errs += _bounds(item, "Container", res.get("requests") or {},
                                    res.get("limits") or {})
            pod_items = self._items(a.namespace, "Pod")
            if pod_items:
                request = {k: quantity.format_quantity(v, f)
                           for k, (v, f) in pod_resources(pod, "requests").items()}
                limit = {k: quantity.format_quantity(v, f)
                         for k, (v, f) in pod_resources(pod, "limits").items()}
                for item in pod_items:
                    errs += _bounds(item, "Pod", request, limit)
        elif self._applies(a, "persistentvolumeclaims"):
            requests = (((a.obj or {}).get("spec") or {}).get("resources") or {}) \
                .get("requests") or {}
            for item in self._items(a.namespace, "PersistentVolumeClaim"):
                errs += _bounds(item, "PersistentVolumeClaim", requests, {})
        if errs:
            raise a.forbidden(errs[0] if len(errs) == 1 else f"[{', '.join(errs)}]")
