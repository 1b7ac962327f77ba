"""Simulated nodes, like kwok: many Nodes served by one process, with no
containers behind them.

Each simulated node registers its Node, heartbeats through a Lease in
kube-node-lease like a kubelet (renewed every 10 s; the node lifecycle
controller reads Leases for liveness), reports its status only when it
changes or every nodeStatusReportFrequency (5 min), takes the pods bound to
it to Running with a pod IP, finishes graceful deletion, and can be stopped
to simulate a node failure (then it does nothing at all: its Lease expires
and its pods stay as they are). What each pod does over time (start and
readiness delays, exits, crash loops, flapping readiness) is its behaviour
(pinnace.kubelet.simstages), played out here as a kubelet would.

Built for thousands of nodes in one process: one pod informer and one node
informer keep slim copies of only our objects, one timer heap drives every
Lease renewal and status report, spread evenly over the period rather than
all at the same instant, and a bounded number of requests is in flight.
"""

from __future__ import annotations

import asyncio
import heapq
import ipaddress
import logging
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pinnace.client import ApiError, Client, Informer, WorkQueue, auto_config, key_of
from pinnace.client.clock import Clock, SteppedClock, wait_event
from pinnace.client.workqueue import process

from . import lease
from .ipam import NodeIPAM, PoolExhausted, fallback_cidr
from .lease import LEASE_NAMESPACE
from .podstatus import (
    completed_inits,
    container_id,
    container_status,
    pod_status,
    rfc3339,
    running_status,
)
from .simstages import (
    ANNOTATIONS,
    PLAIN,
    USAGE_ANNOTATION,
    Behaviour,
    Stages,
    crash_backoff,
    parse_duration,
)

log = logging.getLogger("pinnace.kubelet.sim")

Obj = dict[str, Any]

KUBELET_VERSION = "v1.37.0-pinnace-sim"
RUNTIME_VERSION = "sim://1.0"
HOST_IP_BASE = int(ipaddress.IPv4Address("10.200.0.0"))
DEFAULT_CAPACITY = {"cpu": "32", "memory": "256Gi", "pods": "110",
                    "ephemeral-storage": "100Gi", "hugepages-1Gi": "0", "hugepages-2Mi": "0"}

_LEASE, _STATUS = 0, 1


# -- slim copies: at 150,000 pods the informer must not hold whole objects ----

def _slim_container(c: Obj) -> Obj:
    out = {"name": c.get("name"), "image": c.get("image")}
    for k in ("resources", "volumeMounts", "restartPolicy"):
        if c.get(k):
            out[k] = c[k]
    return out


def slim_pod(pod: Obj) -> Obj:
    """What the simulator needs of a pod (and what its status is built from)."""
    meta, spec, st = pod.get("metadata") or {}, pod.get("spec") or {}, pod.get("status") or {}
    m = {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "generation",
                              "deletionTimestamp") if k in meta}
    ann = meta.get("annotations")
    if ann and any(k in ANNOTATIONS for k in ann):
        m["annotations"] = {k: v for k, v in ann.items() if k in ANNOTATIONS}
    s = {k: spec[k] for k in ("nodeName", "restartPolicy", "hostNetwork", "readinessGates")
         if k in spec}
    s["containers"] = [_slim_container(c) for c in spec.get("containers") or []]
    if spec.get("initContainers"):
        s["initContainers"] = [_slim_container(c) for c in spec["initContainers"]]
    status = {k: st[k] for k in ("phase", "podIP", "startTime", "qosClass", "conditions")
              if k in st}
    # Where a restarted simulator picks up a crash-looping pod's count.
    restarts = max((int(c.get("restartCount") or 0) for c in st.get("containerStatuses") or ()),
                   default=0)
    if restarts:
        status["restarts"] = restarts
    return {"metadata": m, "spec": s, "status": status}


def _slim_with(stages: Stages) -> Any:
    def transform(pod: Obj) -> Obj:
        slim = slim_pod(pod)
        behaviour = stages.for_pod(pod)
        if not behaviour.plain:
            slim["behaviour"] = behaviour
        return slim
    return transform


