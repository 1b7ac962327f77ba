"""The replication controller and the replicaset controller: keep exactly
``spec.replicas`` active pods matching the selector, adopting orphans that
match and releasing owned pods that no longer do (as upstream's
pkg/controller/replicaset, which serves both kinds)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from pinnace.api import selectors
from pinnace.client import ApiError, key_of

from . import pods as podutil
from .base import (
    Context,
    Controller,
    Expectations,
    controller_ref,
    index_by_controller,
    owned_or_orphaned,
    owner_reference,
)

Obj = dict[str, Any]

BURST = 500  # at most this many creates or deletes per sync, as upstream


class ReplicaSetController(Controller):
    name = "replicaset"
    event_source = "replicaset-controller"
    kind = "ReplicaSet"
    api_version = "apps/v1"
    resource = "replicasets"
    workers = 4

    def __init__(self, ctx: Context):
        super().__init__(ctx)
        self.expectations = Expectations()
        self.owners = ctx.informers.informer(self.api_version, self.resource)
        self.pods = ctx.informers.informer("v1", "pods")
        index_by_controller(self.pods)
        self.pod_api = self.client.resource("v1", "pods")
        self.owner_api = self.client.resource(self.api_version, self.resource)

    # -- selectors ---------------------------------------------------------

    def selector(self, owner: Obj) -> selectors.LabelSelector:
        return selectors.label_selector_from_dict((owner.get("spec") or {}).get("selector"))

    # -- event handlers ----------------------------------------------------

    def setup(self) -> None:
        self.owners.add_handler(self.enqueue, lambda old, new: self.enqueue(new),
                                self._owner_deleted)
        self.pods.add_handler(self._pod_added, self._pod_updated, self._pod_deleted)

    def _owner_deleted(self, owner: Obj) -> None:
        self.expectations.forget(key_of(owner))
        self.enqueue(owner)

    def _owner_key(self, pod: Obj) -> str | None:
        ref = controller_ref(pod)
        if ref is None or ref.get("kind") != self.kind:
            return None
        key = f"{pod['metadata']['namespace']}/{ref['name']}"
        owner = self.owners.get(key)
        if owner is None or owner["metadata"].get("uid") != ref.get("uid"):
            return None
        return key

    def _matching_owners(self, pod: Obj) -> list[str]:
        labels = pod["metadata"].get("labels") or {}
        return [key_of(o) for o in self.owners.objects(pod["metadata"]["namespace"])
                if self.selector(o).matches(labels)]

    def _pod_added(self, pod: Obj) -> None:
        if pod["metadata"].get("deletionTimestamp"):
            self._pod_deleted(pod)
            return
        key = self._owner_key(pod)
        if key is not None:
            self.expectations.observed_add(key)
            self.queue.add(key)
        elif controller_ref(pod) is None:
            for k in self._matching_owners(pod):
                self.queue.add(k)

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        for pod in (old, new):
            key = self._owner_key(pod)
            if key is not None:
                self.queue.add(key)
            elif controller_ref(pod) is None:
                for k in self._matching_owners(pod):
                    self.queue.add(k)
        if new["metadata"].get("deletionTimestamp") and \
                not old["metadata"].get("deletionTimestamp"):
            key = self._owner_key(new)
            if key is not None:
                self.expectations.observed_delete(key)

    def _pod_deleted(self, pod: Obj) -> None:
        key = self._owner_key(pod)
        if key is not None:
            self.expectations.observed_delete(key)
            self.queue.add(key)

    # -- reconcile -------------------------------------------------------------

    async def sync(self, key: str) -> None:
        owner = self.owners.get(key)
        if owner is None:
            self.expectations.forget(key)
            return
        ns = owner["metadata"]["namespace"]
        uid = owner["metadata"]["uid"]
        sel = self.selector(owner)
        deleting = bool(owner["metadata"].get("deletionTimestamp"))
        owned: list[Obj] = []
        for pod in owned_or_orphaned(self.pods, ns, uid):
            ref = controller_ref(pod)
            labels = pod["metadata"].get("labels") or {}
            if ref is not None and ref.get("uid") == uid:
                if sel.matches(labels):
                    owned.append(pod)
                elif not deleting:
                    await self._release(pod, uid)
            elif ref is None and not deleting and sel.matches(labels) and \
                    not pod["metadata"].get("deletionTimestamp"):
                if await self._adopt(owner, pod):
                    owned.append(pod)
        active = [p for p in owned if podutil.is_active(p)]
        if not deleting and self.expectations.satisfied(key):
            await self._manage(key, owner, active)
        await self._update_status(owner, owned, active)

    async def _manage(self, key: str, owner: Obj, active: list[Obj]) -> None:
        want = int((owner.get("spec") or {}).get("replicas", 1))
        diff = len(active) - want
        if diff < 0:
            n = min(-diff, BURST)
            self.expectations.expect(key, adds=n)
            template = (owner.get("spec") or {}).get("template") or {}
            ref = owner_reference(owner)
            # Slow start: batches of 1, 2, 4, ... so a failing template costs one error.
            created = 0
            batch = 1
            while created < n:
                size = min(batch, n - created)
                results = await asyncio.gather(*(self._create(owner, template, ref)
                                                 for _ in range(size)), return_exceptions=True)
                ok = sum(1 for r in results if r is True)
                created += size
                if ok < size:
                    # The remaining creates will not be observed: lower the expectation.
                    for _ in range(n - created + (size - ok)):
                        self.expectations.observed_add(key)
                    err = next(r for r in results if r is not True)
                    raise RuntimeError(f"creating pods failed: {err}")
                batch *= 2
        elif diff > 0:
            victims = podutil.deletion_order(active)[:min(diff, BURST)]
            self.expectations.expect(key, deletes=len(victims))
            for pod in victims:
                try:
                    await self.pod_api.delete(pod["metadata"]["name"], pod["metadata"]["namespace"])
                    self.recorder.event(owner, "Normal", "SuccessfulDelete",
                                            f"Deleted pod: {pod['metadata']['name']}")
                except ApiError as e:
                    self.expectations.observed_delete(key)
                    if not e.not_found:
                        raise

    async def _create(self, owner: Obj, template: Obj, ref: Obj) -> bool:
        body = podutil.pod_from_template(template, owner, ref)
        try:
            made = await self.pod_api.create(body, owner["metadata"]["namespace"])
        except ApiError as e:
            self.recorder.event(owner, "Warning", "FailedCreate",
                                    f"Error creating: {e.status.get('message', e)}")
            raise
        self.recorder.event(owner, "Normal", "SuccessfulCreate",
                                f"Created pod: {made['metadata']['name']}")
        return True

    async def _adopt(self, owner: Obj, pod: Obj) -> bool:
        refs = list(pod["metadata"].get("ownerReferences") or []) + [owner_reference(owner)]
        try:
            await self.pod_api.patch(pod["metadata"]["name"], {"metadata": {
                "ownerReferences": refs, "resourceVersion": pod["metadata"]["resourceVersion"]}},
                pod["metadata"]["namespace"])
            return True
        except ApiError as e:
            if e.not_found or e.conflict:
                return False
            raise

    async def _release(self, pod: Obj, uid: str) -> None:
        refs = [r for r in pod["metadata"].get("ownerReferences") or [] if r.get("uid") != uid]
        try:
            await self.pod_api.patch(pod["metadata"]["name"], {"metadata": {
                "ownerReferences": refs or None,
                "resourceVersion": pod["metadata"]["resourceVersion"]}},
                pod["metadata"]["namespace"])
        except ApiError as e:
            if not (e.not_found or e.conflict):
                raise

    async def _update_status(self, owner: Obj, owned: list[Obj], active: list[Obj]) -> None:
        spec = owner.get("spec") or {}
        template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        min_ready = int(spec.get("minReadySeconds", 0))
        now = time.time()
        status: Obj = {
            "replicas": len(active),
            "fullyLabeledReplicas": sum(
                1 for p in active
                if all((p["metadata"].get("labels") or {}).get(k) == v
                       for k, v in template_labels.items())),
            "readyReplicas": sum(1 for p in active if podutil.is_ready(p)),
            "availableReplicas": sum(1 for p in active if podutil.is_available(p, min_ready,
                                                                                 now)),
            "observedGeneration": owner["metadata"].get("generation", 1),
        }
        old = owner.get("status") or {}
        current = {k: old.get(k, 0) for k in status}
        if current == status:
            return
        patch = {"status": status}
        try:
            await self.owner_api.patch(owner["metadata"]["name"], patch,
                                       owner["metadata"]["namespace"], subresource="status")
        except ApiError as e:
            if not e.not_found:
                raise
        if min_ready and status["availableReplicas"] < status["readyReplicas"]:
            self.enqueue_after(owner, min_ready)


class ReplicationControllerController(ReplicaSetController):
    name = "replicationcontroller"
    event_source = "replication-controller"
    kind = "ReplicationController"
    api_version = "v1"
    resource = "replicationcontrollers"

    def selector(self, owner: Obj) -> selectors.LabelSelector:
        sel = (owner.get("spec") or {}).get("selector") or {}
        return selectors.label_selector_from_dict(sel, plain_map=True)


CONTROLLERS = {"replicationcontroller": ReplicationControllerController,
               "replicaset": ReplicaSetController}
