"""The daemonset controller: one pod per eligible node (node selector and
required node affinity match, taints tolerated), each pinned to its node by a
``matchFields metadata.name In [node]`` affinity for the scheduler to honour;
template changes become ControllerRevisions rolled out node by node within
maxUnavailable / maxSurge (RollingUpdate) or left to the user (OnDelete), as
upstream's pkg/controller/daemon.

A daemon pod that fails is deleted (and so replaced), but no more often per
node than an exponential backoff allows (1 s doubling to 15 min, upstream's
failedPodsBackoff): a pod the kubelet keeps rejecting must not turn the
controller into a create/delete loop against the API server."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from typing import Any

from pinnace.client import ApiError, key_of

from . import history
from . import pods as podutil
from .base import (
    CONTROLLER_INDEX,
    Context,
    Controller,
    Expectations,
    controller_ref,
    index_by_controller,
    owner_reference,
)

Obj = dict[str, Any]

HASH_LABEL = history.CONTROLLER_REVISION_HASH_LABEL
GENERATION_LABEL = "pod-template-generation"
# Set by upstream's API server on every DaemonSet: the generation of its pod template.
TEMPLATE_GENERATION_ANNOTATION = "deprecated.daemonset.template.generation"

# What upstream adds to every daemon pod, so node conditions never evict or block it.
DAEMON_TOLERATIONS: list[Obj] = [
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
]
NETWORK_UNAVAILABLE = {"key": "node.kubernetes.io/network-unavailable", "operator": "Exists",
                       "effect": "NoSchedule"}


# -- node eligibility ---------------------------------------------------------------


def _requirement_matches(req: Obj, value: str | None) -> bool:
    op = req.get("operator")
    values = req.get("values") or []
    if op == "In":
        return value is not None and value in values
    if op == "NotIn":
        return value is None or value not in values
    if op == "Exists":
        return value is not None
    if op == "DoesNotExist":
        return value is None
    if op in ("Gt", "Lt") and value is not None and values:
        try:
            a, b = int(value), int(values[0])
        except ValueError:
            return False
        return a > b if op == "Gt" else a < b
    return False


def term_matches(term: Obj, node: Obj) -> bool:
    exprs = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not exprs and not fields:
        return False
    labels = node["metadata"].get("labels") or {}
    return all(_requirement_matches(r, labels.get(r.get("key", ""))) for r in exprs) and \
        all(_requirement_matches(r, node["metadata"]["name"] if r.get("key") == "metadata.name"
                                 else None) for r in fields)


def toleration_matches(tol: Obj, taint: Obj) -> bool:
    if tol.get("effect") and tol["effect"] != taint.get("effect"):
        return False
    if tol.get("key") and tol["key"] != taint.get("key"):
        return False
    if tol.get("operator") == "Exists":
        return True
    return bool(tol.get("key")) and (tol.get("value") or "") == (taint.get("value") or "")


def daemon_tolerations(template_spec: Obj) -> list[Obj]:
    tols = list(template_spec.get("tolerations") or [])
    extra = list(DAEMON_TOLERATIONS)
    if template_spec.get("hostNetwork"):
        extra.append(NETWORK_UNAVAILABLE)
    for t in extra:
        if not any(x.get("key") == t["key"] and x.get("effect") == t["effect"] for x in tols):
            tols.append(dict(t))
    return tols


def node_should_run(ds: Obj, node: Obj) -> tuple[bool, bool]:
    """(should run a new pod, may keep an existing one), as upstream's
    NodeShouldRunDaemonPod: NoSchedule taints only stop new pods."""
    spec = ((ds.get("spec") or {}).get("template") or {}).get("spec") or {}
    name = node["metadata"]["name"]
    if spec.get("nodeName") and spec["nodeName"] != name:
        return False, False
    labels = node["metadata"].get("labels") or {}
    if any(labels.get(k) != v for k, v in (spec.get("nodeSelector") or {}).items()):
        return False, False
    required = (((spec.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution") or {})
    terms = required.get("nodeSelectorTerms")
    if terms is not None and not any(term_matches(t, node) for t in terms):
        return False, False
    tols = daemon_tolerations(spec)
    run = keep = True
    for taint in (node.get("spec") or {}).get("taints") or []:
        effect = taint.get("effect")
        if effect not in ("NoSchedule", "NoExecute"):
            continue
        if not any(toleration_matches(t, taint) for t in tols):
            run = False
            if effect == "NoExecute":
                keep = False
    return run, keep


def target_node(pod: Obj) -> str | None:
    """The node a daemon pod is for: its nodeName, or the node its affinity pins."""
    spec = pod.get("spec") or {}
    if spec.get("nodeName"):
        return spec["nodeName"]  # type: ignore[no-any-return]
    required = (((spec.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution") or {})
    for term in required.get("nodeSelectorTerms") or []:
        for f in term.get("matchFields") or []:
            if f.get("key") == "metadata.name" and f.get("operator") == "In" and \
                    len(f.get("values") or []) == 1:
                return f["values"][0]  # type: ignore[no-any-return]
    return None


def pin_to_node(spec: Obj, node: str) -> None:
    req = {"key": "metadata.name", "operator": "In", "values": [node]}
    affinity = spec.setdefault("affinity", {})
    na = affinity.setdefault("nodeAffinity", {})
    na["requiredDuringSchedulingIgnoredDuringExecution"] = {
        "nodeSelectorTerms": [{"matchFields": [req]}]}


def _scaled(value: Any, total: int) -> int:
    if value is None:
        return 0
    if isinstance(value, str) and value.endswith("%"):
        return math.ceil(int(value[:-1]) * total / 100)
    return int(value)


def allows_surge(ds: Obj) -> bool:
    strategy = (ds.get("spec") or {}).get("updateStrategy") or {}
    if strategy.get("type", "RollingUpdate") != "RollingUpdate":
        return False
    return _scaled((strategy.get("rollingUpdate") or {}).get("maxSurge"), 1) != 0


def template_generation(ds: Obj) -> str:
    annotations = ds["metadata"].get("annotations") or {}
    return str(annotations.get(TEMPLATE_GENERATION_ANNOTATION) or
               ds["metadata"].get("generation", 1))


def pod_updated(pod: Obj, hash_: str, generation: str) -> bool:
    """Upstream's IsPodUpdated: the pod carries the current revision's hash,
    or the current template generation."""
    labels = pod["metadata"].get("labels") or {}
    return (bool(hash_) and labels.get(HASH_LABEL) == hash_) or \
        labels.get(GENERATION_LABEL) == generation


def _phase(pod: Obj) -> str:
    return str((pod.get("status") or {}).get("phase") or "")


def _terminal(pod: Obj) -> bool:
    return _phase(pod) in ("Succeeded", "Failed")


def _daemon_pod_order(pod: Obj) -> tuple[int, float, str]:
    """Upstream's podByCreationTimestampAndPhase: scheduled pods first, then oldest."""
    meta = pod["metadata"]
    return (0 if (pod.get("spec") or {}).get("nodeName") else 1,
            podutil.parse_time(meta.get("creationTimestamp")), meta["name"])


