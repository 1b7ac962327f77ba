"""The deployment controller: roll a Deployment's pod template out through
ReplicaSets named ``<deployment>-<pod-template-hash>``, by RollingUpdate
(bounded by maxSurge / maxUnavailable) or Recreate, keep revision history,
scale proportionally while paused or mid-rollout, and report the Progressing
and Available conditions (as upstream's pkg/controller/deployment)."""

from __future__ import annotations

import copy
import datetime as dt
import math
from typing import Any

from pinnace.api import selectors
from pinnace.client import ApiError, key_of

from . import history
from .base import (
    CONTROLLER_INDEX,
    Context,
    Controller,
    controller_ref,
    index_by_controller,
    owner_reference,
)
from .pods import parse_time

Obj = dict[str, Any]

HASH_LABEL = "pod-template-hash"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
REVISION = history.REVISION_ANNOTATION
REVISION_HISTORY = history.REVISION_HISTORY_ANNOTATION
# Deployment annotations that are not copied onto its ReplicaSets (upstream's skip list).
_NOT_COPIED = {"kubectl.kubernetes.io/last-applied-configuration", REVISION, REVISION_HISTORY,
               DESIRED_REPLICAS, MAX_REPLICAS}
MAX_INT32 = 2147483647

# Progressing / Available reasons, as upstream's deployment util.
NEW_RS_CREATED = "NewReplicaSetCreated"
FOUND_NEW_RS = "FoundNewReplicaSet"
RS_UPDATED = "ReplicaSetUpdated"
NEW_RS_AVAILABLE = "NewReplicaSetAvailable"
TIMED_OUT = "ProgressDeadlineExceeded"
PAUSED = "DeploymentPaused"
RESUMED = "DeploymentResumed"
MIN_AVAILABLE = "MinimumReplicasAvailable"
MIN_UNAVAILABLE = "MinimumReplicasUnavailable"


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- numbers ------------------------------------------------------------------------


