"""The statefulset controller: pods with stable names ``<set>-<ordinal>`` and
their own PersistentVolumeClaims ``<claim>-<set>-<ordinal>``, created in
order (OrderedReady: each waits for the one before to be Running and Ready,
scale-down goes in reverse) or all at once (Parallel); template changes are
recorded as ControllerRevisions and rolled out highest ordinal first down to
the partition (RollingUpdate) or left to the user (OnDelete), as upstream's
pkg/controller/statefulset."""

from __future__ import annotations

import copy
import re
import time
from typing import Any

from pinnace.api import selectors
from pinnace.client import ApiError

from . import history
from . import pods as podutil
from .base import (
    CONTROLLER_INDEX,
    Context,
    Controller,
    controller_ref,
    index_by_controller,
    owner_reference,
)

Obj = dict[str, Any]

POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"
REVISION_LABEL = history.CONTROLLER_REVISION_HASH_LABEL


def ordinal_of(set_name: str, pod: Obj) -> int | None:
    m = re.fullmatch(re.escape(set_name) + r"-(\d+)", pod["metadata"]["name"])
    return int(m.group(1)) if m else None


def claim_name(claim: Obj, set_name: str, ordinal: int) -> str:
    return f"{claim['metadata']['name']}-{set_name}-{ordinal}"


def _spec(obj: Obj) -> Obj:
    return obj.get("spec") or {}


def _replicas(s: Obj) -> int:
    r = _spec(s).get("replicas")
    return 1 if r is None else int(r)


def _start_ordinal(s: Obj) -> int:
    return int((_spec(s).get("ordinals") or {}).get("start") or 0)


