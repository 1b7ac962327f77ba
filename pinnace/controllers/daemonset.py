"""The daemonset controller: one pod per eligible node (node selector and
required node affinity match, taints tolerated), each pinned to its node by a
``matchFields metadata.name In [node]`` affinity for the scheduler to honour;
template changes become ControllerRevisions rolled out node by node within
maxUnavailable / maxSurge (RollingUpdate) or left to the user (OnDelete), as
upstream's pkg/controller/daemon."""

from __future__ import annotations

import copy
import math
import time
from typing import Any

from pinnace.client import ApiError

from . import history
from . import pods as podutil
from .base import Context, Controller, controller_ref, owner_reference

Obj = dict[str, Any]

HASH_LABEL = history.CONTROLLER_REVISION_HASH_LABEL
GENERATION_LABEL = "pod-template-generation"

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


# -- the controller ---------------------------------------------------------------


class DaemonSetController(Controller):
    name = "daemonset"
    event_source = "daemonset-controller"
    workers = 2

    def __init__(self, ctx: Context):
        super().__init__(ctx)
        self.sets = ctx.informers.informer("apps/v1", "daemonsets")
        self.pods = ctx.informers.informer("v1", "pods")
        self.nodes = ctx.informers.informer("v1", "nodes")
        self.revs = ctx.informers.informer("apps/v1", "controllerrevisions")
        self.ds_api = self.client.resource("apps/v1", "daemonsets")
        self.pod_api = self.client.resource("v1", "pods")
        self.history = history.Revisions(self.client)

    def setup(self) -> None:
        self.sets.add_handler(self.enqueue, lambda old, new: self.enqueue(new), self.enqueue)
        self.pods.add_handler(self._owned_changed, lambda old, new: self._owned_changed(new),
                              self._owned_changed)
        self.revs.add_handler(self._owned_changed, None, None)
        self.nodes.add_handler(self._node_changed, lambda old, new: self._node_changed(new),
                               self._node_changed)

    def _owned_changed(self, obj: Obj) -> None:
        ref = controller_ref(obj)
        if ref is not None and ref.get("kind") == "DaemonSet":
            self.queue.add(f"{obj['metadata']['namespace']}/{ref['name']}")

    def _node_changed(self, node: Obj) -> None:
        for ds in self.sets.objects():
            self.enqueue(ds)

    # -- sync ------------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        cached = self.sets.get(key)
        if cached is None:
            return
        ds = copy.deepcopy(cached)
        ns = ds["metadata"]["namespace"]
        uid = ds["metadata"]["uid"]
        current, old_revs = await self._revisions(ds)
        hash_ = current["metadata"]["labels"][HASH_LABEL]
        by_node = self._pods_by_node(ns, uid)
        if not ds["metadata"].get("deletionTimestamp"):
            await self._manage(ds, by_node, hash_)
            strategy = (ds.get("spec") or {}).get("updateStrategy") or {}
            if strategy.get("type", "RollingUpdate") == "RollingUpdate":
                await self._rolling_update(ds, self._pods_by_node(ns, uid), hash_)
            live = {p["metadata"]["labels"].get(HASH_LABEL) for pods in by_node.values()
                    for p in pods}
            spare = [r for r in old_revs if r["metadata"]["labels"].get(HASH_LABEL) not in live]
            await self.history.trim(spare, int(ds["spec"].get("revisionHistoryLimit", 10)),
                                    set())
        await self._update_status(ds, self._pods_by_node(ns, uid), hash_)

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
        out: dict[str, list[Obj]] = {}
        for pod in self.pods.objects(ns):
            ref = controller_ref(pod)
            if ref is None or ref.get("uid") != uid:
                continue
            node = target_node(pod)
            if node is not None:
                out.setdefault(node, []).append(pod)
        for pods in out.values():
            pods.sort(key=lambda p: (podutil.parse_time(p["metadata"].get("creationTimestamp")),
                                     p["metadata"]["name"]))
        return out

    def _new_pod(self, ds: Obj, node: str, hash_: str) -> Obj:
        template = copy.deepcopy(ds["spec"].get("template") or {})
        tspec = template.setdefault("spec", {})
        tspec["tolerations"] = daemon_tolerations(tspec)
        pin_to_node(tspec, node)
        labels = template.setdefault("metadata", {}).setdefault("labels", {})
        labels[HASH_LABEL] = hash_
        labels[GENERATION_LABEL] = str(ds["metadata"].get("generation", 1))
        return podutil.pod_from_template(template, ds, owner_reference(ds))

    async def _manage(self, ds: Obj, by_node: dict[str, list[Obj]], hash_: str) -> None:
        to_create: list[str] = []
        to_delete: list[Obj] = []
        nodes = {n["metadata"]["name"]: n for n in self.nodes.objects()}
        for name, node in nodes.items():
            run, keep = node_should_run(ds, node)
            pods = [p for p in by_node.get(name, []) if not p["metadata"].get("deletionTimestamp")]
            if run and not pods:
                to_create.append(name)
            elif keep and pods:
                failed = [p for p in pods if (p.get("status") or {}).get("phase") == "Failed"]
                for p in failed:
                    self.recorder.event(ds, "Warning", "FailedDaemonPod",
                                        f"Found failed daemon pod {p['metadata']['namespace']}/"
                                        f"{p['metadata']['name']} on node {name}, will try to "
                                        "kill it")
                to_delete += failed
                alive = [p for p in pods if p not in failed]
                surge_pair = len(alive) == 2 and \
                    {p["metadata"]["labels"].get(HASH_LABEL) == hash_ for p in alive} == \
                    {True, False}
                if len(alive) > 1 and not surge_pair:
                    to_delete += alive[1:]  # keep the oldest
            elif not keep and pods:
                to_delete += pods
        for name, pods in by_node.items():
            if name not in nodes:
                to_delete += [p for p in pods if not p["metadata"].get("deletionTimestamp")]
        for name in to_create:
            await self._create(ds, name, hash_)
        for pod in to_delete:
            await self._delete(ds, pod)

    async def _create(self, ds: Obj, node: str, hash_: str) -> None:
        try:
            made = await self.pod_api.create(self._new_pod(ds, node, hash_),
                                             ds["metadata"]["namespace"])
        except ApiError as e:
            self.recorder.event(ds, "Warning", "FailedCreate",
                                f"Error creating: {e.status.get('message', e)}")
            raise
        self.recorder.event(ds, "Normal", "SuccessfulCreate",
                            f"Created pod: {made['metadata']['name']}")

    async def _delete(self, ds: Obj, pod: Obj) -> None:
        try:
            await self.pod_api.delete(pod["metadata"]["name"], pod["metadata"]["namespace"],
                                      preconditions={"uid": pod["metadata"]["uid"]})
        except ApiError as e:
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

    async def _rolling_update(self, ds: Obj, by_node: dict[str, list[Obj]], hash_: str) -> None:
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
                await self._create(ds, name, hash_)
        else:
            room = max(0, max_unavailable - unavailable)
            to_delete += candidates[:room]
        for pod in to_delete:
            await self._delete(ds, pod)

    async def _update_status(self, ds: Obj, by_node: dict[str, list[Obj]], hash_: str) -> None:
        min_ready = int(ds["spec"].get("minReadySeconds") or 0)
        now = time.time()
        desired = current = mis = ready = available = updated = 0
        for node in self.nodes.objects():
            run, _ = node_should_run(ds, node)
            pods = [p for p in by_node.get(node["metadata"]["name"], [])
                    if not p["metadata"].get("deletionTimestamp")]
            if run:
                desired += 1
                if pods:
                    current += 1
                    pod = pods[0]
                    if podutil.is_ready(pod):
                        ready += 1
                        if podutil.is_available(pod, min_ready, now):
                            available += 1
                    if any(p["metadata"].get("labels", {}).get(HASH_LABEL) == hash_
                           for p in pods):
                        updated += 1
            elif pods:
                mis += 1
        status: Obj = {"desiredNumberScheduled": desired, "currentNumberScheduled": current,
                       "numberMisscheduled": mis, "numberReady": ready,
                       "numberAvailable": available, "updatedNumberScheduled": updated,
                       "numberUnavailable": desired - available,
                       "observedGeneration": ds["metadata"].get("generation", 1)}
        if (ds.get("status") or {}).get("collisionCount") is not None:
            status["collisionCount"] = ds["status"]["collisionCount"]
        old = ds.get("status") or {}
        if all((old.get(k) or 0) == v for k, v in status.items()):
            return
        merged = dict(old)
        merged.update(status)
        if not status["numberUnavailable"]:
            merged.pop("numberUnavailable", None)
        ds["status"] = merged
        try:
            await self.ds_api.replace_status(ds, ds["metadata"]["namespace"])
        except ApiError as e:
            if not e.not_found:
                raise
        if min_ready and available < ready:
            self.enqueue_after(ds, min_ready)


CONTROLLERS = {"daemonset": DaemonSetController}