def scaled_value(value: Any, total: int, round_up: bool) -> int:
    """An int-or-percent against ``total`` (upstream's GetScaledValueFromIntOrPercent)."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    s = str(value)
    if s.endswith("%"):
        pct = int(s[:-1])
        return math.ceil(pct * total / 100) if round_up else (pct * total) // 100
    return int(s)


def fenceposts(d: Obj) -> tuple[int, int]:
    """(maxSurge, maxUnavailable) resolved against spec.replicas; surge rounds up,
    unavailable down, and both zero means one may be unavailable."""
    spec = d.get("spec") or {}
    ru = (spec.get("strategy") or {}).get("rollingUpdate") or {}
    want = replicas(d)
    surge = scaled_value(ru.get("maxSurge", "25%"), want, True)
    unavailable = scaled_value(ru.get("maxUnavailable", "25%"), want, False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def is_rolling(d: Obj) -> bool:
    return ((d.get("spec") or {}).get("strategy") or {}).get("type", "RollingUpdate") == \
        "RollingUpdate"


def max_surge(d: Obj) -> int:
    return fenceposts(d)[0] if is_rolling(d) else 0


def max_unavailable(d: Obj) -> int:
    if not is_rolling(d) or replicas(d) == 0:
        return 0
    return min(fenceposts(d)[1], replicas(d))


def replicas(obj: Obj) -> int:
    r = (obj.get("spec") or {}).get("replicas")
    return 1 if r is None else int(r)


def _st(obj: Obj, field: str) -> int:
    return int((obj.get("status") or {}).get(field) or 0)


def _int_annotation(obj: Obj, key: str) -> int | None:
    raw = (obj["metadata"].get("annotations") or {}).get(key)
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


def _by_creation(rss: list[Obj], newest_first: bool = False) -> list[Obj]:
    out = sorted(rss, key=lambda r: (parse_time(r["metadata"].get("creationTimestamp")),
                                     r["metadata"]["name"]))
    return out[::-1] if newest_first else out


def _active(rss: list[Obj]) -> list[Obj]:
    return [r for r in rss if replicas(r) > 0]


def _template_without_hash(template: Obj) -> Obj:
    t = copy.deepcopy(template or {})
    labels = (t.get("metadata") or {}).get("labels")
    if labels:
        labels.pop(HASH_LABEL, None)
    return t


def equal_ignore_hash(a: Obj, b: Obj) -> bool:
    return _template_without_hash(a) == _template_without_hash(b)


# -- conditions ---------------------------------------------------------------------


def get_condition(status: Obj, type_: str) -> Obj | None:
    for c in status.get("conditions") or []:
        if c.get("type") == type_:
            return c  # type: ignore[no-any-return]
    return None


def new_condition(type_: str, status: str, reason: str, message: str) -> Obj:
    now = _now()
    return {"type": type_, "status": status, "lastUpdateTime": now,
            "lastTransitionTime": now, "reason": reason, "message": message}


def set_condition(status: Obj, cond: Obj) -> None:
    current = get_condition(status, cond["type"])
    if current and current.get("status") == cond["status"] and \
            current.get("reason") == cond["reason"]:
        return
    if current and current.get("status") == cond["status"]:
        cond["lastTransitionTime"] = current.get("lastTransitionTime")
    status["conditions"] = [c for c in status.get("conditions") or []
                            if c.get("type") != cond["type"]] + [cond]


def remove_condition(status: Obj, type_: str) -> None:
    if status.get("conditions"):
        status["conditions"] = [c for c in status["conditions"] if c.get("type") != type_]


def has_progress_deadline(d: Obj) -> bool:
    pds = (d.get("spec") or {}).get("progressDeadlineSeconds")
    return pds is not None and int(pds) != MAX_INT32


def deployment_complete(d: Obj, status: Obj) -> bool:
    want = replicas(d)
    return status.get("updatedReplicas", 0) == want and status.get("replicas", 0) == want and \
        status.get("availableReplicas", 0) == want and \
        status.get("observedGeneration", 0) >= d["metadata"].get("generation", 0)


def deployment_progressing(d: Obj, status: Obj) -> bool:
    old = d.get("status") or {}
    old_old = old.get("replicas", 0) - old.get("updatedReplicas", 0)
    new_old = status.get("replicas", 0) - status.get("updatedReplicas", 0)
    return status.get("updatedReplicas", 0) > old.get("updatedReplicas", 0) or \
        new_old < old_old or status.get("readyReplicas", 0) > old.get("readyReplicas", 0) or \
        status.get("availableReplicas", 0) > old.get("availableReplicas", 0)


def deployment_timed_out(d: Obj, status: Obj, now: float) -> bool:
    if not has_progress_deadline(d):
        return False
    cond = get_condition(status, "Progressing")
    if cond is None or cond.get("reason") == NEW_RS_AVAILABLE:
        return False
    if cond.get("reason") == TIMED_OUT:
        return True
    deadline = int(d["spec"]["progressDeadlineSeconds"])
    return parse_time(cond.get("lastUpdateTime")) + deadline < now


# -- the controller -------------------------------------------------------------


class DeploymentController(Controller):
    name = "deployment"
    event_source = "deployment-controller"
    workers = 4

    def __init__(self, ctx: Context):
        super().__init__(ctx)
        self.deployments = ctx.informers.informer("apps/v1", "deployments")
        self.rss = ctx.informers.informer("apps/v1", "replicasets")
        self.pods = ctx.informers.informer("v1", "pods")
        index_by_controller(self.pods)
        self.d_api = self.client.resource("apps/v1", "deployments")
        self.rs_api = self.client.resource("apps/v1", "replicasets")

    def setup(self) -> None:
        self.deployments.add_handler(self.enqueue, lambda old, new: self.enqueue(new),
                                     self.enqueue)
        self.rss.add_handler(self._rs_changed, lambda old, new: self._rs_updated(old, new),
                             self._rs_changed)
        self.pods.add_handler(None, None, self._pod_deleted)

    # -- handlers -------------------------------------------------------------

    def _owner_key(self, rs: Obj) -> str | None:
        ref = controller_ref(rs)
        if ref is None or ref.get("kind") != "Deployment":
            return None
        return f"{rs['metadata']['namespace']}/{ref['name']}"

    def _rs_changed(self, rs: Obj) -> None:
        key = self._owner_key(rs)
        if key is not None:
            self.queue.add(key)
        elif controller_ref(rs) is None:
            labels = rs["metadata"].get("labels") or {}
            for d in self.deployments.objects(rs["metadata"]["namespace"]):
                if self._selector(d).matches(labels):
                    self.enqueue(d)

    def _rs_updated(self, old: Obj, new: Obj) -> None:
        self._rs_changed(new)
        if self._owner_key(old) != self._owner_key(new):
            self._rs_changed(old)

    def _pod_deleted(self, pod: Obj) -> None:
        # Recreate waits for the old pods to be gone before it starts the new ones.
        ref = controller_ref(pod)
        if ref is None or ref.get("kind") != "ReplicaSet":
            return
        rs = self.rss.get(f"{pod['metadata']['namespace']}/{ref['name']}")
        if rs is not None and (key := self._owner_key(rs)) is not None:
            self.queue.add(key)

    @staticmethod
    def _selector(d: Obj) -> selectors.LabelSelector:
        return selectors.label_selector_from_dict((d.get("spec") or {}).get("selector"))

    # -- sync ---------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        cached = self.deployments.get(key)
        if cached is None:
            return
        d = copy.deepcopy(cached)
        sel_spec = (d.get("spec") or {}).get("selector") or {}
        if not sel_spec.get("matchLabels") and not sel_spec.get("matchExpressions"):
            self.recorder.event(d, "Warning", "SelectingAll",
                                "This deployment is selecting all pods. "
                                "A non-empty selector is required.")
            if _st(d, "observedGeneration") < d["metadata"].get("generation", 0):
                d.setdefault("status", {})["observedGeneration"] = d["metadata"]["generation"]
                await self._update_status(d)
            return
        rs_list = await self._claim_replicasets(d)
        if d["metadata"].get("deletionTimestamp"):
            new_rs, old = await self._all_rs(d, rs_list, create=False)
            await self._sync_status(d, old + ([new_rs] if new_rs else []), new_rs)
            return
        d = await self._check_paused(d)
        if d["spec"].get("paused"):
            await self._sync_scale(d, rs_list)
            return
        if await self._is_scaling_event(d, rs_list):
            await self._sync_scale(d, rs_list)
            return
        if (d["spec"].get("strategy") or {}).get("type") == "Recreate":
            await self._rollout_recreate(d, rs_list)
        else:
            await self._rollout_rolling(d, rs_list)

    async def _claim_replicasets(self, d: Obj) -> list[Obj]:
        uid = d["metadata"]["uid"]
        sel = self._selector(d)
        out: list[Obj] = []
        for rs in self.rss.objects(d["metadata"]["namespace"]):
            ref = controller_ref(rs)
            labels = rs["metadata"].get("labels") or {}
            if ref is not None:
                if ref.get("uid") == uid:
                    out.append(rs)
                continue
            if sel.matches(labels) and not rs["metadata"].get("deletionTimestamp") and \
                    not d["metadata"].get("deletionTimestamp"):
                refs = list(rs["metadata"].get("ownerReferences") or []) + [owner_reference(d)]
                try:
                    out.append(await self.rs_api.patch(rs["metadata"]["name"], {"metadata": {
                        "ownerReferences": refs,
                        "resourceVersion": rs["metadata"]["resourceVersion"]}},
                        rs["metadata"]["namespace"]))
                except ApiError as e:
                    if not (e.not_found or e.conflict):
                        raise
        return out

    async def _check_paused(self, d: Obj) -> Obj:
        if not has_progress_deadline(d):
            return d
        status = d.setdefault("status", {})
        cond = get_condition(status, "Progressing")
        if cond is not None and cond.get("reason") == TIMED_OUT:
            return d
        paused_cond = cond is not None and cond.get("reason") == PAUSED
        if d["spec"].get("paused") and not paused_cond:
            set_condition(status, new_condition("Progressing", "Unknown", PAUSED,
                                                "Deployment is paused"))
        elif not d["spec"].get("paused") and paused_cond:
            set_condition(status, new_condition("Progressing", "Unknown", RESUMED,
                                                "Deployment is resumed"))
        else:
            return d
        return await self._update_status(d)

    async def _is_scaling_event(self, d: Obj, rs_list: list[Obj]) -> bool:
        new_rs, old = await self._all_rs(d, rs_list, create=False)
        for rs in _active(old + ([new_rs] if new_rs else [])):
            desired = _int_annotation(rs, DESIRED_REPLICAS)
            if desired is not None and desired != replicas(d):
                return True
        return False

    # -- finding / creating the new ReplicaSet ------------------------------------

    async def _all_rs(self, d: Obj, rs_list: list[Obj], create: bool
                      ) -> tuple[Obj | None, list[Obj]]:
        template = d["spec"].get("template") or {}
        new_rs = next((rs for rs in _by_creation(rs_list)
                       if equal_ignore_hash((rs.get("spec") or {}).get("template") or {},
                                            template)), None)
        old = [rs for rs in rs_list if rs is not new_rs]
        new_rs = await self._new_rs(d, new_rs, old, create)
        return new_rs, old

    def _rs_annotations(self, d: Obj, rs: Obj, new_revision: int, exists: bool) -> bool:
        """Copy the deployment's annotations and set the revision ones on ``rs``
        (upstream's SetNewReplicaSetAnnotations); True if anything changed."""
        ann = rs["metadata"].setdefault("annotations", {})
        changed = False
        for k, v in (d["metadata"].get("annotations") or {}).items():
            if k not in _NOT_COPIED and ann.get(k) != v:
                ann[k] = v
                changed = True
        old_raw = ann.get(REVISION)
        old_rev = history.revision_of(rs)
        if old_rev < new_revision:
            ann[REVISION] = str(new_revision)
            changed = True
            if old_raw:
                # Rolled back to this ReplicaSet: remember the revisions it had.
                prior = ann.get(REVISION_HISTORY)
                ann[REVISION_HISTORY] = f"{prior},{old_raw}" if prior else old_raw
        if not exists:
            changed = _set_replicas_annotations(rs, replicas(d), replicas(d) + max_surge(d)) \
                or changed
        return changed

    async def _new_rs(self, d: Obj, existing: Obj | None, old: list[Obj], create: bool
                      ) -> Obj | None:
        max_old = max((history.revision_of(rs) for rs in old), default=0)
        new_revision = max_old + 1
        status = d.setdefault("status", {})
        if existing is not None:
            rs = copy.deepcopy(existing)
            changed = self._rs_annotations(d, rs, new_revision, exists=True)
            min_ready = d["spec"].get("minReadySeconds", 0)
            if (rs["spec"].get("minReadySeconds") or 0) != min_ready:
                rs["spec"]["minReadySeconds"] = min_ready
                changed = True
            if changed:
                rs = await self.rs_api.replace(rs, rs["metadata"]["namespace"])
            await self._set_deployment_revision(d, rs["metadata"]["annotations"][REVISION])
            if has_progress_deadline(d) and get_condition(status, "Progressing") is None:
                set_condition(status, new_condition(
                    "Progressing", "True", FOUND_NEW_RS,
                    f'Found new replica set "{rs["metadata"]["name"]}"'))
                d.update(await self._update_status(d))
            return rs
        if not create:
            return None
        template = copy.deepcopy(d["spec"].get("template") or {})
        hash_ = history.compute_hash(_template_without_hash(template),
                                     status.get("collisionCount"))
        template.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = hash_
        selector = copy.deepcopy(d["spec"]["selector"])
        selector.setdefault("matchLabels", {})[HASH_LABEL] = hash_
        ns = d["metadata"]["namespace"]
        rs = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
              "metadata": {"name": f"{d['metadata']['name']}-{hash_}", "namespace": ns,
                           "labels": dict(template["metadata"]["labels"]),
                           "ownerReferences": [owner_reference(d)]},
              "spec": {"replicas": 0, "minReadySeconds": d["spec"].get("minReadySeconds", 0),
                       "selector": selector, "template": template}}
        self._rs_annotations(d, rs, new_revision, exists=False)
        rs["spec"]["replicas"] = self._new_rs_replicas(d, old, None)
        try:
            made = await self.rs_api.create(rs, ns)
        except ApiError as e:
            if e.status.get("reason") != "AlreadyExists":
                raise
            other = await self.rs_api.get(rs["metadata"]["name"], ns)
            ref = controller_ref(other)
            if ref and ref.get("uid") == d["metadata"]["uid"] and \
                    equal_ignore_hash(other["spec"].get("template") or {}, template):
                return other
            # A hash collision: the next name comes from a bumped collisionCount.
            status["collisionCount"] = int(status.get("collisionCount") or 0) + 1
            await self._update_status(d)
            raise RuntimeError(
                f"hash collision for replica set {rs['metadata']['name']}") from None
        if replicas(made) > 0:
            self.recorder.event(d, "Normal", "ScalingReplicaSet",
                                f"Scaled up replica set {made['metadata']['name']} "
                                f"from 0 to {replicas(made)}")
        await self._set_deployment_revision(d, str(new_revision))
        if has_progress_deadline(d):
            set_condition(status, new_condition(
                "Progressing", "True", NEW_RS_CREATED,
                f'Created new replica set "{made["metadata"]["name"]}"'))
            d.update(await self._update_status(d))
        return made

    async def _set_deployment_revision(self, d: Obj, revision: str) -> None:
        ann = d["metadata"].setdefault("annotations", {})
        if ann.get(REVISION) == revision:
            return
        patched = await self.d_api.patch(d["metadata"]["name"], {"metadata": {
            "annotations": {REVISION: revision}}}, d["metadata"]["namespace"])
        d["metadata"] = patched["metadata"]

    def _new_rs_replicas(self, d: Obj, all_rs: list[Obj], new_rs: Obj | None) -> int:
        if not is_rolling(d):
            return replicas(d)
        current = sum(replicas(r) for r in all_rs)
        new_count = replicas(new_rs) if new_rs else 0
        max_total = replicas(d) + max_surge(d)
        if current >= max_total:
            return new_count
        return new_count + min(max_total - current, replicas(d) - new_count)

    # -- scaling ----------------------------------------------------------------------

    async def _scale_rs(self, rs: Obj, new_scale: int, d: Obj, operation: str) -> Obj:
        size_changed = replicas(rs) != new_scale
        copy_ = copy.deepcopy(rs)
        ann_changed = _set_replicas_annotations(copy_, replicas(d), replicas(d) + max_surge(d))
        if not (size_changed or ann_changed):
            return rs
        old = replicas(rs)
        copy_["spec"]["replicas"] = new_scale
        out = await self.rs_api.replace(copy_, rs["metadata"]["namespace"])
        if size_changed:
            self.recorder.event(d, "Normal", "ScalingReplicaSet",
                                f"Scaled {operation} replica set {rs['metadata']['name']} "
                                f"from {old} to {new_scale}")
        return out  # type: ignore[no-any-return]

    async def _scale_and_record(self, rs: Obj, new_scale: int, d: Obj) -> tuple[bool, Obj]:
        if replicas(rs) == new_scale:
            return False, rs
        op = "up" if replicas(rs) < new_scale else "down"
        return True, await self._scale_rs(rs, new_scale, d, op)

    async def _sync_scale(self, d: Obj, rs_list: list[Obj]) -> None:
        """Paused or resized mid-rollout: scale proportionally, no rollout progress."""
        new_rs, old = await self._all_rs(d, rs_list, create=False)
        await self._scale(d, new_rs, old)
        if d["spec"].get("paused"):
            await self._cleanup(d, old)
        fresh = [self.rss.get(key_of(r)) or r for r in old]
        all_rs = fresh + ([new_rs] if new_rs else [])
        await self._sync_status(d, all_rs, new_rs)

    async def _scale(self, d: Obj, new_rs: Obj | None, old: list[Obj]) -> None:
        old_sorted = _by_creation(old, newest_first=True)
        active = _active(old_sorted + ([new_rs] if new_rs else []))
        chosen: Obj | None = None
        if not active:
            chosen = new_rs or (old_sorted[0] if old_sorted else None)
        elif len(active) == 1:
            chosen = active[0]
        if chosen is not None or not active:
            if chosen is not None and replicas(chosen) != replicas(d):
                await self._scale_and_record(chosen, replicas(d), d)
            return
        if new_rs is not None and _int_annotation(new_rs, DESIRED_REPLICAS) == replicas(d) and \
                _st(new_rs, "availableReplicas") == replicas(d):
            for rs in _active(old):
                await self._scale_and_record(rs, 0, d)
            return
        if not is_rolling(d):
            return
        allowed = replicas(d) + max_surge(d) if replicas(d) > 0 else 0
        to_add = allowed - sum(replicas(r) for r in active)
        if to_add > 0:
            active.sort(key=lambda r: (-replicas(r),
                                       -parse_time(r["metadata"].get("creationTimestamp"))))
            op = "up"
        elif to_add < 0:
            active.sort(key=lambda r: (-replicas(r),
                                       parse_time(r["metadata"].get("creationTimestamp"))))
            op = "down"
        else:
            op = ""
        added = 0
        sizes: dict[str, int] = {}
        for rs in active:
            prop = self._proportion(rs, d, to_add, added) if to_add else 0
            sizes[rs["metadata"]["name"]] = replicas(rs) + prop
            added += prop
        if added != to_add and active:
            first = active[0]["metadata"]["name"]
            sizes[first] = max(0, sizes[first] + to_add - added)
        for rs in active:
            await self._scale_rs(rs, sizes[rs["metadata"]["name"]], d, op)

    def _proportion(self, rs: Obj, d: Obj, to_add: int, added: int) -> int:
        if replicas(rs) == 0 or to_add == 0 or to_add == added:
            return 0
        if replicas(d) == 0:
            fraction = -replicas(rs)
        else:
            total = replicas(d) + max_surge(d)
            annotated = _int_annotation(rs, MAX_REPLICAS)
            if not annotated:
                annotated = _st(d, "replicas") or 1
            size = replicas(rs) * total / annotated
            fraction = int(math.floor(size + 0.5)) - replicas(rs)
        allowed = to_add - added
        return min(fraction, allowed) if to_add > 0 else max(fraction, allowed)

    # -- rollouts -------------------------------------------------------------------

    async def _rollout_rolling(self, d: Obj, rs_list: list[Obj]) -> None:
        new_rs, old = await self._all_rs(d, rs_list, create=True)
        assert new_rs is not None
        all_rs = old + [new_rs]
        if replicas(new_rs) != replicas(d):
            if replicas(new_rs) > replicas(d):
                scaled, new_rs = await self._scale_and_record(new_rs, replicas(d), d)
            else:
                scaled, new_rs = await self._scale_and_record(
                    new_rs, self._new_rs_replicas(d, all_rs, new_rs), d)
            if scaled:
                await self._sync_rollout_status(d, old + [new_rs], new_rs)
                return
        old, scaled_down = await self._reconcile_old(d, old, new_rs)
        if not scaled_down:
            status = self._calculate_status(d, old + [new_rs], new_rs)
            if deployment_complete(d, status):
                await self._cleanup(d, old)
        await self._sync_rollout_status(d, old + [new_rs], new_rs)

    async def _reconcile_old(self, d: Obj, old: list[Obj], new_rs: Obj
                             ) -> tuple[list[Obj], bool]:
        if sum(replicas(r) for r in old) == 0:
            return old, False
        all_count = sum(replicas(r) for r in old) + replicas(new_rs)
        min_available = replicas(d) - max_unavailable(d)
        new_unavailable = replicas(new_rs) - _st(new_rs, "availableReplicas")
        max_down = all_count - min_available - new_unavailable
        if max_down <= 0:
            return old, False
        by_name = {r["metadata"]["name"]: r for r in old}
        total = 0
        # First the old pods that are not available anyway.
        for rs in _by_creation(list(by_name.values())):
            if total >= max_down:
                break
            unhealthy = replicas(rs) - _st(rs, "availableReplicas")
            if replicas(rs) == 0 or unhealthy <= 0:
                continue
            n = min(max_down - total, unhealthy)
            _, by_name[rs["metadata"]["name"]] = await self._scale_and_record(
                rs, replicas(rs) - n, d)
            total += n
        # Then available ones, keeping minAvailable.
        available = sum(_st(r, "availableReplicas") for r in by_name.values()) + \
            _st(new_rs, "availableReplicas")
        if available > min_available:
            budget = available - min_available
            done = 0
            for rs in _by_creation(list(by_name.values())):
                if done >= budget:
                    break
                if replicas(rs) == 0:
                    continue
                n = min(replicas(rs), budget - done)
                _, by_name[rs["metadata"]["name"]] = await self._scale_and_record(
                    rs, replicas(rs) - n, d)
                done += n
            total += done
        return list(by_name.values()), total > 0

    async def _rollout_recreate(self, d: Obj, rs_list: list[Obj]) -> None:
        new_rs, old = await self._all_rs(d, rs_list, create=False)
        scaled = False
        fresh: list[Obj] = []
        for rs in old:
            if replicas(rs) > 0:
                changed, rs = await self._scale_and_record(rs, 0, d)
                scaled = scaled or changed
            fresh.append(rs)
        old = fresh
        if scaled or self._old_pods_running(old):
            await self._sync_rollout_status(d, old + ([new_rs] if new_rs else []), new_rs)
            return
        if new_rs is None:
            new_rs, old = await self._all_rs(d, old, create=True)
            assert new_rs is not None
        if replicas(new_rs) != replicas(d):
            _, new_rs = await self._scale_and_record(new_rs, replicas(d), d)
        status = self._calculate_status(d, old + [new_rs], new_rs)
        if deployment_complete(d, status):
            await self._cleanup(d, old)
        await self._sync_rollout_status(d, old + [new_rs], new_rs)

    def _old_pods_running(self, old: list[Obj]) -> bool:
        if any(_st(rs, "replicas") > 0 for rs in old):
            return True
        return any((pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
                   for rs in old for pod in self.pods.by_index(CONTROLLER_INDEX,
                                                                rs["metadata"]["uid"]))

    async def _cleanup(self, d: Obj, old: list[Obj]) -> None:
        limit = d["spec"].get("revisionHistoryLimit")
        if limit is None:
            return
        cleanable = [r for r in old if not r["metadata"].get("deletionTimestamp")]
        diff = len(cleanable) - int(limit)
        if diff <= 0:
            return
        cleanable.sort(key=lambda r: (history.revision_of(r),
                                      parse_time(r["metadata"].get("creationTimestamp"))))
        for rs in cleanable[:diff]:
            if _st(rs, "replicas") or replicas(rs) or \
                    rs["metadata"].get("generation", 0) > _st(rs, "observedGeneration"):
                continue
            try:
                await self.rs_api.delete(rs["metadata"]["name"], rs["metadata"]["namespace"])
            except ApiError as e:
                if not e.not_found:
                    raise

    # -- status ------------------------------------------------------------------------

    def _calculate_status(self, d: Obj, all_rs: list[Obj], new_rs: Obj | None) -> Obj:
        available = sum(_st(r, "availableReplicas") for r in all_rs)
        total = sum(replicas(r) for r in all_rs)
        old = d.get("status") or {}
        status: Obj = {
            "observedGeneration": d["metadata"].get("generation", 1),
            "replicas": sum(_st(r, "replicas") for r in all_rs),
            "updatedReplicas": _st(new_rs, "replicas") if new_rs else 0,
            "readyReplicas": sum(_st(r, "readyReplicas") for r in all_rs),
            "availableReplicas": available,
            "unavailableReplicas": max(0, total - available),
            "conditions": copy.deepcopy(old.get("conditions") or []),
        }
        if old.get("collisionCount") is not None:
            status["collisionCount"] = old["collisionCount"]
        if available >= replicas(d) - max_unavailable(d):
            set_condition(status, new_condition("Available", "True", MIN_AVAILABLE,
                                                "Deployment has minimum availability."))
        else:
            set_condition(status, new_condition("Available", "False", MIN_UNAVAILABLE,
                                                "Deployment does not have minimum availability."))
        return status

    async def _sync_status(self, d: Obj, all_rs: list[Obj], new_rs: Obj | None) -> None:
        status = self._calculate_status(d, all_rs, new_rs)
        if not _same_status(d.get("status") or {}, status):
            d["status"] = status
            await self._update_status(d)

    async def _sync_rollout_status(self, d: Obj, all_rs: list[Obj], new_rs: Obj | None
                                   ) -> None:
        status = self._calculate_status(d, all_rs, new_rs)
        if not has_progress_deadline(d):
            remove_condition(status, "Progressing")
        current = get_condition(d.get("status") or {}, "Progressing")
        complete = status["replicas"] == status["updatedReplicas"] and current is not None \
            and current.get("reason") == NEW_RS_AVAILABLE
        name = f'ReplicaSet "{new_rs["metadata"]["name"]}"' if new_rs else \
            f'Deployment "{d["metadata"]["name"]}"'
        now = self.ctx.clock.time()
        if has_progress_deadline(d) and not complete:
            if deployment_complete(d, status):
                set_condition(status, new_condition("Progressing", "True", NEW_RS_AVAILABLE,
                                                    f"{name} has successfully progressed."))
            elif deployment_progressing(d, status):
                cond = new_condition("Progressing", "True", RS_UPDATED, f"{name} is progressing.")
                if current is not None:
                    if current.get("status") == "True":
                        cond["lastTransitionTime"] = current.get("lastTransitionTime")
                    remove_condition(status, "Progressing")
                set_condition(status, cond)
            elif deployment_timed_out(d, status, now):
                set_condition(status, new_condition("Progressing", "False", TIMED_OUT,
                                                    f"{name} has timed out progressing."))
        failure = next((c for rs in ([new_rs] if new_rs else []) + all_rs
                        for c in (rs.get("status") or {}).get("conditions") or []
                        if c.get("type") == "ReplicaFailure" and c.get("status") == "True"),
                       None)
        if failure is not None:
            set_condition(status, {k: failure.get(k) for k in
                                   ("type", "status", "reason", "message",
                                    "lastTransitionTime")} | {"lastUpdateTime": _now()})
        else:
            remove_condition(status, "ReplicaFailure")
        if not _same_status(d.get("status") or {}, status):
            d["status"] = status
            await self._update_status(d)
        self._requeue_stuck(d, status, now)

    def _requeue_stuck(self, d: Obj, status: Obj, now: float) -> None:
        cond = get_condition(status, "Progressing")
        if not has_progress_deadline(d) or cond is None or deployment_complete(d, status) or \
                cond.get("reason") == TIMED_OUT:
            return
        after = parse_time(cond.get("lastUpdateTime")) + \
            int(d["spec"]["progressDeadlineSeconds"]) - now
        self.enqueue_after(d, max(0.0, after) + 1)

    async def _update_status(self, d: Obj) -> Obj:
        out = await self.d_api.replace_status(d, d["metadata"]["namespace"])
        d["metadata"] = out["metadata"]
        return out  # type: ignore[no-any-return]


def _same_status(a: Obj, b: Obj) -> bool:
    keys = set(a) | set(b)
    return all((a.get(k) or 0) == (b.get(k) or 0) for k in keys)


def _set_replicas_annotations(rs: Obj, desired: int, max_replicas: int) -> bool:
    ann = rs["metadata"].setdefault("annotations", {})
    changed = False
    for k, v in ((DESIRED_REPLICAS, str(desired)), (MAX_REPLICAS, str(max_replicas))):
        if ann.get(k) != v:
            ann[k] = v
            changed = True
    return changed


CONTROLLERS = {"deployment": DeploymentController}
