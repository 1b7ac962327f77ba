"""Node health and what follows from it (upstream's node-lifecycle-controller
and taint-eviction-controller).

``NodeLifecycleController`` watches each Node and its Lease in
kube-node-lease. A node whose kubelet has neither renewed the Lease nor
posted a new Ready heartbeat for the grace period gets its kubelet
conditions set to Unknown; node conditions are then mirrored into taints
(NoSchedule for the scheduler, NoExecute for eviction) and the taints
removed again when the node recovers. Liveness is judged by when *this
controller* saw a heartbeat change, not by the timestamps in it, so clock
skew between node and controller does not matter (as upstream).

``TaintEvictionController`` deletes pods on nodes with NoExecute taints they
do not tolerate: at once, or once the matching toleration's
``tolerationSeconds`` have passed since the taint was added.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from pinnace.client import ApiError, key_of

from .base import Context, Controller
from .pods import condition, parse_time

Obj = dict[str, Any]

LEASE_NAMESPACE = "kube-node-lease"
KUBELET_CONDITIONS = ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure")
NOT_READY = "node.kubernetes.io/not-ready"
UNREACHABLE = "node.kubernetes.io/unreachable"
UNSCHEDULABLE = "node.kubernetes.io/unschedulable"
# (condition, status) -> the NoSchedule taint it implies (TaintNodesByCondition).
CONDITION_TAINTS = {
    ("Ready", "False"): NOT_READY,
    ("Ready", "Unknown"): UNREACHABLE,
    ("MemoryPressure", "True"): "node.kubernetes.io/memory-pressure",
    ("DiskPressure", "True"): "node.kubernetes.io/disk-pressure",
    ("PIDPressure", "True"): "node.kubernetes.io/pid-pressure",
    ("NetworkUnavailable", "True"): "node.kubernetes.io/network-unavailable",
}
NO_SCHEDULE_KEYS = frozenset(CONDITION_TAINTS.values()) | {UNSCHEDULABLE}
NO_EXECUTE_KEYS = frozenset({NOT_READY, UNREACHABLE})
NODE_INDEX = "spec.nodeName"


def now_rfc3339(t: float | None = None) -> str:
    when = dt.datetime.now(dt.UTC) if t is None else dt.datetime.fromtimestamp(t, dt.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def pods_by_node(pod: Obj) -> list[str]:
    node = (pod.get("spec") or {}).get("nodeName")
    return [node] if node else []


# -- pure rules -----------------------------------------------------------------


def unknown_conditions(node: Obj, now: str) -> list[Obj] | None:
    """The node's conditions with every kubelet condition set to Unknown, or
    None when they all already are."""
    conds = [dict(c) for c in (node.get("status") or {}).get("conditions") or []]
    changed = False
    for type_ in KUBELET_CONDITIONS:
        c = next((c for c in conds if c.get("type") == type_), None)
        if c is None:
            conds.append({"type": type_, "status": "Unknown", "reason": "NodeStatusNeverUpdated",
                          "message": "Kubelet never posted node status.",
                          "lastHeartbeatTime": now, "lastTransitionTime": now})
            changed = True
        elif c.get("status") != "Unknown":
            c.update(status="Unknown", reason="NodeStatusUnknown",
                     message="Kubelet stopped posting node status.", lastTransitionTime=now)
            changed = True
    return conds if changed else None


def desired_taints(node: Obj, now: str) -> list[Obj]:
    """spec.taints as they should be: taints this controller does not manage
    kept as they are, condition taints added or removed; a taint already
    present keeps its timeAdded."""
    current = list((node.get("spec") or {}).get("taints") or [])
    want: list[tuple[str, str]] = []
    for c in (node.get("status") or {}).get("conditions") or []:
        key = CONDITION_TAINTS.get((c.get("type"), c.get("status")))
        if key:
            want.append((key, "NoSchedule"))
    if (node.get("spec") or {}).get("unschedulable"):
        want.append((UNSCHEDULABLE, "NoSchedule"))
    ready = condition(node, "Ready")
    if ready is not None and ready.get("status") == "False":
        want.append((NOT_READY, "NoExecute"))
    elif ready is not None and ready.get("status") == "Unknown":
        want.append((UNREACHABLE, "NoExecute"))

    def managed(t: Obj) -> bool:
        return (t.get("effect") == "NoSchedule" and t.get("key") in NO_SCHEDULE_KEYS) or \
            (t.get("effect") == "NoExecute" and t.get("key") in NO_EXECUTE_KEYS)

    out = [t for t in current if not managed(t) or (t.get("key"), t.get("effect")) in want]
    have = {(t.get("key"), t.get("effect")) for t in out}
    for key, effect in want:
        if (key, effect) not in have:
            taint: Obj = {"key": key, "effect": effect}
            if effect == "NoExecute":
                taint["timeAdded"] = now
            out.append(taint)
            have.add((key, effect))
    return out


def tolerates(tol: Obj, taint: Obj) -> bool:
    if tol.get("effect") and tol.get("effect") != taint.get("effect"):
        return False
    op = tol.get("operator") or "Equal"
    if not tol.get("key"):
        return op == "Exists"  # an empty key with Exists tolerates everything
    if tol.get("key") != taint.get("key"):
        return False
    if op == "Exists":
        return True
    return op == "Equal" and (tol.get("value") or "") == (taint.get("value") or "")


def eviction_time(pod: Obj, taints: list[Obj], added: dict[str, float]) -> float | None:
    """When (epoch seconds) the pod must go because of NoExecute ``taints``:
    0 for at once, None for never. ``added`` gives each taint key's added time
    for taints without timeAdded."""
    tolerations = (pod.get("spec") or {}).get("tolerations") or []
    deadline: float | None = None
    for taint in taints:
        matching = [t for t in tolerations if tolerates(t, taint)]
        if not matching:
            return 0.0
        secs = [t["tolerationSeconds"] for t in matching if t.get("tolerationSeconds") is not None]
        if len(secs) < len(matching):
            continue  # one toleration without a limit tolerates it forever
        start = parse_time(taint.get("timeAdded")) or added.get(taint.get("key") or "", 0.0)
        when = start + max(min(int(s) for s in secs), 0)
        deadline = when if deadline is None else min(deadline, when)
    return deadline


def no_execute_taints(node: Obj | None) -> list[Obj]:
    if node is None:
        return []
    return [t for t in (node.get("spec") or {}).get("taints") or []
            if t.get("effect") == "NoExecute"]


# -- node lifecycle -------------------------------------------------------------------


class NodeLifecycleController(Controller):
    name = "nodelifecycle"
    event_source = "node-controller"
    workers = 2

    def __init__(self, ctx: Context):
        super().__init__(ctx)
        self.grace = float(ctx.options.get("node_monitor_grace_period", 40))
        self.period = float(ctx.options.get("node_monitor_period", 5))
        self.nodes = ctx.informers.informer("v1", "nodes")
        self.leases = ctx.informers.informer("coordination.k8s.io/v1", "leases", LEASE_NAMESPACE)
        self.pods = ctx.informers.informer("v1", "pods")
        self.node_api = self.client.resource("v1", "nodes")
        self.pod_api = self.client.resource("v1", "pods")
        # node -> (lease renewTime, Ready heartbeat, monotonic time we saw them change)
        self._health: dict[str, tuple[str | None, str | None, float]] = {}
        self._registered: dict[str, str] = {}  # the nodes this controller knows -> their uids

    def setup(self) -> None:
        self.nodes.add_handler(self.enqueue, lambda old, new: self.enqueue(new), self.enqueue)
        self.leases.add_handler(self._lease_changed, lambda old, new: self._lease_changed(new))
        self.pods.add_index(NODE_INDEX, pods_by_node)

    def _lease_changed(self, lease: Obj) -> None:
        self.queue.add(lease["metadata"]["name"])

    async def run(self) -> None:
        await asyncio.gather(super().run(), self._monitor())

    async def _monitor(self) -> None:
        # A safety net next to the per-node timers: look at every node each period.
        while True:
            await self.ctx.clock.sleep(self.period)
            for node in self.nodes.objects():
                self.enqueue(node)

    def _probe_age(self, name: str, node: Obj) -> float:
        lease = self.leases.get(f"{LEASE_NAMESPACE}/{name}")
        renew = ((lease or {}).get("spec") or {}).get("renewTime")
        ready = condition(node, "Ready") or {}
        beat = ready.get("lastHeartbeatTime")
        now = self.ctx.clock.monotonic()
        prev = self._health.get(name)
        if prev is None or prev[0] != renew or prev[1] != beat:
            self._health[name] = (renew, beat, now)
            return 0.0
        return now - prev[2]

    async def sync(self, key: str) -> None:
        node = self.nodes.get(key)
        if node is None:
            self._health.pop(key, None)
            uid = self._registered.pop(key, None)
            if uid is not None:
                self._node_event(key, uid, "RemovingNode", f"Removing Node {key} from Controller")
            return
        uid = node["metadata"].get("uid") or ""
        if self._registered.get(key) != uid:
            self._registered[key] = uid
            self._node_event(key, uid, "RegisteredNode", f"Registered Node {key} in Controller")
        age = self._probe_age(key, node)
        if age > self.grace:
            node = await self._mark_unknown(node)
        else:
            self.enqueue_after(key, self.grace - age + 0.1)
        await self._reconcile_taints(node)

    def _node_event(self, name: str, uid: str, reason: str, what: str) -> None:
        """As upstream's RecordNodeEvent words them ("Node X event: ...")."""
        self.recorder.event({"kind": "Node", "apiVersion": "v1",
                             "metadata": {"name": name, "uid": uid}},
                            "Normal", reason, f"Node {name} event: {what}")

    async def _mark_unknown(self, node: Obj) -> Obj:
        now = now_rfc3339(self.ctx.clock.time())
        conds = unknown_conditions(node, now)
        if conds is None:
            return node
        meta = node["metadata"]
        was_ready = (condition(node, "Ready") or {}).get("status") == "True"
        updated: Obj = await self.node_api.patch(meta["name"], {
            "metadata": {"resourceVersion": meta["resourceVersion"]},
            "status": {"conditions": conds}}, subresource="status")
        self.log.info("node %s stopped posting status: marked Unknown", meta["name"])
        if was_ready:
            self.recorder.event(node, "Normal", "NodeNotReady",
                                f"Node {meta['name']} status is now: NodeNotReady")
            await self._mark_pods_not_ready(meta["name"])
        return updated

    async def _mark_pods_not_ready(self, node_name: str) -> None:
        now = now_rfc3339(self.ctx.clock.time())
        for pod in self.pods.by_index(NODE_INDEX, node_name):
            if pod["metadata"].get("deletionTimestamp") or \
                    (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                continue
            ready = condition(pod, "Ready")
            if ready is None or ready.get("status") == "False":
                continue
            try:
                await self.pod_api.patch(pod["metadata"]["name"], {"status": {"conditions": [
                    {"type": "Ready", "status": "False", "lastTransitionTime": now}]}},
                    pod["metadata"]["namespace"], type="strategic", subresource="status")
            except ApiError as e:
                if not e.not_found:
                    raise
            self.recorder.event(pod, "Warning", "NodeNotReady", "Node is not ready")

    async def _reconcile_taints(self, node: Obj) -> None:
        current = (node.get("spec") or {}).get("taints") or []
        want = desired_taints(node, now_rfc3339(self.ctx.clock.time()))
        if want == current:
            return
        meta = node["metadata"]
        await self.node_api.patch(meta["name"], {
            "metadata": {"resourceVersion": meta["resourceVersion"]},
            "spec": {"taints": want or None}})


# -- taint eviction ---------------------------------------------------------------------


class TaintEvictionController(Controller):
    name = "tainteviction"
    event_source = "taint-eviction-controller"
    workers = 4

    def __init__(self, ctx: Context):
        super().__init__(ctx)
        self.nodes = ctx.informers.informer("v1", "nodes")
        self.pods = ctx.informers.informer("v1", "pods")
        self.pod_api = self.client.resource("v1", "pods")
        self._scheduled: dict[str, float] = {}
        # (node, taint key) -> when first seen, for taints that carry no timeAdded
        self._seen: dict[tuple[str, str], float] = {}

    def setup(self) -> None:
        self.pods.add_index(NODE_INDEX, pods_by_node)
        self.nodes.add_handler(self._node_changed, self._node_updated, self._node_changed)
        self.pods.add_handler(self._pod_changed, lambda old, new: self._pod_changed(new),
                              self._pod_changed)

    def _node_changed(self, node: Obj) -> None:
        for pod in self.pods.by_index(NODE_INDEX, node["metadata"]["name"]):
            self.enqueue(pod)

    def _node_updated(self, old: Obj, new: Obj) -> None:
        if no_execute_taints(old) != no_execute_taints(new):
            name = new["metadata"]["name"]
            keep = {t.get("key") or "" for t in no_execute_taints(new)}
            for seen in [s for s in self._seen if s[0] == name and s[1] not in keep]:
                del self._seen[seen]
            self._node_changed(new)

    def _pod_changed(self, pod: Obj) -> None:
        key = key_of(pod)
        node = (pod.get("spec") or {}).get("nodeName")
        if key in self._scheduled or (node and no_execute_taints(self.nodes.get(node))):
            self.queue.add(key)

    def _cancel(self, key: str, pod: Obj | None) -> None:
        if self._scheduled.pop(key, None) is not None and pod is not None:
            self.recorder.event(pod, "Normal", "TaintManagerEviction",
                                f"Cancelling deletion of Pod {key}")

    async def sync(self, key: str) -> None:
        pod = self.pods.get(key)
        if pod is None or pod["metadata"].get("deletionTimestamp"):
            self._scheduled.pop(key, None)
            return
        node_name = (pod.get("spec") or {}).get("nodeName")
        taints = no_execute_taints(self.nodes.get(node_name)) if node_name else []
        now = self.ctx.clock.time()
        added = {}
        for t in taints:
            added[t.get("key") or ""] = self._seen.setdefault((node_name or "", t.get("key") or ""),
                                                              now)
        when = eviction_time(pod, taints, added)
        if when is None:
            self._cancel(key, pod)
            return
        if when > now:
            self._scheduled[key] = when
            self.enqueue_after(key, when - now + 0.05)
            return
        self._scheduled.pop(key, None)
        await self._evict(pod)

    async def _evict(self, pod: Obj) -> None:
        meta = pod["metadata"]
        key = key_of(pod)
        self.recorder.event(pod, "Normal", "TaintManagerEviction",
                            f"Marking for deletion Pod {key}")
        try:
            await self.pod_api.patch(meta["name"], {"status": {"conditions": [{
                "type": "DisruptionTarget", "status": "True", "reason": "DeletionByTaintManager",
                "message": "Taint manager: deleting due to NoExecute taint",
                "lastTransitionTime": now_rfc3339(self.ctx.clock.time())}]}},
                meta["namespace"], type="strategic",
                subresource="status")
            # The node's kubelet is gone: nobody would confirm a graceful stop.
            await self.pod_api.delete(meta["name"], meta["namespace"], grace_period_seconds=0,
                                      preconditions={"uid": meta["uid"]})
        except ApiError as e:
            if not (e.not_found or e.conflict):
                raise
        self.log.info("evicted pod %s from tainted node %s", key,
                      (pod.get("spec") or {}).get("nodeName"))


CONTROLLERS: dict[str, type[Controller]] = {
    "nodelifecycle": NodeLifecycleController,
    "tainteviction": TaintEvictionController,
}
