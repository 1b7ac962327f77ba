"""The namespace controller: when a Namespace is being deleted, delete every
namespaced object in it (every discovered resource that can be listed and
deleted, custom resources included), report progress in the Namespace's
conditions, and once nothing is left remove the "kubernetes" finalizer
through /finalize so the API server can delete the Namespace (upstream
pkg/controller/namespace/deletion)."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from pinnace.client import ApiError

from .base import Context, Controller
from .garbagecollector import APIResource, discover

Obj = dict[str, Any]

FINALIZER = "kubernetes"
CONDITION_ORDER = ["NamespaceDeletionDiscoveryFailure",
                   "NamespaceDeletionGroupVersionParsingFailure",
                   "NamespaceDeletionContentFailure", "NamespaceContentRemaining",
                   "NamespaceFinalizersRemaining"]
OK = {
    "NamespaceDeletionDiscoveryFailure": ("ResourcesDiscovered",
                                          "All resources successfully discovered"),
    "NamespaceDeletionGroupVersionParsingFailure": ("ParsedGroupVersions",
                                                    "All legacy kube types successfully parsed"),
    "NamespaceDeletionContentFailure": ("ContentDeleted",
                                        "All content successfully deleted, may be waiting on "
                                        "finalization"),
    "NamespaceContentRemaining": ("ContentRemoved", "All content successfully removed"),
    "NamespaceFinalizersRemaining": ("ContentHasNoFinalizers",
                                     "All content-preserving finalizers finished"),
}
CONCURRENCY = 50


def group_resource(res: APIResource) -> str:
    """GroupResource.String() as upstream prints it ("pods.", "deployments.apps")."""
    return f"{res.resource}.{res.group}"


def build_conditions(old: list[Obj], failures: dict[str, tuple[str, str]], now: str
                     ) -> list[Obj]:
    """The five deletion conditions: failing ones True with their reason and
    message, the rest False; lastTransitionTime kept while a status holds."""
    prev = {c.get("type"): c for c in old}
    out = [c for c in old if c.get("type") not in CONDITION_ORDER]
    for type_ in CONDITION_ORDER:
        status = "True" if type_ in failures else "False"
        reason, message = failures.get(type_) or OK[type_]
        p = prev.get(type_)
        ltt = p.get("lastTransitionTime") if p is not None and p.get("status") == status else now
        out.append({"type": type_, "status": status, "lastTransitionTime": ltt or now,
                    "reason": reason, "message": message})
    return out


class NamespaceController(Controller):
    name = "namespace"
    event_source = "namespace-controller"
    workers = 4

    def __init__(self, ctx: Context):
        super().__init__(ctx)
        self.namespaces = ctx.informers.informer("v1", "namespaces")
        self.ns_api = self.client.resource("v1", "namespaces")
        self.recheck = float(ctx.options.get("namespace_recheck_seconds", 1.0))

    def setup(self) -> None:
        self.namespaces.add_handler(self._changed, lambda old, new: self._changed(new))

    def _changed(self, ns: Obj) -> None:
        if ns["metadata"].get("deletionTimestamp"):
            self.enqueue(ns)

    async def sync(self, key: str) -> None:
        ns = self.namespaces.get(key)
        if ns is None or not ns["metadata"].get("deletionTimestamp"):
            return
        if FINALIZER not in ((ns.get("spec") or {}).get("finalizers") or []):
            return
        resources, failed_gvs = await discover(self.client)
        failures: dict[str, tuple[str, str]] = {}
        if failed_gvs:
            failures["NamespaceDeletionDiscoveryFailure"] = (
                "DiscoveryFailed", f"Discovery failed for some groups, {len(failed_gvs)} "
                f"failing: {', '.join(sorted(failed_gvs))}")
        deletable = [r for r in resources if r.namespaced and {"list", "delete"} <= r.verbs]
        errors: list[str] = []
        remaining: dict[str, int] = {}
        finalizers: dict[str, int] = {}
        results = await asyncio.gather(*(self._clear(key, r) for r in deletable),
                                       return_exceptions=True)
        for res, result in zip(deletable, results, strict=True):
            if isinstance(result, BaseException):
                errors.append(f"{group_resource(res)}: {result}")
                continue
            left, fins = result
            if left:
                remaining[group_resource(res)] = left
            for f, n in fins.items():
                finalizers[f] = finalizers.get(f, 0) + n
        if errors:
            failures["NamespaceDeletionContentFailure"] = (
                "ContentDeletionFailed", f"Failed to delete all resource types, {len(errors)} "
                f"remaining: {', '.join(sorted(errors))}")
        if remaining:
            failures["NamespaceContentRemaining"] = (
                "SomeResourcesRemain", "Some resources are remaining: " + ", ".join(
                    f"{gr} has {n} resource instances" for gr, n in sorted(remaining.items())))
        if finalizers:
            failures["NamespaceFinalizersRemaining"] = (
                "SomeFinalizersRemain",
                "Some content in the namespace has finalizers remaining: " + ", ".join(
                    f"{f} in {n} resource instances" for f, n in sorted(finalizers.items())))
        await self._update_conditions(key, ns, failures)
        if failures:
            self.enqueue_after(key, self.recheck)
            return
        await self._finalize(key)

    async def _clear(self, ns: str, res: APIResource) -> tuple[int, dict[str, int]]:
        """Delete every object of one resource in the namespace; return how many
        are still there and the finalizers they carry."""
        api = self.client.resource(res.api_version, res.resource, True)
        try:
            items = (await api.list(ns))["items"]
        except ApiError as e:
            if e.not_found or e.status.get("code") == 405:
                return 0, {}
            raise
        if not items:
            return 0, {}
        sem = asyncio.Semaphore(CONCURRENCY)

        async def delete(obj: Obj) -> None:
            meta = obj["metadata"]
            if meta.get("deletionTimestamp"):
                return
            async with sem:
                try:
                    await api.delete(meta["name"], ns, propagation_policy="Background")
                except ApiError as e:
                    if not (e.not_found or e.conflict):
                        raise
        await asyncio.gather(*(delete(o) for o in items))
        left = (await api.list(ns))["items"]
        fins: dict[str, int] = {}
        for o in left:
            for f in o["metadata"].get("finalizers") or []:
                fins[f] = fins.get(f, 0) + 1
        return len(left), fins

    async def _update_conditions(self, name: str, ns: Obj,
                                 failures: dict[str, tuple[str, str]]) -> None:
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        old = (ns.get("status") or {}).get("conditions") or []
        new = build_conditions(old, failures, now)
        if new == old:
            return
        try:
            await self.ns_api.patch(name, {"status": {"conditions": new}}, subresource="status")
        except ApiError as e:
            if not e.not_found:
                raise

    async def _finalize(self, name: str) -> None:
        try:
            live = await self.ns_api.get(name)
        except ApiError as e:
            if e.not_found:
                return
            raise
        fins = [f for f in (live.get("spec") or {}).get("finalizers") or [] if f != FINALIZER]
        live.setdefault("spec", {})["finalizers"] = fins
        try:
            await self.client.request("PUT", f"/api/v1/namespaces/{name}/finalize", body=live)
        except ApiError as e:
            if not e.not_found:
                raise


CONTROLLERS = {"namespace": NamespaceController}
