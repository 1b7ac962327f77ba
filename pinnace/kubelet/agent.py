"""The node agent (kubelet): registers this machine as a Node, keeps its
Lease and status, and runs the pods bound to it as real containers.

It meets the rest of the cluster only through the API server: a pod
informer filtered to this node, a service informer (for the environment
variables Kubernetes injects, shared with the service proxy it runs:
pinnace/proxy), the Nodes (routes to their pods: routes.py), its own
Node, its Lease and Events. Pods are
worked on by a work queue (one pod never by two workers at once); each sync
brings one pod in line (pods.py). Everything it must find again after a
restart lives in the data dir, so restarting the agent never stops a
container.

Layout under DATA/agent/:
  runtime/   containers, as oci.py lays them out
  images/    the image store
  pods/<uid>/ per-pod files: /etc/hosts, resolv.conf, volumes, termination messages
  logs/      container logs, <ns>_<pod>_<uid>/<container>/<attempt>.log
  network/   pod network state (addresses in use)
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from pinnace.client import ApiError, Client, Informer, WorkQueue, auto_config, key_of
from pinnace.client.events import EventRecorder
from pinnace.client.workqueue import process
from pinnace.runtime import pidfd_child_watcher

from . import host, lease, steps
from .oci import RUNNING, OCIRuntime, Record, become_subreaper
from .pods import PodWorkers
from .podstatus import rfc3339

log = logging.getLogger("pinnace.kubelet.agent")

Obj = dict[str, Any]

KUBELET_VERSION = "v1.37.0-pinnace"
LEASE_SECONDS = 40
RENEW_INTERVAL = 10.0
STATUS_INTERVAL = 10.0      # nodeStatusUpdateFrequency: looked at this often...
STATUS_REPORT_EVERY = 60.0  # ...sent when changed, or at least this often
HOUSEKEEPING_INTERVAL = 2.0
VOLUME_REFRESH_INTERVAL = 5.0
IMAGE_GC_INTERVAL = 300.0
MAX_PODS = 110
API_REQUESTS = 4  # requests to the API server in flight at once, watches aside


class Agent:
    def __init__(self, client: Client, data_dir: Path, *, node_name: str = "",
                 runtime: str = "", cluster_dns: list[str] | None = None,
                 cluster_domain: str = "cluster.local", insecure_registries: set[str] | None = None,
                 kubelet_port: int = 10250, ca_file: Path | None = None,
                 tls_dir: Path | None = None, workers: int = 16, labels: dict[str, str] | None = None,
                 proxy: bool = True, proxy_mode: str = "auto", node_ip: str = ""):
        from .images import ImageStore, image_root
        from .network import PodNetwork
        from .volumes import VolumeManager

        self.client = client
        self.root = data_dir / "agent"
        self.root.mkdir(parents=True, exist_ok=True)
        self.facts = host.HostFacts.read(self.root)
        self.node_name = (node_name or self.facts.hostname).lower()
        self.node_ip = node_ip  # the InternalIP to report; default: the default route's source
        self.kubelet_port = kubelet_port
        self.ca_file = ca_file
        self.tls_dir = tls_dir or self.root / "tls"
        self.labels = dict(labels or {})
        self.runtime = OCIRuntime(self.root / "runtime", runtime)
        self.images = ImageStore(image_root(data_dir))
        self.network = PodNetwork(self.root / "network", self.node_name)
        self.volumes = VolumeManager(client, self.root / "pods", node_name=self.node_name,
                                     ca_file=ca_file, cluster_domain=cluster_domain)
        self.queue = WorkQueue()
        self.nodes_rc = client.resource("v1", "nodes")
        self.leases_rc = client.resource("coordination.k8s.io/v1", "leases")
        # Pulled, Created, Started: sent once the pods' own status writes are
        # out, the whole burst's (a node starts 110 pods at most: ~450
        # events wait, under the queue's bound).
        self.recorder = EventRecorder(client, "kubelet", node=self.node_name, delay=0.25,
                                      max_delay=2.0)
        self.pod_informer = Informer(client.resource("v1", "pods"),
                                     field_selector=f"spec.nodeName={self.node_name}")
        self.service_informer = Informer(client.resource("v1", "services"))
        self.pause = shutil.which("catatonit") or "/usr/libexec/podman/catatonit"
        self.pods = PodWorkers(
            client=client, runtime=self.runtime, images=self.images, network=self.network,
            volumes=self.volumes, pods_dir=self.root / "pods", logs_dir=self.root / "logs",
            node_name=self.node_name, host_ip=lambda: self.node_ip or self.facts.ip,
            service_env=self._service_env, requeue=self._requeue, event=self.event,
            cluster_dns=list(cluster_dns or []), cluster_domain=cluster_domain,
            insecure_registries=set(insecure_registries or ()), pause=self.pause)
        from .routes import NodeRoutes

        self.routes = NodeRoutes(client, self.node_name, str(self.network.cluster))
        self.proxier: Any = None
        if proxy:
            from pinnace.proxy.proxier import Proxier

            self.proxier = Proxier(client, self.node_name, self.root / "proxy",
                                   cluster_cidr=str(self.network.cluster), mode=proxy_mode,
                                   services=self.service_informer, nodes=self.routes.nodes)
        self.workers = workers
        self.ready = asyncio.Event()
        self.network_ready = False
        self._lease: Obj | None = None
        self._node_uid = ""
        self._sent_status: Obj | None = None
        self._sent_at = 0.0
        self.server: Any = None

    # -- running ----------------------------------------------------------------

    async def run(self) -> None:
        become_subreaper()
        beats: asyncio.Future[Any] | None = None
        try:
            self.node_event("Starting", "Starting kubelet.")
            self.node_event("NodeAllocatableEnforced", "Updated Node Allocatable limit across pods")
            await self._register()
            beats = asyncio.gather(self._lease_loop(), self._status_loop())
            if not self.network_ready:
                pod_cidr = await self._pod_cidr()
                await asyncio.to_thread(self.network.ensure_host, pod_cidr)
                self.network_ready = True
                await self._post_status(self._sent_status["conditions"] if self._sent_status
                                        else [])
            self.pod_informer.add_handler(self._pod_event, self._pod_update,
                                          self._pod_event)
            self.pod_informer.start()
            self.service_informer.start()
            await asyncio.gather(self.pod_informer.synced.wait(),
                                 self.service_informer.synced.wait())
            await self._start_server()
            self.ready.set()
            log.info("node %s ready (%s %s)", self.node_name, self.runtime.name,
                     self.runtime.version())
            proxy = [self.proxier.run()] if self.proxier is not None else []
            if proxy:
                # kube-proxy's own start, with no message, as it records it.
                self.node_event("Starting", "", EventRecorder(self.client, "kube-proxy",
                                                              node=self.node_name))
            await asyncio.gather(beats, self._housekeeping(), self._refresh_volumes(),
                                 self._image_gc(), self.routes.run(), *proxy,
                                 *(process(self.queue, self._sync, log, "pod")
                                   for _ in range(self.workers)))
        finally:
            if beats is not None:
                beats.cancel()
            await self.queue.shutdown()
            if self.server is not None:
                await self.server.stop()
            await self.pod_informer.stop()
            await self.service_informer.stop()

    async def _start_server(self) -> None:
        if self.ca_file is None or not self.kubelet_port:
            return
        from .server import KubeletServer

        self.server = KubeletServer(self, host="0.0.0.0", port=self.kubelet_port,
                                    tls_dir=self.tls_dir, client_ca=self.ca_file,
                                    node_name=self.node_name)
        await self.server.start()

    # -- the node -----------------------------------------------------------------

    def node_object(self) -> Obj:
        labels = {"kubernetes.io/hostname": self.node_name, "kubernetes.io/os": "linux",
                  "kubernetes.io/arch": host.arch(), "beta.kubernetes.io/os": "linux",
                  "beta.kubernetes.io/arch": host.arch(), **self.labels}
        return {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": self.node_name, "labels": labels, "annotations": {
                    "node.alpha.kubernetes.io/ttl": "0",
                    "volumes.kubernetes.io/controller-managed-attach-detach": "true"}},
                "spec": {}, "status": self.node_status([])}

    def node_status(self, old_conditions: list[Obj]) -> Obj:
        self.facts = host.HostFacts.read(self.root)
        return {
            "capacity": self.facts.capacity(MAX_PODS),
            "allocatable": self.facts.allocatable(MAX_PODS),
            "conditions": self._conditions(old_conditions),
            "addresses": [{"type": "InternalIP", "address": self.node_ip or self.facts.ip},
                          {"type": "Hostname", "address": self.node_name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.kubelet_port}},
            "nodeInfo": host.node_info(self.runtime.name, self.runtime.version(),
                                       KUBELET_VERSION),
            "images": self._images(),
            "runtimeHandlers": [{"name": "", "features": {"recursiveReadOnlyMounts": False,
                                                          "userNamespaces": False}}],
            # A pod's supplementalGroupsPolicy: Strict is honoured here
            # (ocispec.resolve_user); a 1.33+ kubelet rejects such a pod
            # on a node that does not say so.
            "features": {"supplementalGroupsPolicy": True},
        }

    def _images(self) -> list[Obj]:
        out = []
        for img in sorted(self.images.list(), key=lambda i: -i.size)[:50]:
            names = [*img.repo_digests, *img.repo_tags]
            if names:
                out.append({"names": names, "sizeBytes": img.size})
        return out

    def _conditions(self, old: list[Obj]) -> list[Obj]:
        now = rfc3339()
        prev = {c.get("type"): c for c in old}
        pressure = host.pressures(self.root)
        rows = []
        for type_, (on, why), (ok_reason, ok_msg), (bad_reason, bad_msg) in (
                ("MemoryPressure", pressure["MemoryPressure"],
                 ("KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                 ("KubeletHasInsufficientMemory", "kubelet has insufficient memory available")),
                ("DiskPressure", pressure["DiskPressure"],
                 ("KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                 ("KubeletHasDiskPressure", "kubelet has disk pressure")),
                ("PIDPressure", pressure["PIDPressure"],
                 ("KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                 ("KubeletHasInsufficientPID", "kubelet has insufficient PID available"))):
            rows.append((type_, "True" if on else "False", bad_reason if on else ok_reason,
                         f"{bad_msg} ({why})" if on else ok_msg))
        if self.network_ready:
            rows.append(("Ready", "True", "KubeletReady", "kubelet is posting ready status"))
        else:
            rows.append(("Ready", "False", "KubeletNotReady",
                         "container runtime network not ready: NetworkReady=false "
                         "reason:NetworkPluginNotReady message:waiting for the node's podCIDR"))
        out = []
        for type_, value, reason, message in rows:
            p = prev.get(type_) or {}
            since = p.get("lastTransitionTime") if p.get("status") == value else None
            out.append({"type": type_, "status": value, "lastHeartbeatTime": now,
                        "lastTransitionTime": since or now, "reason": reason, "message": message})
        return out

    async def _register(self) -> None:
        """Create the Node, or take over the one a previous run registered."""
        while True:
            try:
                try:
                    node = self.node_object()
                    created = await self.nodes_rc.create(node)
                    self._sent_status, self._sent_at = node["status"], time.monotonic()
                    self._condition_events([], node["status"]["conditions"])
                except ApiError as e:
                    if not e.conflict:
                        raise
                    created = await self.nodes_rc.get(self.node_name)
                    cidr = (created.get("spec") or {}).get("podCIDR")
                    if cidr:  # a restart: the network is there already, stay Ready
                        await asyncio.to_thread(self.network.ensure_host, str(cidr))
                        self.network_ready = True
                    await self._post_status(created["status"].get("conditions") or [])
                self._node_uid = created["metadata"]["uid"]
                await self._renew()
                return
            except (ApiError, OSError) as e:
                log.warning("registering node %s: %s; retrying", self.node_name, e)
                await asyncio.sleep(2)

    async def _pod_cidr(self) -> str:
        """The node's podCIDR, once the node IPAM controller has given one
        (pods wait for it: an address range of our own choosing could be
        another node's)."""
        started, told = time.monotonic(), False
        while True:
            try:
                node = await self.nodes_rc.get(self.node_name)
                cidr = (node.get("spec") or {}).get("podCIDR")
                if cidr:
                    return str(cidr)
            except (ApiError, OSError) as e:
                log.info("waiting for the node's podCIDR: %s", e)
            if not told and time.monotonic() - started > 20:
                told = True
                log.warning("node %s has no podCIDR yet: pods wait for one (is the controller "
                            "manager running, with node IPAM?)", self.node_name)
            await asyncio.sleep(0.5)

    async def _post_status(self, old_conditions: list[Obj]) -> None:
        status = self.node_status(old_conditions)
        await self.nodes_rc.patch(self.node_name, {"status": status}, type="strategic",
                                  subresource="status")
        self._sent_status, self._sent_at = status, time.monotonic()
        self._condition_events(old_conditions, status["conditions"])

    def _condition_events(self, old: list[Obj], new: list[Obj]) -> None:
        for reason in condition_events(old, new):
            self.node_event(reason, f"Node {self.node_name} status is now: {reason}")

    def node_event(self, reason: str, message: str, recorder: EventRecorder | None = None
                   ) -> None:
        """An event about this node, as the kubelet refers to it (its name as
        the uid: `kubectl describe node` looks for both)."""
        (recorder or self.recorder).event(
            {"kind": "Node", "apiVersion": "v1",
             "metadata": {"name": self.node_name, "uid": self.node_name}},
            "Normal", reason, message)

    async def _status_loop(self) -> None:
        while True:
            await asyncio.sleep(STATUS_INTERVAL)
            try:
                node = await self.nodes_rc.get(self.node_name)
                old = node["status"].get("conditions") or []
                status = self.node_status(old)
                changed = self._sent_status is None or _strip(status) != _strip(self._sent_status)
                not_ready = not any(c.get("type") == "Ready" and c.get("status") == "True"
                                    for c in old)
                if changed or not_ready or time.monotonic() - self._sent_at > STATUS_REPORT_EVERY:
                    await self._post_status(old)
            except ApiError as e:
                if e.not_found:
                    log.warning("node %s was deleted; registering it again", self.node_name)
                    self._lease = None
                    await self._register()
                else:
                    log.info("node status: %s", e)
            except OSError as e:
                log.info("node status: %s", e)

    async def _lease_loop(self) -> None:
        while True:
            await asyncio.sleep(RENEW_INTERVAL)
            try:
                await self._renew()
            except (ApiError, OSError) as e:
                log.info("lease: %s", e)

    async def _renew(self) -> None:
        self._lease = await lease.renew(self.leases_rc, self._lease, self.node_name,
                                        self._node_uid, LEASE_SECONDS)

    # -- pods ---------------------------------------------------------------------

    def _pod_event(self, pod: Obj) -> None:
        self.queue.add(key_of(pod))

    def _pod_update(self, old: Obj, new: Obj) -> None:
        # Our own status write coming back changes nothing to do: a sync of
        # every pod after each of its status patches cost as much as the
        # start did, less the runtime.
        if not self.pods.own_status_echo(old, new):
            self._pod_event(new)

    def _requeue(self, key: str, delay: float) -> None:
        if delay <= 0:
            self.queue.add(key)
        else:
            self.queue.add_after(key, delay)

    async def _sync(self, key: str) -> None:
        pod = self.pod_informer.get(key)
        if pod is not None:
            await self.pods.sync(key, pod)
        else:
            await self.pods.removed(key)

    async def _housekeeping(self) -> None:
        """Notice what changed underneath: containers that exited (conmon
        wrote an exit file), pods gone from the API whose containers still
        exist. The kubelet's PLEG does the first, its pod GC the second."""
        exits = self.runtime.root / "exits"
        seen: set[str] = set()
        while True:
            try:
                now_exits = {p.name for p in exits.iterdir()}
                for cid in now_exits - seen:
                    rec = self.pods.records.get(cid)
                    if rec is not None:
                        self.queue.add(f"{rec.namespace}/{rec.pod_name}")
                seen = now_exits
                live = {p["metadata"].get("uid") for p in self.pod_informer.objects()}
                for uid in self.pods.pod_uids() - live:
                    log.info("removing containers of pod %s, gone from the API", uid)
                    await self.pods.kill_pod(uid)
                for uid in set(self.network.pods()) - live - self.pods.pod_uids():
                    await steps.run(self.network.teardown_pod, uid)
                # A sandbox that died (its pause container, its pinned namespaces).
                for pod in self.pod_informer.objects():
                    uid = pod["metadata"].get("uid") or ""
                    if self.pods.sandboxes.existed(uid) and not self.pods.sandboxes.alive(uid):
                        self.queue.add(key_of(pod))
            except OSError as e:
                log.warning("housekeeping: %s", e)
            await asyncio.sleep(HOUSEKEEPING_INTERVAL)

    async def _refresh_volumes(self) -> None:
        """ConfigMaps, Secrets, downward API files and tokens change under a
        running pod: its files follow (atomically, as the kubelet swaps them)."""
        while True:
            await asyncio.sleep(VOLUME_REFRESH_INTERVAL)
            for pod in self.pod_informer.objects():
                if self.pods.sandboxes.alive(pod["metadata"].get("uid") or "") and \
                        not pod["metadata"].get("deletionTimestamp"):
                    try:
                        await self.volumes.refresh(pod)
                    except Exception as e:  # one pod's trouble must not stop the others'
                        log.info("refreshing volumes of %s: %s", key_of(pod), e)

    async def _image_gc(self) -> None:
        """Unused images go when the disk fills (the kubelet's 85 % / 80 %)."""
        while True:
            await asyncio.sleep(IMAGE_GC_INTERVAL)
            in_use = {r.image_id for r in self.pods.records.values() if r.image_id}
            in_use |= {c.get("image") or "" for p in self.pod_informer.objects()
                       for c in [*(p["spec"].get("initContainers") or []),
                                 *(p["spec"].get("containers") or [])]}
            try:
                await asyncio.to_thread(self.images.collect_garbage, in_use - {""})
            except Exception as e:  # never let a GC problem stop the node
                log.warning("image garbage collection: %s", e)

    def _service_env(self, pod: Obj) -> dict[str, str]:
        from .envvars import service_env

        ns = pod["metadata"].get("namespace") or "default"
        enable = pod["spec"].get("enableServiceLinks", True) is not False
        services = [s for s in self.service_informer.objects()
                    if s["metadata"].get("namespace") in (ns, "default")]
        return service_env(services, ns, enable)

    def event(self, pod: Obj, type_: str, reason: str, message: str, field_path: str = "") -> None:
        self.recorder.event({**pod, "kind": "Pod", "apiVersion": "v1"}, type_, reason, message,
                            field_path)

    # -- what the kubelet API serves (server.Runtime) ----------------------------------

    def log_path(self, namespace: str, pod: str, container: str, previous: bool
                 ) -> tuple[Path, Any]:
        rec = self.pods.log_record(namespace, pod, container, previous)
        return Path(rec.log_path), lambda: self.runtime.state(rec).status == RUNNING

    def exec_argv(self, namespace: str, pod: str, container: str, command: list[str],
                  tty: bool) -> list[str]:
        return self.runtime.exec_argv(self._running(namespace, pod, container), command, tty)

    def attach_socket(self, namespace: str, pod: str, container: str) -> tuple[Path, Path | None]:
        return self.runtime.attach_socket(self._running(namespace, pod, container))

    def _running(self, namespace: str, pod: str, container: str) -> Record:
        """The container's running attempt, for exec and attach (NotRunning
        if it has none: waiting to start, or exited)."""
        from .server import NotRunning

        try:
            rec = self.pods.find(namespace, pod, container)
        except KeyError:
            if self.pod_informer.get(f"{namespace}/{pod}") is None:
                raise
            raise NotRunning(container) from None
        if self.runtime.state(rec).status != RUNNING:
            raise NotRunning(container)
        return rec

    def netns_path(self, namespace: str, pod: str) -> str:
        obj = self.pod_informer.get(f"{namespace}/{pod}")
        if obj is None:
            raise KeyError(f'pod "{pod}" not found')
        if (obj.get("spec") or {}).get("hostNetwork"):
            return ""
        return str(self.network.netns_path(obj["metadata"]["uid"]))

    def stats_summary(self) -> Obj:
        """The /stats/summary body (stats.py), for the running containers."""
        from .stats import ContainerRef, StatsCollector

        collector = getattr(self, "_stats", None)
        if collector is None:
            collector = self._stats = StatsCollector(veth_name=self.network.host_veth_name,
                                                     image_dir=self.images.root)
        refs = []
        for rec in list(self.pods.records.values()):
            if self.runtime.state(rec).status != RUNNING:
                continue
            refs.append(ContainerRef(
                pod_uid=rec.pod_uid, namespace=rec.namespace, pod_name=rec.pod_name,
                name=rec.name, cgroup=self.runtime.cgroup_path(rec), started_at=rec.started_at,
                log_path=rec.log_path, rootfs_upper=str(self.runtime.bundle(rec.id) / "upper")))
        return collector.summary(self.node_name, self.pod_informer.objects(), refs,
                                 rootfs_dir=self.root)


# The event a node condition's new status is told with (the kubelet's
# setters); Ready only when it changes, the others when they are first set too.
_CONDITION_EVENTS = {
    "MemoryPressure": {"False": "NodeHasSufficientMemory", "True": "NodeHasInsufficientMemory"},
    "DiskPressure": {"False": "NodeHasNoDiskPressure", "True": "NodeHasDiskPressure"},
    "PIDPressure": {"False": "NodeHasSufficientPID", "True": "NodeHasInsufficientPID"},
    "Ready": {"True": "NodeReady", "False": "NodeNotReady"}}


def condition_events(old: list[Obj], new: list[Obj]) -> list[str]:
    """The reasons of the events the kubelet records as its node's
    conditions go from ``old`` to ``new``."""
    was = {c.get("type"): c.get("status") for c in old}
    out = []
    for c in new:
        type_, status = c.get("type"), c.get("status")
        if type_ not in _CONDITION_EVENTS or was.get(type_) == status:
            continue
        if type_ == "Ready" and type_ not in was:
            continue
        reason = _CONDITION_EVENTS[type_].get(str(status))
        if reason:
            out.append(reason)
    return out


def _strip(status: Obj) -> Obj:
    return {**status, "conditions": [{k: v for k, v in c.items() if k != "lastHeartbeatTime"}
                                     for c in status.get("conditions") or []]}


class NodeConflict(Exception):
    """Another agent already runs a node in this network namespace."""


def _network_namespace_lock() -> tuple[int, bool]:
    """The lock file of this network namespace's agent, and whether we got it."""
    import fcntl

    from .network import open_lock

    fd = open_lock(f"agent-net{os.stat('/proc/self/ns/net').st_ino}.lock")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return fd, False
    return fd, True


def network_namespace_claimed() -> bool:
    """Whether an agent runs in this network namespace now."""
    fd, got = _network_namespace_lock()
    os.close(fd)
    return not got


def agents_running() -> bool:
    """Whether an agent runs on this machine, in any network namespace: one
    of their locks is held (/proc/locks, so that looking takes none)."""
    from .network import RUN_DIR

    held = set()
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()  # 1: FLOCK ADVISORY WRITE <pid> <major>:<minor>:<inode> 0 EOF
        if len(fields) > 5 and fields[1] == "FLOCK":
            held.add(fields[5].rsplit(":", 1)[-1])
    return any(str(p.stat().st_ino) in held for p in RUN_DIR.glob("agent-net*.lock"))


def claim_network_namespace(data_dir: Path) -> int:
    """One agent per network namespace, held by a lock for the process's
    life (the fd returned). Two would share the bridge, the pod range's
    addresses, the masquerade chain and the service rules, and break each
    other's pods; an agent for another machine's worth of nodes runs in a
    network namespace of its own (as the tests' second node does)."""
    fd, got = _network_namespace_lock()
    if not got:
        holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "pid unknown"
        os.close(fd)
        raise NodeConflict(
            f"another pinnace agent already runs a node in this network namespace ({holder}): "
            "two would share its bridge and pod addresses. Stop that one (`pinnace server "
            "--disable-agent` runs a server without its own), or run this one in a network "
            "namespace of its own")
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()}, data dir {data_dir}".encode(), 0)
    return fd


