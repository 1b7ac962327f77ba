"""The scheduler process: informers feed the cache and the queue; one loop
pops the next pending pod, runs its profile's filters and scores, assumes
the pod on the chosen node and binds it through pods/binding.

Binding runs in the background so the loop can schedule the next pod while
the API answers (upstream's binding cycle); a failed bind forgets the
assumption and puts the pod back with backoff.

A preemption is carried out before the loop moves on (upstream's
prepareCandidate): each victim gets the DisruptionTarget condition and is
deleted, lower-priority pods nominated to the same node lose their
nomination, and the preemptor is nominated to the node, in memory at once
and in status.nominatedNodeName.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import socket
import uuid
from typing import Any

from pinnace.api import selectors
from pinnace.client import ApiError, Client, InformerFactory, LeaderElector, auto_config
from pinnace.client.events import EventRecorder
from pinnace.runtime import tune_gc

from .cache import PodInfo, SchedulerCache, pod_key
from .framework import (
    DEFAULT_SCHEDULER,
    Profile,
    binding_for,
    default_profile,
    pod_scheduled_condition_unschedulable,
)
from .plugins.volumebinding import ANN_SELECTED_NODE, VolumeBinding
from .preemption import DISRUPTION_TARGET, disruption_target_condition
from .queue import SchedulingQueue

NOTE_LENGTH_LIMIT = 1024  # events and condition messages are cut to this

log = logging.getLogger("pinnace.scheduler")

Obj = dict[str, Any]


def _pending(pod: Obj, names: set[str]) -> bool:
    spec = pod.get("spec") or {}
    return not spec.get("nodeName") and \
        (spec.get("schedulerName") or DEFAULT_SCHEDULER) in names and \
        not pod["metadata"].get("deletionTimestamp") and \
        (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")


def _assigned(pod: Obj) -> bool:
    return bool((pod.get("spec") or {}).get("nodeName"))


def _nominated_node(pod: Obj) -> str:
    return (pod.get("status") or {}).get("nominatedNodeName") or ""


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def truncate_message(message: str) -> str:
    if len(message) <= NOTE_LENGTH_LIMIT:
        return message
    return message[:NOTE_LENGTH_LIMIT - 4] + " ..."


class Scheduler:
    def __init__(self, client: Client, profiles: list[Profile] | None = None):
        self.client = client
        self.informers = InformerFactory(client)
        self.pods = self.informers.informer("v1", "pods")
        self.nodes = self.informers.informer("v1", "nodes")
        self.pvcs = self.informers.informer("v1", "persistentvolumeclaims")
        self.pvs = self.informers.informer("v1", "persistentvolumes")
        self.storage_classes = self.informers.informer("storage.k8s.io/v1", "storageclasses")
        self.pvc_api = client.resource("v1", "persistentvolumeclaims")
        self.pdbs = self.informers.informer("policy/v1", "poddisruptionbudgets")
        # What selects a pod, for spreading replicas by default.
        self.selecting = [self.informers.informer("v1", "services"),
                          self.informers.informer("v1", "replicationcontrollers"),
                          self.informers.informer("apps/v1", "replicasets"),
                          self.informers.informer("apps/v1", "statefulsets")]
        self.pod_api = client.resource("v1", "pods")
        self.recorder = EventRecorder(client, "default-scheduler")
        # A pod's Scheduled event is sent a moment after its binding, as the
        # node agent's events follow its starts: under a burst the bindings
        # and the pods' starts reach the API server first (10 pods at once
        # on a real node: the median Running ~15% sooner).
        self.scheduled_events = EventRecorder(client, "default-scheduler", delay=0.25)
        self.cache = SchedulerCache()
        self.queue = SchedulingQueue()
        self.profiles = {p.name: p for p in (profiles or [default_profile(
            pvc_lookup=self._pvc, pv_lookup=self._pv,
            default_spread_selector=self._default_selector,
            pdb_lister=self.pdbs.objects)])}
        self.volume_binding = [f for p in self.profiles.values() for f in p.filters
                               if isinstance(f, VolumeBinding)]
        for vb in self.volume_binding:
            if vb.class_lookup is None:
                vb.class_lookup = self.storage_classes.get
        self._binding: set[asyncio.Task[None]] = set()
        self._selectors_changed = 0
        self._selector_memo: dict[tuple[str, tuple[tuple[str, str], ...]],
                                  tuple[int, Obj | None]] = {}

    def _pvc(self, namespace: str, name: str) -> Obj | None:
        return self.pvcs.get(f"{namespace}/{name}")

    def _pv(self, name: str) -> Obj | None:
        return self.pvs.get(name)

    def _default_selector(self, pod: PodInfo) -> Obj | None:
        """The selectors of every service, RC, ReplicaSet and StatefulSet that
        selects the pod, combined (upstream's DefaultSelector). Replicas share
        their labels, so the answer is remembered until a selector changes."""
        key = (pod.namespace, tuple(sorted(pod.labels.items())))
        hit = self._selector_memo.get(key)
        if hit is not None and hit[0] == self._selectors_changed:
            return hit[1]
        result = self._compute_default_selector(pod)
        if len(self._selector_memo) > 10_000:
            self._selector_memo.clear()
        self._selector_memo[key] = (self._selectors_changed, result)
        return result

    def _compute_default_selector(self, pod: PodInfo) -> Obj | None:
        match_labels: dict[str, str] = {}
        expressions: list[Obj] = []
        labels = pod.labels
        for inf in self.selecting:
            for obj in inf.objects(pod.namespace):
                sel = (obj.get("spec") or {}).get("selector")
                if not sel:
                    continue
                if inf.rc.resource in ("services", "replicationcontrollers"):  # plain maps
                    if all(labels.get(k) == v for k, v in sel.items()):
                        match_labels.update(sel)
                elif selectors.label_selector_from_dict(sel).matches(labels):
                    match_labels.update(sel.get("matchLabels") or {})
                    expressions.extend(sel.get("matchExpressions") or [])
        if not match_labels and not expressions:
            return None
        return {"matchLabels": match_labels, "matchExpressions": expressions}

    # -- informer handlers -----------------------------------------------------

    def setup(self) -> None:
        names = set(self.profiles)

        def selectors_changed(*_: Obj) -> None:
            self._selectors_changed += 1

        def selector_updated(old: Obj, new: Obj) -> None:
            if (old.get("spec") or {}).get("selector") != (new.get("spec") or {}).get("selector"):
                selectors_changed()

        for inf in self.selecting:
            inf.add_handler(selectors_changed, selector_updated, selectors_changed)
        self.nodes.add_handler(self._node_added, self._node_updated, self._node_deleted)

        def pod_added(pod: Obj) -> None:
            if _assigned(pod):
                self.cache.add_pod(pod)
            elif _pending(pod, names):
                self.queue.add(pod)
                if _nominated_node(pod):
                    self.cache.add_nominated_pod(PodInfo(pod))

        def pod_updated(old: Obj, new: Obj) -> None:
            if _assigned(new):
                if not _assigned(old):
                    self.queue.delete(new)
                self.cache.update_pod(new) if _assigned(old) else self.cache.add_pod(new)
                if (new.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                    self.queue.move_all_to_active_or_backoff("AssignedPodUpdate")
            elif _pending(new, names):
                self.queue.update(new)
                if _nominated_node(new) or self.cache.nominated_node_of(pod_key(new)):
                    self.cache.update_nominated_pod(old, PodInfo(new))
            else:
                self.queue.delete(new)
                self.cache.delete_nominated_pod(pod_key(new))

        def pod_deleted(pod: Obj) -> None:
            if _assigned(pod):
                self.cache.remove_pod(pod)
                self.queue.move_all_to_active_or_backoff("AssignedPodDelete")
            else:
                self.queue.delete(pod)
                self.cache.delete_nominated_pod(pod_key(pod))

        self.pods.add_handler(pod_added, pod_updated, pod_deleted)

        def volumes_changed(*_: Obj) -> None:  # a claim, volume or class may unblock pods
            self.queue.move_all_to_active_or_backoff("VolumeChange")

        for inf in (self.pvcs, self.pvs, self.storage_classes):
            inf.add_handler(volumes_changed, volumes_changed, None)

    def _node_added(self, node: Obj) -> None:
        self.cache.add_node(node)
        self.queue.move_all_to_active_or_backoff("NodeAdd")

    def _node_updated(self, old: Obj, new: Obj) -> None:
        self.cache.update_node(new)
        # Heartbeat-only status changes do not make anyone schedulable.
        if old.get("spec") != new.get("spec") or \
                (old.get("metadata") or {}).get("labels") != (new.get("metadata") or {}).get(
                    "labels") or \
                (old.get("status") or {}).get("allocatable") != \
                (new.get("status") or {}).get("allocatable"):
            self.queue.move_all_to_active_or_backoff("NodeUpdate")

    def _node_deleted(self, node: Obj) -> None:
        self.cache.remove_node(node["metadata"]["name"])

    # -- the scheduling loop ---------------------------------------------------

    async def run(self) -> None:
        self.informers.start()
        await self.informers.wait_synced()
        tune_gc()
        flushers = asyncio.create_task(self.queue.run_flushers())
        try:
            while True:
                qp = await self.queue.pop()
                if qp is None:
                    return
                cycle = self.queue.scheduling_cycle
                await self.schedule_one(qp, cycle)
                # Yield so informer events and binds make progress between pods.
                await asyncio.sleep(0)
        finally:
            flushers.cancel()
            for t in list(self._binding):
                t.cancel()
            await self.informers.stop()

    async def schedule_one(self, qp: Any, cycle: int) -> None:
        pod = self.pods.get(qp.key) or qp.pod
        if not _pending(pod, set(self.profiles)):
            self.queue.done(pod)
            return
        profile = self.profiles[(pod.get("spec") or {}).get("schedulerName") or DEFAULT_SCHEDULER]
        pi = PodInfo(pod)
        try:
            result = profile.schedule(pi, self.cache)
        except Exception:  # a plugin bug must not stop scheduling everyone else
            log.exception("scheduling %s failed", qp.key)
            self.queue.add_backoff(qp)
            return
        if result.node_name:
            # Assuming the pod also drops its nomination: it is placed now.
            self.cache.assume_pod_info(pi, result.node_name)
            self.queue.done(pod)
            task = asyncio.create_task(self._bind(qp, pod, result.node_name))
            self._binding.add(task)
            task.add_done_callback(self._binding.discard)
            return
        self.queue.add_unschedulable(qp, cycle)
        nominated = result.nominated_node
        if nominated and result.victims and not await self._preempt(pod, nominated, result.victims):
            nominated = None  # as upstream: a failed eviction nominates nothing; retry later
        if nominated is not None:
            # In memory at once, so the next pods leave the room alone before
            # the status update comes back through the informer.
            self.cache.add_nominated_pod(pi, nominated)
        message = truncate_message(result.message)
        self.recorder.event(pod, "Warning", "FailedScheduling", message)
        await self._mark_unschedulable(pod, message, nominated)

    async def _preempt(self, pod: Obj, node: str, victims: list[Obj]) -> bool:
        """Evict the victims for ``pod`` and take lower-priority nominations
        off ``node``: they may no longer fit there and should look elsewhere.
        False if a victim could not be evicted."""
        scheduler = (pod.get("spec") or {}).get("schedulerName") or DEFAULT_SCHEDULER
        uid = pod["metadata"].get("uid", "")
        now = _now()

        async def evict(victim: Obj) -> bool:
            meta = victim["metadata"]
            if meta.get("deletionTimestamp"):
                return True  # already on its way out
            cond = disruption_target_condition(scheduler, now, meta.get("generation"))
            old = next((c for c in (victim.get("status") or {}).get("conditions") or ()
                        if c.get("type") == DISRUPTION_TARGET), None)
            try:
                if old is None or any(old.get(k) != cond[k] for k in ("status", "reason", "message")):
                    await self.pod_api.patch(meta["name"], {"status": {"conditions": [cond]}},
                                             meta["namespace"], type="strategic",
                                             subresource="status")
                await self.pod_api.delete(meta["name"], meta["namespace"])
            except ApiError as e:
                if e.not_found:
                    return True
                log.warning("preempting %s failed: %s", pod_key(victim), e)
                return False
            except (OSError, asyncio.TimeoutError) as e:
                log.warning("preempting %s failed: %s", pod_key(victim), e)
                return False
            self.recorder.event(victim, "Normal", "Preempted",
                                f"Preempted by pod {uid} on node {node}")
            return True

        if not all(await asyncio.gather(*(evict(v) for v in victims))):
            return False
        priority = int((pod.get("spec") or {}).get("priority") or 0)
        for p in self.cache.nominated_pods(node):
            if p.priority < priority:
                self.cache.delete_nominated_pod(p.key)
                current = self.pods.get(p.key)
                if current is not None and _nominated_node(current):
                    await self._patch_status(current, {"status": {"nominatedNodeName": None}})
        return True

    async def _bind(self, qp: Any, pod: Obj, node: str) -> None:
        meta = pod["metadata"]
        try:
            await self._prebind_volumes(pod, node)
        except (ApiError, OSError, asyncio.TimeoutError) as e:
            self.cache.forget_pod(pod)
            log.warning("binding volumes of %s to %s failed: %s", qp.key, node, e)
            current = self.pods.get(qp.key)
            if current is not None and not _assigned(current):
                self.queue.add(current)
            return
        try:
            await self.pod_api.create_subresource(meta["name"], "binding",
                                                  binding_for(pod, node), meta["namespace"])
        except (ApiError, OSError, asyncio.TimeoutError) as e:
            self.cache.forget_pod(pod)
            if isinstance(e, ApiError) and (e.not_found or e.conflict):
                return  # deleted, or bound by someone else: nothing to retry
            log.warning("binding %s to %s failed: %s", qp.key, node, e)
            current = self.pods.get(qp.key)
            if current is not None and not _assigned(current):
                self.queue.add(current)
            return
        # The API server has cleared the nomination as it bound the pod.
        self.scheduled_events.event(pod, "Normal", "Scheduled",
                                    f"Successfully assigned {meta['namespace']}/{meta['name']} to {node}")

    async def _prebind_volumes(self, pod: Obj, node: str) -> None:
        """VolumeBinding's PreBind: each unbound WaitForFirstConsumer claim of
        the pod learns the chosen node (volume.kubernetes.io/selected-node),
        which the provisioner then serves. Unlike upstream this does not wait
        for the claims to bind: the kubelet retries the pod's volumes until
        they are bound."""
        seen: set[str] = set()
        for vb in self.volume_binding:
            for pvc in vb.claims_to_provision(pod):
                meta = pvc["metadata"]
                if meta["name"] in seen or \
                        (meta.get("annotations") or {}).get(ANN_SELECTED_NODE) == node:
                    continue
                seen.add(meta["name"])
                await self.pvc_api.patch(meta["name"], {"metadata": {"annotations": {
                    ANN_SELECTED_NODE: node}}}, meta["namespace"])

    async def _patch_status(self, pod: Obj, patch: Obj) -> None:
        meta = pod["metadata"]
        try:
            await self.pod_api.patch(meta["name"], patch, meta["namespace"], subresource="status")
        except ApiError as e:
            if not e.not_found:
                log.info("updating %s status failed: %s", pod_key(pod), e)
        except (OSError, asyncio.TimeoutError) as e:
            log.info("updating %s status failed: %s", pod_key(pod), e)

    async def _mark_unschedulable(self, pod: Obj, message: str, nominated: str | None) -> None:
        """PodScheduled=False with ``message``; ``nominated`` sets (a name),
        clears ("") or leaves (None) status.nominatedNodeName."""
        status = pod.get("status") or {}
        cond = pod_scheduled_condition_unschedulable(message, _now())
        if pod["metadata"].get("generation") is not None:
            cond["observedGeneration"] = pod["metadata"]["generation"]
        old = next((c for c in status.get("conditions") or [] if c.get("type") == "PodScheduled"),
                   None)
        nnn_changes = nominated is not None and (status.get("nominatedNodeName") or "") != nominated
        if old is not None and old.get("status") == "False":
            if old.get("reason") == cond["reason"] and old.get("message") == message \
                    and not nnn_changes:
                return  # already says so
            if old.get("lastTransitionTime"):
                cond["lastTransitionTime"] = old["lastTransitionTime"]
        conditions = [c for c in status.get("conditions") or []
                      if c.get("type") != "PodScheduled"] + [cond]
        patch: Obj = {"status": {"conditions": conditions}}
        if nnn_changes:
            patch["status"]["nominatedNodeName"] = nominated or None
        await self._patch_status(pod, patch)


async def run_scheduler(kubeconfig: str | None, leader_elect: bool = True) -> None:
    config = auto_config(kubeconfig)
    config.user_agent = "kube-scheduler/pinnace"
    client = Client(config, max_connections=100)
    scheduler = Scheduler(client)
    scheduler.setup()
    try:
        if leader_elect:
            identity = f"{socket.gethostname()}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
            await LeaderElector(client, "kube-scheduler", identity).run(scheduler.run)
        else:
            await scheduler.run()
    finally:
        await client.close()