def slim_node(node: Obj) -> Obj:
    meta, spec, st = node.get("metadata") or {}, node.get("spec") or {}, node.get("status") or {}
    return {"metadata": {k: meta[k] for k in ("name", "uid", "resourceVersion") if k in meta},
            "spec": {k: spec[k] for k in ("podCIDR", "podCIDRs") if k in spec},
            "status": {"conditions": st.get("conditions") or []}}


# -- one simulated node --------------------------------------------------------

@dataclass(slots=True)
class PodRun:
    """Where a pod with a behaviour is in it (clock seconds since the epoch)."""

    started: float  # the containers' current (or last) start
    restarts: int = 0
    backoff: float = 0.0  # the crash back-off in force
    waiting_until: float = 0.0  # > 0: in CrashLoopBackOff until then
    last_exit: tuple[int, float, float] | None = None  # (code, started, finished)
    reported: Any = None  # what the last status we sent said, to send only changes


@dataclass(slots=True, eq=False)
class SimNode:
    name: str
    index: int
    host_ip: str
    ipam: NodeIPAM
    running: bool = True
    registered: bool = False
    uid: str = ""
    lease: Obj | None = None
    busy: bool = False  # a heartbeat request is in flight
    ids: tuple[str, str, str] = field(default_factory=lambda: (
        uuid.uuid4().hex, str(uuid.uuid4()), str(uuid.uuid4())))