async def run_agent(kubeconfig: str | None, data_dir: Path, **options: Any) -> None:
    from concurrent.futures import ThreadPoolExecutor

    # Netlink calls, mounts and the runtime's create wait more than they
    # compute: the default pool (CPUs + 4 threads) would queue pods behind
    # each other when many start at once.
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(max_workers=32, thread_name_prefix="agent"))
    pidfd_child_watcher()
    config = auto_config(kubeconfig)
    ca = None
    if config.ca_data:
        # The cluster CA: pods trust it, and the kubelet API checks callers against it.
        ca = data_dir / "agent" / "ca.crt"
        ca.parent.mkdir(parents=True, exist_ok=True)
        ca.write_bytes(config.ca_data)
    # A few connections kept busy rather than one for each request of a
    # burst: ten pods at once opened eight new ones, each a TLS handshake
    # on both ends (see Client). Not the scheduler: its bindings need more
    # in flight (4 cut its rate by a quarter in bench/scheduler_e2e.py).
    async with Client(config, max_requests=API_REQUESTS) as client:
        agent = Agent(client, data_dir, ca_file=ca, **options)
        await agent.run()


def reset_node(data_dir: Path) -> None:
    """Stop every container the agent started and remove what it set up on
    the host (mounts, pod network, cgroups); images stay. What k3s's
    killall script does, for `pinnace agent --reset` and the tests."""
    from .cgroups import (
        kill_pod_processes,
        release_v1_mounts,
        remove_node_cgroups,
        remove_pod_cgroups,
        remove_unused_pod_cgroups,
    )
    from .network import PodNetwork
    from .oci import Record, _read_int, runtime_of, state_dir, unmount
    from .sandbox import MARKER as SANDBOX_MARKER
    from .sandbox import RUN_DIR, release_pin_dir
    from .volumes import mounts_under

    root = (data_dir / "agent").resolve()
    rt_root = root / "runtime"
    uids = set()
    state = state_dir(rt_root)
    containers = rt_root / "containers"
    for b in containers.iterdir() if containers.is_dir() else ():
        try:
            meta = json.loads((b / "meta.json").read_text())
        except (OSError, ValueError):
            meta = {}
        uids.add(meta.get("pod_uid", ""))
        # Only by the runtime that made it: the other would take its state
        # for debris and delete it, leaving the container running.
        rec = Record(id=b.name, pod_uid="", namespace="", pod_name="", name="",
                     runtime=str(meta.get("runtime") or ""))
        binary = shutil.which(runtime_of(state, rec) or "runc")
        if binary:
            subprocess.run([binary, "--root", str(state), "delete", "-f", b.name],
                           capture_output=True, timeout=30)
        pid = _read_int(b / "conmon.pid") or 0
        if pid > 0:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        unmount(b / "rootfs")
    # Pods' pinned namespaces, then whatever else is mounted under the agent's
    # dir (volumes), deepest first.
    sandboxes = {p.parent.name for p in (root / "pods").glob(f"*/{SANDBOX_MARKER}")}
    uids |= sandboxes
    pinned = [RUN_DIR / f"{uid}.{kind}" for uid in sandboxes for kind in ("ipc", "uts")]
    for m in mounts_under(root):
        unmount(m)
    for pin in pinned:
        unmount(pin)
        pin.unlink(missing_ok=True)
    release_pin_dir()  # when no other agent's pods are pinned there
    network = PodNetwork(root / "network", "")
    if network_namespace_claimed():
        # The node network (bridge, routes, service rules) is the running
        # agent's now: only this data dir's pods go.
        log.warning("another agent runs in this network namespace: its bridge, routes and "
                    "service rules stay")
        network.teardown_all_pods()
    else:
        network.cleanup_all()
        from .routes import remove_routes

        remove_routes()
        from pinnace.proxy.proxier import cleanup as proxy_cleanup

        proxy_cleanup(root / "proxy")
    for uid in uids:
        if uid:
            if kill_pod_processes(uid):
                log.warning("pod %s: killed processes its runtime no longer knew of", uid)
            remove_pod_cgroups(uid)
    # With no agent left on the machine, what no one uses can go: the pods a
    # stopped agent left halfway through their teardown (it no longer knows
    # them), and the cgroup layout made for crun.
    last = not agents_running()
    if last:
        remove_unused_pod_cgroups()
    remove_node_cgroups()
    if last:
        for name in release_v1_mounts():
            log.info("the %s cgroup controller is back on cgroup v2", name)
    shutil.rmtree(rt_root, ignore_errors=True)
    shutil.rmtree(root / "pods", ignore_errors=True)