def _running_ready(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") == "Running" and podutil.is_ready(pod)


def _terminating(pod: Obj) -> bool:
    return bool(pod["metadata"].get("deletionTimestamp"))


def _finished(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def _revision(pod: Obj) -> str:
    return (pod["metadata"].get("labels") or {}).get(REVISION_LABEL, "")


def _max_unavailable(strategy: Obj, replicas: int) -> int:
    raw = (strategy.get("rollingUpdate") or {}).get("maxUnavailable", 1)
    if isinstance(raw, str) and raw.endswith("%"):
        return max(1, -(-int(raw[:-1]) * replicas // 100))
    return max(1, int(raw or 1))


class StatefulSetController(Controller):
    name = "statefulset"
    event_source = "statefulset-controller"
    workers = 4

    def __init__(self, ctx: Context):
        super().__init__(ctx)
        self.sets = ctx.informers.informer("apps/v1", "statefulsets")
        self.pods = ctx.informers.informer("v1", "pods")
        index_by_controller(self.pods)
        self.revs = ctx.informers.informer("apps/v1", "controllerrevisions")
        self.pvcs = ctx.informers.informer("v1", "persistentvolumeclaims")
        self.set_api = self.client.resource("apps/v1", "statefulsets")
        self.pod_api = self.client.resource("v1", "pods")
        self.pvc_api = self.client.resource("v1", "persistentvolumeclaims")
        self.history = history.Revisions(self.client)

    def setup(self) -> None:
        self.sets.add_handler(self.enqueue, lambda old, new: self.enqueue(new), self.enqueue)
        self.pods.add_handler(self._pod_changed, lambda old, new: self._pod_changed(new),
                              self._pod_changed)
        self.revs.add_handler(self._pod_changed, lambda old, new: self._pod_changed(new), None)

    def _pod_changed(self, obj: Obj) -> None:
        ref = controller_ref(obj)
        if ref is not None and ref.get("kind") == "StatefulSet":
            self.queue.add(f"{obj['metadata']['namespace']}/{ref['name']}")

    # -- sync ----------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        cached = self.sets.get(key)
        if cached is None:
            return
        s = copy.deepcopy(cached)
        ns = s["metadata"]["namespace"]
        uid = s["metadata"]["uid"]
        sel = selectors.label_selector_from_dict(_spec(s).get("selector"))
        owned = self.pods.by_index(CONTROLLER_INDEX, uid)
        owned += await self._adopt(s, sel, ns)
        revisions = history.owned_revisions(self.revs.objects(ns), s)
        current_rev, update_rev, collisions = await self._revisions(s, revisions)
        if not s["metadata"].get("deletionTimestamp"):
            await self._reconcile(s, owned, current_rev, update_rev)
            owned = self.pods.by_index(CONTROLLER_INDEX, uid)
        await self._update_status(s, owned, current_rev, update_rev, collisions)
        live = {current_rev["metadata"]["name"], update_rev["metadata"]["name"]} | \
            {_revision(p) for p in owned}
        await self.history.trim(history.owned_revisions(self.revs.objects(ns), s),
                                int(_spec(s).get("revisionHistoryLimit", 10)), live)

    async def _adopt(self, s: Obj, sel: selectors.LabelSelector, ns: str) -> list[Obj]:
        if s["metadata"].get("deletionTimestamp"):
            return []
        out = []
        for pod in self.pods.by_index(CONTROLLER_INDEX, "orphan/" + ns):
            if controller_ref(pod) is None and not _terminating(pod) and \
                    sel.matches(pod["metadata"].get("labels") or {}) and \
                    ordinal_of(s["metadata"]["name"], pod) is not None:
                refs = list(pod["metadata"].get("ownerReferences") or []) + [owner_reference(s)]
                try:
                    out.append(await self.pod_api.patch(pod["metadata"]["name"], {"metadata": {
                        "ownerReferences": refs,
                        "resourceVersion": pod["metadata"]["resourceVersion"]}}, ns))
                except ApiError as e:
                    if not (e.not_found or e.conflict):
                        raise
        return out

    async def _revisions(self, s: Obj, revisions: list[Obj]) -> tuple[Obj, Obj, int]:
        """(current, update, collisionCount): the update revision is the set's
        template now, reusing (and renumbering) an equal older revision."""
        status = s.get("status") or {}
        collisions = int(status.get("collisionCount") or 0)
        revisions = history.sort_revisions(revisions)
        wanted = history.new_revision(s, history.next_revision(revisions), collisions,
                                      label_is_name=True)
        equal = [r for r in revisions if history.equal_revision(r, wanted)]
        if equal and equal[-1] is revisions[-1]:
            update = equal[-1]
        elif equal:
            update = await self.history.renumber(equal[-1], int(wanted["revision"]))
        else:
            update, collisions = await self.history.create(s, int(wanted["revision"]),
                                                           collisions, label_is_name=True)
        current = next((r for r in revisions
                        if r["metadata"]["name"] == status.get("currentRevision")), update)
        return current, update, collisions

    def _new_pod(self, s: Obj, rev: Obj, ordinal: int) -> Obj:
        name = s["metadata"]["name"]
        template = history.template_from_revision(rev)
        pod = podutil.pod_from_template(template, s, owner_reference(s),
                                        name=f"{name}-{ordinal}")
        labels = pod["metadata"]["labels"]
        labels[POD_NAME_LABEL] = f"{name}-{ordinal}"
        labels[POD_INDEX_LABEL] = str(ordinal)
        labels[REVISION_LABEL] = rev["metadata"]["name"]
        spec = pod["spec"]
        spec["hostname"] = f"{name}-{ordinal}"
        if _spec(s).get("serviceName"):
            spec["subdomain"] = _spec(s)["serviceName"]
        claims = _spec(s).get("volumeClaimTemplates") or []
        if claims:
            names = {c["metadata"]["name"] for c in claims}
            volumes = [v for v in spec.get("volumes") or [] if v.get("name") not in names]
            for c in claims:
                volumes.append({"name": c["metadata"]["name"], "persistentVolumeClaim": {
                    "claimName": claim_name(c, name, ordinal)}})
            spec["volumes"] = volumes
        return pod

    async def _ensure_claims(self, s: Obj, ordinal: int) -> None:
        name = s["metadata"]["name"]
        ns = s["metadata"]["namespace"]
        policy = _spec(s).get("persistentVolumeClaimRetentionPolicy") or {}
        match = (_spec(s).get("selector") or {}).get("matchLabels") or {}
        for c in _spec(s).get("volumeClaimTemplates") or []:
            cname = claim_name(c, name, ordinal)
            if self.pvcs.get(f"{ns}/{cname}") is not None:
                continue
            meta = copy.deepcopy(c.get("metadata") or {})
            labels = dict(meta.get("labels") or {})
            labels.update(match)
            body: Obj = {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                         "metadata": {"name": cname, "namespace": ns, "labels": labels},
                         "spec": copy.deepcopy(c.get("spec") or {})}
            if meta.get("annotations"):
                body["metadata"]["annotations"] = meta["annotations"]
            if policy.get("whenDeleted") == "Delete":
                body["metadata"]["ownerReferences"] = [owner_reference(s, block=True) |
                                                       {"controller": True}]
            try:
                await self.pvc_api.create(body, ns)
            except ApiError as e:
                if e.status.get("reason") == "AlreadyExists":
                    continue
                self.recorder.event(s, "Warning", "FailedCreate",
                                    f"create Claim {cname} for Pod {name}-{ordinal} in "
                                    f"StatefulSet {name} failed error: "
                                    f"{e.status.get('message', e)}")
                raise
            self.recorder.event(s, "Normal", "SuccessfulCreate",
                                f"create Claim {cname} Pod {name}-{ordinal} in StatefulSet "
                                f"{name} success")

    async def _create_pod(self, s: Obj, pod: Obj, ordinal: int) -> None:
        await self._ensure_claims(s, ordinal)
        set_name = s["metadata"]["name"]
        try:
            await self.pod_api.create(pod, s["metadata"]["namespace"])
        except ApiError as e:
            if e.status.get("reason") == "AlreadyExists":
                return
            self.recorder.event(s, "Warning", "FailedCreate",
                                f"create Pod {pod['metadata']['name']} in StatefulSet "
                                f"{set_name} failed error: {e.status.get('message', e)}")
            raise
        self.recorder.event(s, "Normal", "SuccessfulCreate",
                            f"create Pod {pod['metadata']['name']} in StatefulSet {set_name} "
                            "successful")

    async def _delete_pod(self, s: Obj, pod: Obj, scaled_down: bool = False) -> None:
        set_name = s["metadata"]["name"]
        try:
            await self.pod_api.delete(pod["metadata"]["name"], pod["metadata"]["namespace"],
                                      preconditions={"uid": pod["metadata"]["uid"]})
        except ApiError as e:
            if e.not_found:
                return
            self.recorder.event(s, "Warning", "FailedDelete",
                                f"delete Pod {pod['metadata']['name']} in StatefulSet "
                                f"{set_name} failed error: {e.status.get('message', e)}")
            raise
        self.recorder.event(s, "Normal", "SuccessfulDelete",
                            f"delete Pod {pod['metadata']['name']} in StatefulSet {set_name} "
                            "successful")
        policy = _spec(s).get("persistentVolumeClaimRetentionPolicy") or {}
        if scaled_down and policy.get("whenScaled") == "Delete":
            ordinal = ordinal_of(set_name, pod)
            for c in _spec(s).get("volumeClaimTemplates") or []:
                try:
                    await self.pvc_api.delete(claim_name(c, set_name, int(ordinal or 0)),
                                              s["metadata"]["namespace"])
                except ApiError as e:
                    if not e.not_found:
                        raise

    async def _reconcile(self, s: Obj, owned: list[Obj], current_rev: Obj, update_rev: Obj
                         ) -> None:
        name = s["metadata"]["name"]
        spec = _spec(s)
        ordered = spec.get("podManagementPolicy", "OrderedReady") != "Parallel"
        start = _start_ordinal(s)
        end = start + _replicas(s)
        strategy = spec.get("updateStrategy") or {}
        rolling = strategy.get("type", "RollingUpdate") == "RollingUpdate"
        partition = int((strategy.get("rollingUpdate") or {}).get("partition") or 0)
        min_ready = int(spec.get("minReadySeconds") or 0)
        now = time.time()
        by_ordinal: dict[int, Obj] = {}
        condemned: list[Obj] = []
        for owned_pod in owned:
            o = ordinal_of(name, owned_pod)
            if o is None:
                continue
            if start <= o < end:
                by_ordinal[o] = owned_pod
            else:
                condemned.append(owned_pod)
        condemned.sort(key=lambda p: -(ordinal_of(name, p) or 0))

        def revision_for(o: int) -> Obj:
            # Below the partition (or within what is already current) pods keep the old template.
            if rolling and current_rev is not update_rev and o < start + partition:
                return current_rev
            return update_rev

        waiting = False
        for o in range(start, end):
            pod = by_ordinal.get(o)
            if pod is not None and _finished(pod) and not _terminating(pod):
                await self._delete_pod(s, pod)
                if ordered:
                    return
                continue
            if pod is None:
                await self._create_pod(s, self._new_pod(s, revision_for(o), o), o)
                if ordered:
                    return
                continue
            if ordered and (_terminating(pod) or not _running_ready(pod) or
                            not podutil.is_available(pod, min_ready, now)):
                if min_ready and _running_ready(pod):
                    self.enqueue_after(s, min_ready)
                waiting = True
                break
        if waiting:
            return
        for victim in condemned:
            if _terminating(victim):
                if ordered:
                    return
                continue
            if ordered and any(not _running_ready(p) for p in by_ordinal.values()):
                return
            await self._delete_pod(s, victim, scaled_down=True)
            if ordered:
                return
        if not rolling:
            return
        # Highest ordinal first, down to the partition, one unhealthy pod at a time.
        max_unavailable = 1 if ordered else _max_unavailable(strategy, _replicas(s))
        unavailable = sum(1 for p in by_ordinal.values()
                          if not podutil.is_available(p, min_ready, now) or _terminating(p))
        for o in range(end - 1, start + partition - 1, -1):
            pod = by_ordinal.get(o)
            if pod is None:
                return
            if _revision(pod) != update_rev["metadata"]["name"] and not _terminating(pod):
                if unavailable >= max_unavailable and podutil.is_available(pod, min_ready, now):
                    return
                await self._delete_pod(s, pod)
                unavailable += 1
                if unavailable >= max_unavailable:
                    return
                continue
            if not _running_ready(pod) or _terminating(pod):
                return

    async def _update_status(self, s: Obj, owned: list[Obj], current_rev: Obj,
                             update_rev: Obj, collisions: int) -> None:
        name = s["metadata"]["name"]
        min_ready = int(_spec(s).get("minReadySeconds") or 0)
        now = time.time()
        active = [p for p in owned if ordinal_of(name, p) is not None and not _terminating(p)
                  and not _finished(p)]
        cur, upd = current_rev["metadata"]["name"], update_rev["metadata"]["name"]
        status: Obj = {
            "observedGeneration": s["metadata"].get("generation", 1),
            "replicas": len(active),
            "readyReplicas": sum(1 for p in active if _running_ready(p)),
            "availableReplicas": sum(1 for p in active
                                     if podutil.is_available(p, min_ready, now)),
            "currentReplicas": sum(1 for p in active if _revision(p) == cur),
            "updatedReplicas": sum(1 for p in active if _revision(p) == upd),
            "currentRevision": cur,
            "updateRevision": upd,
            "collisionCount": collisions,
        }
        rolling = (_spec(s).get("updateStrategy") or {}).get("type", "RollingUpdate") == \
            "RollingUpdate"
        if status["updatedReplicas"] == status["replicas"] == status["readyReplicas"] == \
                _replicas(s) and (rolling or status["updatedReplicas"] == status["replicas"]):
            status["currentRevision"] = upd
            status["currentReplicas"] = status["updatedReplicas"]
        old = s.get("status") or {}
        merged = dict(old)
        merged.update(status)
        if all(old.get(k) == v or (not old.get(k) and not v) for k, v in status.items()):
            return
        s["status"] = merged
        try:
            await self.set_api.replace_status(s, s["metadata"]["namespace"])
        except ApiError as e:
            if not e.not_found:
                raise


CONTROLLERS = {"statefulset": StatefulSetController}