class SimNodes:
    """Simulate ``names`` as nodes of the cluster ``client`` talks to.

    capacity: resources each node reports (cpu, memory, pods, ephemeral-storage).
    pod_startup_delay: seconds between seeing a pod bound and reporting it Running.
    lease_duration: Lease spec.leaseDurationSeconds (40, as kubelet); the
      Lease is renewed every quarter of it unless renew_interval is given.
    status_report_frequency: a node whose status did not change still posts
      it this often (upstream nodeStatusReportFrequency, 5 min).
    first_index: index of names[0], so several simulators get distinct host
      IPs and fallback pod ranges.
    max_in_flight: requests at once for heartbeats and pod updates.
    """

    def __init__(self, client: Client, names: Iterable[str], capacity: dict[str, str] | None = None,
                 *, pod_startup_delay: float = 0.0, lease_duration: int = 40,
                 renew_interval: float | None = None, status_report_frequency: float = 300.0,
                 first_index: int = 0, labels: dict[str, str] | None = None,
                 workers: int = 16, max_in_flight: int = 32, stages: Stages | None = None,
                 clock: Clock | None = None):
        self.client = client
        self.stages = stages or Stages()
        self.clock = clock or Clock()
        self.capacity = {**DEFAULT_CAPACITY, **(capacity or {})}
        self.pod_startup_delay = pod_startup_delay
        self.lease_duration = lease_duration
        self.renew_interval = renew_interval or lease_duration / 4
        self.status_report_frequency = status_report_frequency
        self.labels = dict(labels or {})
        self.workers = workers
        self.nodes_rc = client.resource("v1", "nodes")
        self.pods_rc = client.resource("v1", "pods")
        self.leases_rc = client.resource("coordination.k8s.io/v1", "leases")
        self.nodes: dict[str, SimNode] = {}
        for i, name in enumerate(names):
            idx = first_index + i
            self.nodes[name] = SimNode(name, idx, str(ipaddress.IPv4Address(
                HOST_IP_BASE + 1 + idx)), NodeIPAM(fallback_cidr(idx)))
        self.pod_informer = Informer(self.pods_rc, keep=self._ours,
                                     transform=_slim_with(self.stages))
        self.pod_informer.add_index("node", lambda p: [p["spec"].get("nodeName") or ""])
        self.node_informer = Informer(
            self.nodes_rc, keep=lambda n: n["metadata"]["name"] in self.nodes,
            transform=slim_node)
        self.queue = WorkQueue(call_later=self.clock.call_later)
        self.ready = asyncio.Event()
        # Heartbeats (registration, Leases, node status) and pod work have
        # budgets of their own: a burst of pod updates must never hold up
        # the Lease renewals that keep the nodes Ready.
        self._beats = asyncio.Semaphore(max_in_flight)
        self._sem = asyncio.Semaphore(max_in_flight)
        self._heap: list[tuple[float, int, int, str, bool]] = []
        self._seq = 0
        self._wake = asyncio.Event()
        self._first_seen: dict[str, float] = {}
        self._runs: dict[str, PodRun] = {}  # pod uid -> its behaviour's progress
        # Pods we reported Succeeded or Failed: a sync that still sees the
        # informer's older copy must not start them again.
        self._ended: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()

    def _ours(self, pod: Obj) -> bool:
        return (pod.get("spec") or {}).get("nodeName") in self.nodes

    # -- lifecycle ---------------------------------------------------------------

    async def run(self) -> None:
        """Register every node, then heartbeat and run pods until cancelled."""
        try:
            await self._ensure_lease_namespace()
            await asyncio.gather(*(self._bounded(self._register(n))
                                   for n in self.nodes.values()))
            self.node_informer.add_handler(self._node_changed, lambda o, n: self._node_changed(n),
                                           self._node_deleted)
            self.pod_informer.add_handler(self._pod_event, lambda o, n: self._pod_event(n),
                                          self._pod_deleted)
            self.node_informer.start()
            self.pod_informer.start()
            await asyncio.gather(self.node_informer.synced.wait(),
                                 self.pod_informer.synced.wait())
            self._schedule_all()
            if isinstance(self.clock, SteppedClock):
                self.clock.on_advance(self._clock_jumped)
            self.ready.set()
            log.info("simulating %d nodes", len(self.nodes))
            await asyncio.gather(self._heartbeat_loop(),
                                 *(process(self.queue, self._bounded_sync, log, "pod")
                                   for _ in range(self.workers)))
        finally:
            await self.queue.shutdown()
            for t in list(self._tasks):
                t.cancel()
            await self.pod_informer.stop()
            await self.node_informer.stop()

    def stop_node(self, name: str) -> None:
        """Simulate a node failure: no more Lease renewals, status or pod work."""
        self.nodes[name].running = False

    def start_node(self, name: str) -> None:
        """Bring a stopped (or deleted) node back: register it if need be,
        report Ready, renew the Lease, resume its pods."""
        node = self.nodes[name]
        if node.running:
            return
        node.running = True
        self._push(time.monotonic(), _LEASE, name)
        self._push(time.monotonic(), _STATUS, name)
        for pod in self.pod_informer.by_index("node", name):
            self.queue.add(key_of(pod))

    async def _clock_jumped(self, seconds: float) -> None:
        """A test moved time forward: renew every live node's Lease now, as
        they would have been renewed all along, so only stopped nodes look
        silent to the node lifecycle controller."""
        live = [n for n in self.nodes.values() if n.running and n.registered]
        await asyncio.gather(*(self._bounded(self._renew(n)) for n in live),
                             return_exceptions=True)

    async def _bounded(self, coro: Any) -> Any:
        async with self._beats:
            return await coro

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- node registration and status --------------------------------------------

    async def _ensure_lease_namespace(self) -> None:
        try:
            await self.client.resource("v1", "namespaces").create(
                {"apiVersion": "v1", "kind": "Namespace",
                 "metadata": {"name": LEASE_NAMESPACE}})
        except ApiError as e:
            if not e.conflict and e.code != 403:
                raise

    def node_object(self, node: SimNode) -> Obj:
        labels = {"kubernetes.io/hostname": node.name, "kubernetes.io/os": "linux",
                  "kubernetes.io/arch": "amd64", "beta.kubernetes.io/os": "linux",
                  "beta.kubernetes.io/arch": "amd64",
                  "node.kubernetes.io/instance-type": "pinnace-sim", "type": "sim",
                  **self.labels}
        return {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": node.name, "labels": labels, "annotations": {
                    "node.alpha.kubernetes.io/ttl": "0",
                    "volumes.kubernetes.io/controller-managed-attach-detach": "true"}},
                "spec": {}, "status": self.node_status(node, [])}

    def node_status(self, node: SimNode, old_conditions: list[Obj]) -> Obj:
        machine_id, system_uuid, boot_id = node.ids
        return {
            "capacity": dict(self.capacity), "allocatable": dict(self.capacity),
            "conditions": self.node_conditions(old_conditions),
            "addresses": [{"type": "InternalIP", "address": node.host_ip},
                          {"type": "Hostname", "address": node.name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {"machineID": machine_id, "systemUUID": system_uuid,
                         "bootID": boot_id, "kernelVersion": "6.8.0-pinnace-sim",
                         "osImage": "Pinnace Simulated Node", "containerRuntimeVersion":
                         RUNTIME_VERSION, "kubeletVersion": KUBELET_VERSION,
                         "operatingSystem": "linux", "architecture": "amd64"},
            "runtimeHandlers": [{"name": "", "features": {"recursiveReadOnlyMounts": True,
                                                          "userNamespaces": True}}],
            "features": {"supplementalGroupsPolicy": True},
        }

    @staticmethod
    def node_conditions(old: list[Obj]) -> list[Obj]:
        now = rfc3339()
        prev = {c.get("type"): c for c in old}
        out = []
        for type_, value, reason, message in (
                ("MemoryPressure", "False", "KubeletHasSufficientMemory",
                 "kubelet has sufficient memory available"),
                ("DiskPressure", "False", "KubeletHasNoDiskPressure",
                 "kubelet has no disk pressure"),
                ("PIDPressure", "False", "KubeletHasSufficientPID",
                 "kubelet has sufficient PID available"),
                ("Ready", "True", "KubeletReady", "kubelet is posting ready status")):
            p = prev.get(type_) or {}
            since = p.get("lastTransitionTime") if p.get("status") == value else None
            out.append({"type": type_, "status": value, "lastHeartbeatTime": now,
                        "lastTransitionTime": since or now, "reason": reason,
                        "message": message})
        return out

    async def _register(self, node: SimNode) -> None:
        try:
            created = await self.nodes_rc.create(self.node_object(node))
        except ApiError as e:
            if not e.conflict:
                log.warning("registering node %s: %s", node.name, e)
                return
            # Already there (a restart of the simulator): take it over as kubelet does.
            created = await self.nodes_rc.get(node.name)
            await self._post_status(node, created.get("status", {}).get("conditions") or [])
        node.uid = created["metadata"]["uid"]
        node.registered = True
        cidr = (created.get("spec") or {}).get("podCIDR")
        if cidr:
            node.ipam.set_cidr(cidr)
        await self._renew(node)
        for pod in self.pod_informer.by_index("node", node.name):  # after a re-registration
            self.queue.add(key_of(pod))

    async def _post_status(self, node: SimNode, old_conditions: list[Obj]) -> None:
        body = {"status": self.node_status(node, old_conditions)}
        await self.nodes_rc.patch(node.name, body, type="strategic", subresource="status")

    def _node_changed(self, obj: Obj) -> None:
        node = self.nodes.get(obj["metadata"]["name"])
        if node is None:
            return
        node.uid = obj["metadata"].get("uid") or node.uid
        cidr = obj["spec"].get("podCIDR")
        if cidr and cidr != node.ipam.cidr:
            node.ipam.set_cidr(cidr)
        # Someone else (the node lifecycle controller) marked us not Ready
        # while we run: report at once, as the kubelet's next sync would.
        if node.running and node.registered and not _is_ready(obj):
            self._push(time.monotonic(), _STATUS, node.name)

    def _node_deleted(self, obj: Obj) -> None:
        # Someone removed the Node: like a kubelet that lost its Node, this
        # one goes quiet (its Lease is garbage collected with it);
        # start_node registers it again.
        node = self.nodes.get(obj["metadata"]["name"])
        if node is not None and node.registered:
            log.warning("node %s was deleted; stopping it", node.name)
            node.registered, node.running, node.lease, node.uid = False, False, None, ""

    # -- heartbeats: one timer heap for every node -------------------------------

    def _push(self, due: float, kind: int, name: str, periodic: bool = False) -> None:
        """Queue a heartbeat; a periodic one queues its next turn when it fires."""
        self._seq += 1
        heapq.heappush(self._heap, (due, self._seq, kind, name, periodic))
        if self._heap[0][1] == self._seq:
            self._wake.set()

    def _schedule_all(self) -> None:
        now, n = time.monotonic(), max(len(self.nodes), 1)
        for k, name in enumerate(self.nodes):
            spread = k / n
            self._push(now + self.renew_interval * spread, _LEASE, name, True)
            self._push(now + self.status_report_frequency * (0.5 + 0.5 * spread), _STATUS, name,
                       True)

    async def _heartbeat_loop(self) -> None:
        while True:
            now = time.monotonic()
            while self._heap and self._heap[0][0] <= now:
                due, _, kind, name, periodic = heapq.heappop(self._heap)
                node = self.nodes[name]
                if periodic:
                    period = self.renew_interval if kind == _LEASE else \
                        self.status_report_frequency
                    # Keep each node's phase, unless we fell a whole period behind.
                    nxt = due + period
                    self._push(nxt if nxt > now else now + period / 2, kind, name, True)
                if not node.running:
                    continue
                if node.busy:
                    if not periodic:  # a one-off report must not be lost
                        self._push(now + 0.1, kind, name)
                    continue
                await self._beats.acquire()
                node.busy = True
                self._spawn(self._beat(node, kind))
            self._wake.clear()
            delay = self._heap[0][0] - time.monotonic() if self._heap else 1.0
            await wait_event(self._wake, max(min(delay, 1.0), 0.0))

    async def _beat(self, node: SimNode, kind: int) -> None:
        try:
            if not node.registered:
                await self._register(node)
            elif kind == _LEASE:
                await self._renew(node)
            else:
                slim = self.node_informer.get(node.name)
                await self._post_status(node, slim["status"]["conditions"] if slim else [])
        except (ApiError, OSError, asyncio.TimeoutError) as e:
            log.info("heartbeat of %s: %s", node.name, e)
        finally:
            node.busy = False
            self._beats.release()

    async def _renew(self, node: SimNode) -> None:
        node.lease = await lease.renew(self.leases_rc, node.lease, node.name, node.uid,
                                       self.lease_duration)

    # -- pods ----------------------------------------------------------------------

    def _pod_event(self, pod: Obj) -> None:
        node = self.nodes.get(pod["spec"].get("nodeName"))
        if node is not None and node.running:
            self.queue.add(key_of(pod))

    def _pod_deleted(self, pod: Obj) -> None:
        node = self.nodes.get(pod["spec"].get("nodeName"))
        uid = pod["metadata"].get("uid") or ""
        self._first_seen.pop(uid, None)
        self._runs.pop(uid, None)
        self._ended.discard(uid)
        if node is not None:
            node.ipam.release(uid)

    async def _bounded_sync(self, key: str) -> None:
        async with self._sem:
            await self.sync_pod(key)

    async def sync_pod(self, key: str) -> None:
        """Move one pod on a running node one step towards what a kubelet would show."""
        pod = self.pod_informer.get(key)
        if pod is None:
            return
        meta, spec, status = pod["metadata"], pod["spec"], pod["status"]
        node = self.nodes.get(spec.get("nodeName"))
        if node is None or not node.running or not node.registered:
            return
        uid, ns, name = meta.get("uid") or "", meta.get("namespace"), meta["name"]
        phase = status.get("phase")
        if meta.get("deletionTimestamp"):
            # Containers "stop" at once; finish the graceful deletion as kubelet does.
            node.ipam.release(uid)
            self._runs.pop(uid, None)
            try:
                await self.pods_rc.delete(name, ns, grace_period_seconds=0,
                                          preconditions={"uid": uid})
            except ApiError as e:
                if not (e.not_found or e.conflict):
                    raise
            return
        if phase in ("Succeeded", "Failed") or uid in self._ended:
            node.ipam.release(uid)
            self._first_seen.pop(uid, None)
            self._runs.pop(uid, None)
            return
        behaviour: Behaviour = pod.get("behaviour") or PLAIN
        host_network = bool(spec.get("hostNetwork"))
        if phase == "Running":
            ip = status.get("podIP")
            if ip and not host_network:
                node.ipam.reserve(uid, ip)
            if behaviour.plain:
                await self._reassert_ready(pod, node, ip or "")
            else:
                await self._play(key, pod, node, behaviour, ip or "")
            return
        now = self.clock.monotonic()
        delay = max(self.pod_startup_delay, behaviour.running_after)
        if delay > 0:
            seen = self._first_seen.setdefault(uid, now)
            if now < seen + delay:
                self.queue.add_after(key, seen + delay - now)
                return
        try:
            ip = node.host_ip if host_network else node.ipam.allocate(uid)
        except PoolExhausted as e:
            log.warning("pod %s on %s: %s", key, node.name, e)
            return
        self._first_seen.pop(uid, None)
        if behaviour.usage and (meta.get("annotations") or {}).get(USAGE_ANNOTATION) is None:
            # metrics.k8s.io reads a simulated pod's usage off the pod: a
            # stage's figure is recorded there once, as the pod starts.
            await self.pods_rc.patch(name, {"metadata": {"annotations": {
                USAGE_ANNOTATION: behaviour.usage}}}, ns, type="merge")
        if not behaviour.plain:
            self._runs[uid] = PodRun(started=self.clock.time())
            await self._play(key, pod, node, behaviour, ip)
            return
        body = {"status": running_status(pod, host_ip=node.host_ip, pod_ip=ip,
                                         now=rfc3339(self.clock.time()))}
        await self.pods_rc.patch(name, body, ns, type="merge", subresource="status")

    async def _reassert_ready(self, pod: Obj, node: SimNode, ip: str) -> None:
        """Someone else marked a running pod not Ready (the node lifecycle
        controller, while this node looked down): report it Ready again, as a
        kubelet's status manager puts back what it knows to be true."""
        have = {c.get("type"): c.get("status") for c in pod["status"].get("conditions") or ()}
        want = running_status(pod, host_ip=node.host_ip, pod_ip=ip)["conditions"]
        if have.get("Ready") == "True" or \
                not any(c["type"] == "Ready" and c["status"] == "True" for c in want):
            return
        meta = pod["metadata"]
        await self.pods_rc.patch(meta["name"], {"status": {"conditions": want}},
                                 meta.get("namespace"), type="merge", subresource="status")

    # -- behaviours: starts, readiness, exits and crash loops over time -------------

    async def _play(self, key: str, pod: Obj, node: SimNode, b: Behaviour, ip: str) -> None:
        """Bring a pod with a behaviour up to now: run its exits and restarts,
        report what changed, and come back when the next thing happens."""
        meta, spec = pod["metadata"], pod["spec"]
        uid = meta.get("uid") or ""
        now = self.clock.time()
        run = self._runs.get(uid)
        if run is None:  # a restarted simulator: carry on from the pod's status
            run = self._runs[uid] = PodRun(started=now,
                                           restarts=int(pod["status"].get("restarts") or 0))
        policy = spec.get("restartPolicy") or "Always"
        while True:
            if run.waiting_until and now >= run.waiting_until:
                run.started, run.waiting_until = run.waiting_until, 0.0
            if run.waiting_until or b.exit_after is None or now < run.started + b.exit_after:
                break
            finished = run.started + b.exit_after
            run.last_exit = (b.exit_code, run.started, finished)
            if policy == "Never" or (policy == "OnFailure" and b.exit_code == 0):
                await self._report(pod, node, run, b, ip, terminal=True)
                self._ended.add(uid)
                self._runs.pop(uid, None)
                node.ipam.release(uid)
                return
            run.restarts += 1
            wait, run.backoff = crash_backoff(run.backoff, b.exit_after)
            if wait > 0:
                run.waiting_until = finished + wait
            else:
                run.started = finished
        await self._report(pod, node, run, b, ip, terminal=False)
        upcoming = [t for t in self._next_events(run, b, now) if t > now]
        if upcoming:
            self.queue.add_after(key, min(upcoming) - now + 0.001)

    @staticmethod
    def _next_events(run: PodRun, b: Behaviour, now: float) -> list[float]:
        """When this pod's status changes next, if nothing else happens."""
        if run.waiting_until:
            return [run.waiting_until]
        ready_at = run.started + b.ready_after
        out = [ready_at]
        if b.exit_after is not None:
            out.append(run.started + b.exit_after)
        if b.readiness_flap and now >= ready_at:
            out.append(ready_at + b.readiness_flap * (int((now - ready_at) // b.readiness_flap) + 1))
        return out

    def _ready(self, run: PodRun, b: Behaviour, now: float) -> bool:
        if run.waiting_until or now < run.started + b.ready_after:
            return False
        if b.readiness_flap:
            return int((now - run.started - b.ready_after) // b.readiness_flap) % 2 == 0
        return True

    async def _report(self, pod: Obj, node: SimNode, run: PodRun, b: Behaviour, ip: str,
                      terminal: bool) -> None:
        now = self.clock.time()
        meta, spec = pod["metadata"], pod["spec"]
        uid, name, ns = meta.get("uid") or "", meta["name"], meta.get("namespace")
        ready = not terminal and self._ready(run, b, now)
        last: Obj = {}
        if run.last_exit is not None and (terminal or run.restarts):
            code, started, finished = run.last_exit
            last = {"terminated": {"exitCode": code, "reason": "Completed" if code == 0 else "Error",
                                   "startedAt": rfc3339(started), "finishedAt": rfc3339(finished)}}
        if terminal:
            state, last_state, restarts = last, {}, run.restarts
        elif run.waiting_until:
            assert run.last_exit is not None  # a container waits after it exited
            backoff = int(run.waiting_until - run.last_exit[2])  # the wait being served
            state = {"waiting": {"reason": "CrashLoopBackOff"}}
            last_state, restarts = last, run.restarts
        else:
            state = {"running": {"startedAt": rfc3339(run.started)}}
            last_state, restarts = last, run.restarts
        have_ready = next((c.get("status") for c in pod["status"].get("conditions") or ()
                           if c.get("type") == "Ready"), None)
        signature = (terminal, next(iter(state)), restarts, ready)
        if signature == run.reported and have_ready == ("True" if ready else "False"):
            return
        statuses = []
        for c in spec.get("containers") or []:
            st = dict(state)
            if "waiting" in st:
                st = {"waiting": {"reason": "CrashLoopBackOff", "message": (
                    f"back-off {backoff}s restarting failed "
                    f"container={c.get('name')} pod={name}_{ns}({uid})")}}
            elif "terminated" in st:
                st = {"terminated": {**st["terminated"],
                                     "containerID": container_id(uid, c.get("name") or "",
                                                                 restarts)}}
            statuses.append(container_status(uid, c, st, ready=ready, started="running" in st,
                                             runtime="sim", restarts=restarts,
                                             last_state=last_state))
        start = pod["status"].get("startTime") or rfc3339(run.started)
        phase = "Running" if not terminal else ("Succeeded" if b.exit_code == 0 else "Failed")
        body = {"status": pod_status(
            pod, phase=phase, host_ip=node.host_ip, pod_ip=ip, sandbox=not terminal,
            init_statuses=completed_inits(pod, start), statuses=statuses,
            start_time=start, now=rfc3339(now))}
        await self.pods_rc.patch(name, body, ns, type="merge", subresource="status")
        run.reported = signature


def _is_ready(node: Obj) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in node["status"].get("conditions") or [])


def node_names(count: int, prefix: str = "sim-node-", start: int = 0) -> list[str]:
    return [f"{prefix}{i}" for i in range(start, start + count)]


async def run_sim(kubeconfig: str | None, count: int, prefix: str = "sim-node-",
                  cpu: str = "32", memory: str = "256Gi", pods: str | int = "110", *,
                  ephemeral_storage: str = "100Gi", pod_startup_delay: float = 0.0,
                  first_index: int = 0, labels: dict[str, str] | None = None,
                  stages: Stages | None = None) -> None:
    """`pinnace sim`: simulate ``count`` nodes named prefix0..prefix{count-1}
    until cancelled."""
    client = Client(auto_config(kubeconfig), max_connections=64)
    sim = SimNodes(client, node_names(count, prefix, first_index),
                   {"cpu": str(cpu), "memory": str(memory), "pods": str(pods),
                    "ephemeral-storage": ephemeral_storage},
                   pod_startup_delay=pod_startup_delay, first_index=first_index, labels=labels,
                   stages=stages)
    try:
        await sim.run()
    finally:
        await client.close()


__all__ = ["SimNode", "SimNodes", "node_names", "parse_duration",
           "run_sim", "slim_node", "slim_pod"]
