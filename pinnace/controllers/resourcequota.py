"""ResourceQuota status (upstream's resourcequota controller): for every
quota, ``status.hard`` mirrors ``spec.hard`` and ``status.used`` says how
much of each listed resource the namespace holds now: object counts
("pods", "services", "count/deployments.apps", ...) and compute sums
("requests.cpu", "limits.memory", "cpu", ...) over pods that still run.
Quota scopes (Terminating, NotTerminating, BestEffort, NotBestEffort,
PriorityClass, CrossNamespacePodAffinity) narrow which pods count.

Usage is recomputed when a quota or a counted object changes and, as a net
for anything missed, on a full resync every ``resource_quota_sync_period``
seconds. Enforcing the quota on create is the API server's admission, not
this controller's job.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Awaitable, Callable
from fractions import Fraction
from typing import Any

from pinnace.api import quantity
from pinnace.client import ApiError, ResourceClient

from .base import Context, Controller
from .pods import parse_time

Obj = dict[str, Any]
Lister = Callable[[str, str], Awaitable[list[Obj]]]  # (api_version, resource) -> objects

# Core resources with a dedicated informer: quota name -> (apiVersion, resource).
INFORMED = {
    "pods": ("v1", "pods"),
    "services": ("v1", "services"),
    "configmaps": ("v1", "configmaps"),
    "secrets": ("v1", "secrets"),
    "replicationcontrollers": ("v1", "replicationcontrollers"),
    "resourcequotas": ("v1", "resourcequotas"),
    "persistentvolumeclaims": ("v1", "persistentvolumeclaims"),
}
# Those only counted: their informers need the objects' metadata only.
COUNTED_ONLY = {"configmaps", "secrets", "replicationcontrollers"}
POD_SCOPES = {"Terminating", "NotTerminating", "BestEffort", "NotBestEffort", "PriorityClass",
              "CrossNamespacePodAffinity"}
BARE_COMPUTE = {"cpu", "memory", "ephemeral-storage"}
STORAGE_CLASS_SUFFIX = ".storageclass.storage.k8s.io/"


# -- pods ---------------------------------------------------------------------------


def pod_counts(pod: Obj, now: float) -> bool:
    """Whether a pod is charged to quota: not finished, and not past its
    deletion grace period (upstream's QuotaV1Pod)."""
    if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        return False
    meta = pod["metadata"]
    if meta.get("deletionTimestamp") and meta.get("deletionGracePeriodSeconds") is not None:
        if parse_time(meta["deletionTimestamp"]) + int(meta["deletionGracePeriodSeconds"]) < now:
            return False
    return True


Amounts = dict[str, tuple[Fraction, str]]  # resource -> (value, quantity format)


def _add(total: Amounts, name: str, q: Any) -> None:
    v, fmt = quantity.parse_with_format(q)
    if name in total:
        total[name] = (total[name][0] + v, total[name][1])
    else:
        total[name] = (v, fmt)


def _max_into(total: Amounts, other: Amounts) -> None:
    for name, (v, fmt) in other.items():
        if name not in total or total[name][0] < v:
            total[name] = (v, total.get(name, (v, fmt))[1])


def pod_resources(pod: Obj, kind: str) -> Amounts:
    """Effective pod requests or limits (``kind``): the larger of the
    containers' sum (with sidecars) and any one init container's need, plus
    overhead — upstream's resourcehelper.PodRequests/PodLimits."""
    spec = pod.get("spec") or {}
    total: Amounts = {}
    for c in spec.get("containers") or []:
        for name, q in ((c.get("resources") or {}).get(kind) or {}).items():
            _add(total, name, q)
    sidecars: Amounts = {}
    init_peak: Amounts = {}
    for c in spec.get("initContainers") or []:
        own = (c.get("resources") or {}).get(kind) or {}
        if c.get("restartPolicy") == "Always":
            for name, q in own.items():
                _add(total, name, q)
                _add(sidecars, name, q)
            need = dict(sidecars)
        else:
            need = dict(sidecars)
            for name, q in own.items():
                _add(need, name, q)
        _max_into(init_peak, need)
    _max_into(total, init_peak)
    for name, q in (spec.get("overhead") or {}).items():
        if kind == "requests" or name in total:
            _add(total, name, q)
    return total


def is_best_effort(pod: Obj) -> bool:
    qos = (pod.get("status") or {}).get("qosClass")
    if qos:
        return bool(qos == "BestEffort")
    spec = pod.get("spec") or {}
    for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        res = c.get("resources") or {}
        if res.get("requests") or res.get("limits"):
            return False
    return True


def _cross_namespace_affinity(pod: Obj) -> bool:
    affinity = (pod.get("spec") or {}).get("affinity") or {}
    for kind in ("podAffinity", "podAntiAffinity"):
        a = affinity.get(kind) or {}
        terms = list(a.get("requiredDuringSchedulingIgnoredDuringExecution") or [])
        terms += [t.get("podAffinityTerm") or {}
                  for t in a.get("preferredDuringSchedulingIgnoredDuringExecution") or []]
        if any(t.get("namespaces") or t.get("namespaceSelector") is not None for t in terms):
            return True
    return False


def pod_matches_scope(pod: Obj, scope: str, operator: str = "Exists",
                      values: list[str] | None = None) -> bool:
    spec = pod.get("spec") or {}
    if scope == "Terminating":
        hit = spec.get("activeDeadlineSeconds") is not None and \
            int(spec["activeDeadlineSeconds"]) >= 0
    elif scope == "NotTerminating":
        hit = not pod_matches_scope(pod, "Terminating")
    elif scope == "BestEffort":
        hit = is_best_effort(pod)
    elif scope == "NotBestEffort":
        hit = not is_best_effort(pod)
    elif scope == "CrossNamespacePodAffinity":
        hit = _cross_namespace_affinity(pod)
    elif scope == "PriorityClass":
        pc = spec.get("priorityClassName") or ""
        if operator == "In":
            return pc in (values or [])
        if operator == "NotIn":
            return pc not in (values or [])
        hit = bool(pc)
    else:
        return False
    return not hit if operator == "DoesNotExist" else hit


def quota_scopes(quota: Obj) -> list[tuple[str, str, list[str]]]:
    """(scope, operator, values) for spec.scopes and spec.scopeSelector."""
    spec = quota.get("spec") or {}
    out: list[tuple[str, str, list[str]]] = [(s, "Exists", []) for s in spec.get("scopes") or []]
    for e in (spec.get("scopeSelector") or {}).get("matchExpressions") or []:
        out.append((e.get("scopeName", ""), e.get("operator", "Exists"),
                    list(e.get("values") or [])))
    return out


def is_pod_resource(name: str) -> bool:
    if name == "requests.storage":
        return False  # claimed storage: the persistentvolumeclaims' business
    return name in ("pods", "count/pods") or name in BARE_COMPUTE or \
        name.startswith(("requests.", "limits.", "hugepages-"))


# -- usage ----------------------------------------------------------------------------


def _format(amount: tuple[Fraction, str] | None) -> str:
    if amount is None:
        return "0"
    return quantity.format_quantity(amount[0], amount[1])


def _nodeports(svc: Obj) -> int:
    spec = svc.get("spec") or {}
    if spec.get("type") == "NodePort" or (spec.get("type") == "LoadBalancer" and
                                          spec.get("allocateLoadBalancerNodePorts", True)):
        return len(spec.get("ports") or [])
    return 0


def _pvc_class(pvc: Obj) -> str:
    return str((pvc.get("spec") or {}).get("storageClassName") or
               ((pvc["metadata"].get("annotations") or {})
                .get("volume.beta.kubernetes.io/storage-class") or ""))


def _pvc_request(pvc: Obj) -> Any:
    return ((pvc.get("spec") or {}).get("resources") or {}).get("requests", {}).get("storage")


def split_count(name: str) -> tuple[str, str] | None:
    """count/<resource>[.<group>] -> (resource, group)."""
    if not name.startswith("count/"):
        return None
    resource, _, group = name[len("count/"):].partition(".")
    return resource, group


async def compute_used(quota: Obj, objects: Lister, now: float,
                       generic: Lister | None = None) -> dict[str, str]:
    """status.used for ``quota``: ``objects`` lists a core resource in the
    quota's namespace; ``generic(group, resource)`` any other resource."""
    hard = (quota.get("spec") or {}).get("hard") or {}
    scopes = quota_scopes(quota)
    used: dict[str, str] = {}
    pods: list[Obj] | None = None
    sums: dict[str, Amounts] = {}

    async def counted_pods() -> list[Obj]:
        nonlocal pods
        if pods is None:
            pods = [p for p in await objects("v1", "pods")
                    if pod_counts(p, now) and all(pod_matches_scope(p, *s) for s in scopes)]
        return pods

    async def pod_sum(kind: str) -> Amounts:
        if kind not in sums:
            total: Amounts = {}
            for p in await counted_pods():
                for name, (v, fmt) in pod_resources(p, kind).items():
                    prev = total.get(name)
                    total[name] = (v + prev[0], prev[1]) if prev else (v, fmt)
            sums[kind] = total
        return sums[kind]

    for name in hard:
        if is_pod_resource(name):
            if name in ("pods", "count/pods"):
                used[name] = str(len(await counted_pods()))
            elif name.startswith("requests."):
                used[name] = _format((await pod_sum("requests")).get(name[len("requests."):]))
            elif name.startswith("limits."):
                used[name] = _format((await pod_sum("limits")).get(name[len("limits."):]))
            else:
                used[name] = _format((await pod_sum("requests")).get(name))
            continue
        if scopes:
            used[name] = "0"  # scopes select pods only; nothing else matches them
            continue
        used[name] = await _object_usage(name, objects, generic)
    return used


async def _object_usage(name: str, objects: Lister, generic: Lister | None) -> str:
    if name in INFORMED:
        return str(len(await objects(*INFORMED[name])))
    if name == "services.nodeports":
        return str(sum(_nodeports(s) for s in await objects("v1", "services")))
    if name == "services.loadbalancers":
        return str(sum(1 for s in await objects("v1", "services")
                       if (s.get("spec") or {}).get("type") == "LoadBalancer"))
    if name == "requests.storage" or STORAGE_CLASS_SUFFIX in name:
        pvcs = await objects("v1", "persistentvolumeclaims")
        if STORAGE_CLASS_SUFFIX in name:
            cls, _, what = name.partition(STORAGE_CLASS_SUFFIX)
            pvcs = [p for p in pvcs if _pvc_class(p) == cls]
            if what == "persistentvolumeclaims":
                return str(len(pvcs))
        total: Amounts = {}
        for p in pvcs:
            if _pvc_request(p) is not None:
                _add(total, "storage", _pvc_request(p))
        return _format(total.get("storage"))
    split = split_count(name)
    if split is not None:
        resource, group = split
        if not group and resource in INFORMED:
            return str(len(await objects(*INFORMED[resource])))
        if generic is not None:
            return str(len(await generic(group, resource)))
    return "0"


# -- the controller -------------------------------------------------------------------


class ResourceQuotaController(Controller):
    name = "resourcequota"
    event_source = "resourcequota-controller"
    workers = 4

    def __init__(self, ctx: Context):
        super().__init__(ctx)
        self.resync = float(ctx.options.get("resource_quota_sync_period", 30))
        self.quotas = ctx.informers.informer("v1", "resourcequotas")
        self.informers = {res: ctx.informers.informer(av, res, metadata_only=res in COUNTED_ONLY)
                          for av, res in INFORMED.values()}
        self.quota_api = self.client.resource("v1", "resourcequotas")
        self._group_versions: dict[str, tuple[str, float]] = {}

    def setup(self) -> None:
        # Any quota change can change the "resourcequotas" count of its siblings.
        self.quotas.add_handler(self._object_changed, lambda old, new: self._object_changed(new),
                                self._object_changed)
        for res, inf in self.informers.items():
            if res == "resourcequotas":
                continue  # the quota handler above covers them
            inf.add_handler(self._object_changed, lambda old, new: self._object_changed(new),
                            self._object_changed)

    def _object_changed(self, obj: Obj) -> None:
        ns = obj["metadata"].get("namespace")
        if ns:
            for q in self.quotas.objects(ns):
                self.enqueue(q)

    async def run(self) -> None:
        await asyncio.gather(super().run(), self._resync_loop())

    async def _resync_loop(self) -> None:
        while True:
            await asyncio.sleep(self.resync)
            for q in self.quotas.objects():
                self.enqueue(q)

    async def sync(self, key: str) -> None:
        quota = self.quotas.get(key)
        if quota is None:
            return
        ns = quota["metadata"]["namespace"]

        async def objects(api_version: str, resource: str) -> list[Obj]:
            return self.informers[resource].objects(ns)

        async def generic(group: str, resource: str) -> list[Obj]:
            rc = await self._resource_client(group, resource)
            if rc is None:
                return []
            try:
                # Only counted: their metadata will do.
                return (await rc.list(ns, metadata_only=True))["items"]  # type: ignore[no-any-return]
            except ApiError as e:
                if e.not_found:
                    return []  # no such resource (yet): nothing to count
                raise

        hard = dict((quota.get("spec") or {}).get("hard") or {})
        used = await compute_used(quota, objects, time.time(), generic)
        status = quota.get("status") or {}
        if status.get("hard") == hard and status.get("used") == used:
            return
        body = copy.copy(quota)
        body["status"] = {"hard": hard, "used": used}
        try:
            await self.quota_api.replace_status(body, ns)
        except ApiError as e:
            if not e.not_found:
                raise

    async def _resource_client(self, group: str, resource: str) -> ResourceClient | None:
        """The preferred version of ``group``, found by discovery and kept for a resync."""
        if not group:
            return ResourceClient(self.client, "v1", resource, True)
        cached = self._group_versions.get(group)
        if cached is None or time.monotonic() - cached[1] > self.resync:
            try:
                doc = await self.client.request("GET", f"/apis/{group}")
            except ApiError as e:
                if e.not_found:
                    return None
                raise
            gv = (doc.get("preferredVersion") or {}).get("groupVersion") or \
                ((doc.get("versions") or [{}])[0]).get("groupVersion", "")
            cached = (gv, time.monotonic())
            self._group_versions[group] = cached
        return ResourceClient(self.client, cached[0], resource, True) if cached[0] else None


CONTROLLERS: dict[str, type[Controller]] = {"resourcequota": ResourceQuotaController}