class Backoff:
    """Per-key exponential backoff (client-go's flowcontrol.Backoff): each
    ``next`` doubles the key's delay up to ``cap``; a key left alone for twice
    ``cap`` starts over. ``clock`` is injectable so tests never sleep."""

    def __init__(self, initial: float, cap: float, clock: Callable[[], float] = time.monotonic):
        self.initial = initial
        self.cap = cap
        self.clock = clock
        self._entries: dict[str, tuple[float, float]] = {}  # key -> (delay, last update)
        self._last_gc = clock()

    def get(self, key: str) -> float:
        entry = self._entries.get(key)
        return entry[0] if entry else 0.0

    def next(self, key: str, now: float) -> None:
        entry = self._entries.get(key)
        if entry is None or now - entry[1] > 2 * self.cap:
            delay = self.initial
        else:
            delay = min(entry[0] * 2, self.cap)
        self._entries[key] = (delay, self.clock())
        self._gc(now)

    def in_backoff_since_update(self, key: str, now: float) -> bool:
        entry = self._entries.get(key)
        if entry is None or now - entry[1] > 2 * self.cap:
            return False
        return now - entry[1] < entry[0]

    def _gc(self, now: float) -> None:
        # Upstream runs GC every minute; doing it on writes is enough to bound memory.
        if now - self._last_gc < 60:
            return
        self._last_gc = now
        for key, (_, last) in list(self._entries.items()):
            if now - last > 2 * self.cap:
                del self._entries[key]


# -- the controller ---------------------------------------------------------------


class DaemonSetController(Controller):
    name = "daemonset"
    event_source = "daemonset-controller"
    workers = 2

    # Upstream's kube-controller-manager builds failedPodsBackoff with these.
    FAILED_POD_BACKOFF = 1.0
    FAILED_POD_BACKOFF_CAP = 15 * 60.0

    def __init__(self, ctx: Context):
        super().__init__(ctx)
        self.sets = ctx.informers.informer("apps/v1", "daemonsets")
        self.pods = ctx.informers.informer("v1", "pods")
        index_by_controller(self.pods)
        self.nodes = ctx.informers.informer("v1", "nodes")
        self.revs = ctx.informers.informer("apps/v1", "controllerrevisions")
        self.ds_api = self.client.resource("apps/v1", "daemonsets")
        self.pod_api = self.client.resource("v1", "pods")
        self.history = history.Revisions(self.client)
        self.expectations = Expectations()
        self.failed_pods_backoff = Backoff(self.FAILED_POD_BACKOFF, self.FAILED_POD_BACKOFF_CAP,
                                           ctx.clock.monotonic)

    def setup(self) -> None:
        self.sets.add_handler(self.enqueue, lambda old, new: self.enqueue(new), self._set_deleted)
        self.pods.add_handler(self._pod_added, self._pod_updated, self._pod_deleted)
        self.revs.add_handler(self._owned_changed, None, None)
        self.nodes.add_handler(self._node_changed, lambda old, new: self._node_changed(new),
                               self._node_changed)

    def _set_deleted(self, ds: Obj) -> None:
        self.expectations.forget(key_of(ds))
        self.enqueue(ds)

    def _owner_key(self, obj: Obj) -> str | None:
        ref = controller_ref(obj)
        if ref is None or ref.get("kind") != "DaemonSet":
            return None
        return f"{obj['metadata']['namespace']}/{ref['name']}"

    def _owned_changed(self, obj: Obj) -> None:
        key = self._owner_key(obj)
        if key is not None:
            self.queue.add(key)

    def _ours(self, pod: Obj) -> str | None:
        """The key of the DaemonSet controlling ``pod``, if it is the one we know."""
        key = self._owner_key(pod)
        ds = self.sets.get(key) if key is not None else None
        ref = controller_ref(pod) or {}
        if ds is None or ds["metadata"].get("uid") != ref.get("uid"):
            return None
        return key

    # A pod's deletion counts as observed once: when it is marked for deletion,
    # or when it disappears if it was never seen marked.
    def _pod_added(self, pod: Obj) -> None:
        key = self._ours(pod)
        if key is None:
            return
        if pod["metadata"].get("deletionTimestamp"):
            self.expectations.observed_delete(key)
        else:
            self.expectations.observed_add(key)
        self.queue.add(key)

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        key = self._ours(new)
        if key is None:
            self._owned_changed(new)
            return
        if new["metadata"].get("deletionTimestamp") and \
                not old["metadata"].get("deletionTimestamp"):
            self.expectations.observed_delete(key)
        self.queue.add(key)

    def _pod_deleted(self, pod: Obj) -> None:
        key = self._ours(pod)
        if key is None:
            self._owned_changed(pod)
            return
        if not pod["metadata"].get("deletionTimestamp"):
            self.expectations.observed_delete(key)
        self.queue.add(key)

    def _node_changed(self, node: Obj) -> None:
        for ds in self.sets.objects():
            self.enqueue(ds)

    # -- sync ------------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        cached = self.sets.get(key)
        if cached is None:
            self.expectations.forget(key)
            return
        # Pods and revisions of a DaemonSet being deleted may be going too, in any
        # order: upstream neither manages nor reports status for it.
        if cached["metadata"].get("deletionTimestamp"):
            return
        ds = copy.deepcopy(cached)
        ns = ds["metadata"]["namespace"]
        uid = ds["metadata"]["uid"]
        current, old_revs = await self._revisions(ds)
        hash_ = current["metadata"]["labels"][HASH_LABEL]
        if not self.expectations.satisfied(key):
            # Our last creates or deletes are not all in the cache yet: acting now
            # could repeat them. Report what is there, without claiming the
            # generation as observed.
            await self._update_status(key, ds, self._pods_by_node(ns, uid), hash_, False)
            return
        try:
            await self._manage(key, ds, self._pods_by_node(ns, uid), hash_)
            strategy = (ds.get("spec") or {}).get("updateStrategy") or {}
            if strategy.get("type", "RollingUpdate") == "RollingUpdate" and \
                    self.expectations.satisfied(key):
                await self._rolling_update(key, ds, self._pods_by_node(ns, uid), hash_)
            by_node = self._pods_by_node(ns, uid)
            live = {p["metadata"]["labels"].get(HASH_LABEL) for pods in by_node.values()
                    for p in pods}
            spare = [r for r in old_revs if r["metadata"]["labels"].get(HASH_LABEL) not in live]
            await self.history.trim(spare, int(ds["spec"].get("revisionHistoryLimit", 10)),
                                    set())
        except Exception:
            # A create or delete failed: still report what is there (as upstream),
            # then fail the sync with the original error.
            try:
                await self._update_status(key, ds, self._pods_by_node(ns, uid), hash_, True)
            except ApiError as e:
                self.log.info("status of %s not updated: %s", key, e)
            raise
        await self._update_status(key, ds, self._pods_by_node(ns, uid), hash_, True)

    async def _revisions(self, ds: Obj) -> tuple[Obj, list[Obj]]:
        ns = ds["metadata"]["namespace"]
        revisions = history.sort_revisions(
            history.owned_revisions(self.revs.objects(ns), ds))
        collisions = int((ds.get("status") or {}).get("collisionCount") or 0)
        wanted = history.new_revision(ds, history.next_revision(revisions), collisions)
        equal = [r for r in revisions if history.equal_revision(r, wanted)]
        old = [r for r in revisions if not history.equal_revision(r, wanted)]
        if equal:
            current = equal[-1]
            old += equal[:-1]
            if revisions and current is not revisions[-1]:
                current = await self.history.renumber(current, int(wanted["revision"]))
        else:
            current, collisions = await self.history.create(ds, int(wanted["revision"]),
                                                            collisions)
            if collisions != int((ds.get("status") or {}).get("collisionCount") or 0):
                ds.setdefault("status", {})["collisionCount"] = collisions
        return current, old

    def _pods_by_node(self, ns: str, uid: str) -> dict[str, list[Obj]]:
        """This DaemonSet's pods by the node they are for, oldest first. A pod
        that has terminated and is being deleted is left out: nothing remains
        to be done with it (upstream's getNodesToDaemonPods)."""
        out: dict[str, list[Obj]] = {}
        for pod in self.pods.by_index(CONTROLLER_INDEX, uid):
            ref = controller_ref(pod)
            if ref is None or ref.get("uid") != uid:
                continue
            if _terminal(pod) and pod["metadata"].get("deletionTimestamp"):
                continue
            node = target_node(pod)
            if node is not None:
                out.setdefault(node, []).append(pod)
        for pods in out.values():
            pods.sort(key=_daemon_pod_order)
        return out

    def _new_pod(self, ds: Obj, node: str, hash_: str) -> Obj:
        template = copy.deepcopy(ds["spec"].get("template") or {})
        tspec = template.setdefault("spec", {})
        tspec["tolerations"] = daemon_tolerations(tspec)
        pin_to_node(tspec, node)
        labels = template.setdefault("metadata", {}).setdefault("labels", {})
        labels[HASH_LABEL] = hash_
        labels[GENERATION_LABEL] = template_generation(ds)
        return podutil.pod_from_template(template, ds, owner_reference(ds))

    def _backoff_key(self, ds: Obj, node: str) -> str:
        # As upstream: a new generation (a fixed template, say) starts a fresh backoff.
        observed = (ds.get("status") or {}).get("observedGeneration") or 0
        return f"{ds['metadata']['uid']}/{observed}/{node}"

    def _node_plan(self, ds: Obj, node: Obj, pods: list[Obj] | None, hash_: str
                   ) -> tuple[bool, list[Obj]]:
        """(create a pod on the node, pods to delete there): upstream's podsShouldBeOnNode."""
        name = node["metadata"]["name"]
        run, keep = node_should_run(ds, node)
        if run and not pods:
            return True, []
        if not pods:
            return False, []
        if not keep:
            return False, [p for p in pods if not p["metadata"].get("deletionTimestamp")]
        to_delete: list[Obj] = []
        running: list[Obj] = []
        for p in pods:
            if p["metadata"].get("deletionTimestamp"):
                continue
            where = f"{p['metadata']['namespace']}/{p['metadata']['name']} on node {name}"
            if _phase(p) == "Failed":
                key = self._backoff_key(ds, name)
                now = self.failed_pods_backoff.clock()
                if self.failed_pods_backoff.in_backoff_since_update(key, now):
                    delay = self.failed_pods_backoff.get(key)
                    self.log.debug("deleting failed pod %s held back %.0fs by backoff",
                                   where, delay)
                    self.enqueue_after(ds, delay)
                    continue
                self.failed_pods_backoff.next(key, now)
                self.recorder.event(ds, "Warning", "FailedDaemonPod",
                                    f"Found failed daemon pod {where}, will try to kill it")
                to_delete.append(p)
            elif _phase(p) == "Succeeded":
                self.recorder.event(ds, "Normal", "SucceededDaemonPod",
                                    f"Found succeeded daemon pod {where}, will try to delete it")
                to_delete.append(p)
            else:
                running.append(p)
        if not allows_surge(ds):
            # More than one: keep the oldest. None left: the next sync creates one
            # (once the deletions are observed).
            return False, to_delete + running[1:]
        if not running:
            return run, to_delete
        # Surging: an old and a new pod may run side by side until the new one is
        # available (or the old one stops being ready); anything beyond is removed.
        oldest_new = oldest_old = None
        for p in running:
            if p["metadata"].get("labels", {}).get(HASH_LABEL) == hash_:
                if oldest_new is None:
                    oldest_new = p
                    continue
            elif oldest_old is None:
                oldest_old = p
                continue
            to_delete.append(p)
        if oldest_new is not None and oldest_old is not None and (
                not podutil.is_ready(oldest_old) or podutil.is_available(
                    oldest_new, int(ds["spec"].get("minReadySeconds") or 0), time.time())):
            to_delete.append(oldest_old)
        return False, to_delete

    async def _manage(self, key: str, ds: Obj, by_node: dict[str, list[Obj]], hash_: str
                      ) -> None:
        to_create: list[str] = []
        to_delete: list[Obj] = []
        nodes = {n["metadata"]["name"]: n for n in self.nodes.objects()}
        for name, node in nodes.items():
            create, delete = self._node_plan(ds, node, by_node.get(name), hash_)
            if create:
                to_create.append(name)
            to_delete += delete
        # A pod for a node that is gone is never scheduled, so the pod GC (which
        # removes pods bound to missing nodes) never sees it: remove it here.
        for name, pods in by_node.items():
            if name not in nodes:
                to_delete += [p for p in pods if not (p.get("spec") or {}).get("nodeName")
                              and not p["metadata"].get("deletionTimestamp")]
        errors: list[Exception] = []
        for name in to_create:
            try:
                await self._create(key, ds, name, hash_)
            except ApiError as e:
                errors.append(e)
        for pod in to_delete:
            try:
                await self._delete(key, ds, pod)
            except ApiError as e:
                errors.append(e)
        if errors:
            raise errors[0]

    async def _create(self, key: str, ds: Obj, node: str, hash_: str) -> None:
        # Expected before the request: its watch event may arrive before the response.
        self.expectations.expect(key, adds=1)
        try:
            made = await self.pod_api.create(self._new_pod(ds, node, hash_),
                                             ds["metadata"]["namespace"])
        except ApiError as e:
            self.expectations.observed_add(key)
            if e.namespace_terminating:
                return  # the namespace is going away: so is this DaemonSet
            self.recorder.event(ds, "Warning", "FailedCreate",
                                f"Error creating: {e.status.get('message', e)}")
            raise
        self.recorder.event(ds, "Normal", "SuccessfulCreate",
                            f"Created pod: {made['metadata']['name']}")

    async def _delete(self, key: str, ds: Obj, pod: Obj) -> None:
        self.expectations.expect(key, deletes=1)
        try:
            await self.pod_api.delete(pod["metadata"]["name"], pod["metadata"]["namespace"],
                                      preconditions={"uid": pod["metadata"]["uid"]})
        except ApiError as e:
            self.expectations.observed_delete(key)
            if e.not_found:
                return
            self.recorder.event(ds, "Warning", "FailedDelete",
                                f"Error deleting: {e.status.get('message', e)}")
            raise
        self.recorder.event(ds, "Normal", "SuccessfulDelete",
                            f"Deleted pod: {pod['metadata']['name']}")

    def _split(self, pods: list[Obj], hash_: str) -> tuple[Obj | None, Obj | None, bool]:
        new = old = None
        for p in pods:
            if p["metadata"].get("deletionTimestamp"):
                continue
            if p["metadata"].get("labels", {}).get(HASH_LABEL) == hash_:
                if new is not None:
                    return None, None, False
                new = p
            else:
                if old is not None:
                    return None, None, False
                old = p
        return new, old, True

    async def _rolling_update(self, key: str, ds: Obj, by_node: dict[str, list[Obj]],
                              hash_: str) -> None:
        ru = (ds["spec"].get("updateStrategy") or {}).get("rollingUpdate") or {}
        min_ready = int(ds["spec"].get("minReadySeconds") or 0)
        now = time.time()
        desired = sum(1 for n in self.nodes.objects() if node_should_run(ds, n)[0])
        max_surge = _scaled(ru.get("maxSurge"), desired)
        max_unavailable = _scaled(ru.get("maxUnavailable", 1), desired)
        if max_surge == 0 and max_unavailable == 0:
            max_unavailable = 1
        nodes = {n["metadata"]["name"]: n for n in self.nodes.objects()}
        unavailable = 0
        to_delete: list[Obj] = []
        candidates: list[Obj] = []
        surge_nodes: list[str] = []
        surging = 0
        for name, pods in by_node.items():
            if name not in nodes or not node_should_run(ds, nodes[name])[1]:
                continue
            new, old, ok = self._split(pods, hash_)
            if not ok:
                unavailable += 1
                continue
            if max_surge:
                if old is not None and new is not None:
                    if podutil.is_available(new, min_ready, now):
                        to_delete.append(old)
                    else:
                        surging += 1
                elif old is not None:
                    if not podutil.is_available(old, min_ready, now):
                        to_delete.append(old)
                    else:
                        surge_nodes.append(name)
                continue
            if (old is None) == (new is None):
                unavailable += 1
            elif new is not None:
                if not podutil.is_available(new, min_ready, now):
                    unavailable += 1
            elif old is not None:
                if not podutil.is_available(old, min_ready, now):
                    to_delete.append(old)
                else:
                    candidates.append(old)
        if max_surge:
            for name in surge_nodes[:max(0, max_surge - surging)]:
                await self._create(key, ds, name, hash_)
        else:
            room = max(0, max_unavailable - unavailable)
            to_delete += candidates[:room]
        for pod in to_delete:
            await self._delete(key, ds, pod)

    async def _update_status(self, key: str, ds: Obj, by_node: dict[str, list[Obj]], hash_: str,
                             observed: bool) -> None:
        """Counts per node, as upstream's updateDaemonSetStatus: a node counts
        as scheduled while any of its pods is left (even one shutting down),
        and its oldest pod decides whether it is ready, available, updated."""
        min_ready = int(ds["spec"].get("minReadySeconds") or 0)
        now = time.time()
        generation = template_generation(ds)
        desired = current = mis = ready = available = updated = 0
        for node in self.nodes.objects():
            run, _ = node_should_run(ds, node)
            pods = by_node.get(node["metadata"]["name"])
            if not run:
                mis += 1 if pods else 0
                continue
            desired += 1
            if not pods:
                continue
            current += 1
            pod = pods[0]
            if podutil.is_ready(pod):
                ready += 1
                if podutil.is_available(pod, min_ready, now):
                    available += 1
            if pod_updated(pod, hash_, generation):
                updated += 1
        old = ds.get("status") or {}
        counts = {"desiredNumberScheduled": desired, "currentNumberScheduled": current,
                  "numberMisscheduled": mis, "numberReady": ready,
                  "numberAvailable": available, "updatedNumberScheduled": updated,
                  "numberUnavailable": desired - available}
        gen = int(ds["metadata"].get("generation", 1))
        cached_status = ((self.sets.get(key) or {}).get("status") or {})
        if all((old.get(k) or 0) == v for k, v in counts.items()) and \
                int(old.get("observedGeneration") or 0) >= gen and \
                old.get("collisionCount") == cached_status.get("collisionCount"):
            if min_ready and available != ready:
                self.enqueue_after(key, min_ready)
            return
        status = dict(old)
        status.update(counts)
        if observed:
            status["observedGeneration"] = gen
        # Go leaves these out when zero (omitempty); clients see them absent, not 0.
        for k in ("numberAvailable", "updatedNumberScheduled", "numberUnavailable",
                  "observedGeneration"):
            if not status.get(k):
                status.pop(k, None)
        ds["status"] = status
        try:
            await self.ds_api.replace_status(ds, ds["metadata"]["namespace"])
        except ApiError as e:
            if not e.not_found:
                raise
        # Availability needs minReadySeconds to pass: look again then.
        if min_ready and available != ready:
            self.enqueue_after(key, min_ready)


CONTROLLERS = {"daemonset": DaemonSetController}
