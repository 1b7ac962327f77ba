"""The scheduler's view of the cluster: nodes and the pods assigned to them.

Every node carries aggregates kept up to date as pods come and go
(requested cpu/memory, pod count, host ports, images, taints), so a filter
never re-walks a node's pods. Pods the scheduler has just bound are
"assumed": they count at once, and are later confirmed by the informer's
add/update or forgotten when the bind fails.

A pod counts against a node while spec.nodeName is set and its phase is not
Succeeded or Failed; a terminating pod (deletionTimestamp) still counts, as
its containers still run.

The cache also keeps the nominated pods (upstream's PodNominator): pending
pods that preemption made room for, by node, so filters can keep that room
for them; and an index of assigned pods by (namespace, label key, value) so
label selectors find their pods without scanning a namespace.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from pinnace.api.quantity import QuantityError, milli_value
from pinnace.scheduler.topology import TermGroup, TopologyCounts, TopologyIndex

__all__ = [
    "DEFAULT_MILLI_CPU_REQUEST",
    "DEFAULT_MEMORY_REQUEST",
    "NodeInfo",
    "PodInfo",
    "SchedulerCache",
    "pod_key",
]

# Scoring treats a container without a request as asking for this much.
DEFAULT_MILLI_CPU_REQUEST = 100
DEFAULT_MEMORY_REQUEST = 200 * 1024 * 1024

_TERMINAL = ("Succeeded", "Failed")
_MILLI: dict[Any, int] = {}


def _milli(q: Any) -> int:
    # Parsing a quantity builds Fractions; clusters repeat a handful of strings.
    v = _MILLI.get(q)
    if v is None:
        try:
            v = milli_value(q)
        except QuantityError:
            v = 0
        if len(_MILLI) < 100_000:
            _MILLI[q] = v
    return v


def _value(q: Any) -> int:
    m = _milli(q)
    return -((-m) // 1000)  # Quantity.Value rounds up


def pod_key(pod: Mapping[str, Any]) -> str:
    md = pod.get("metadata") or {}
    return f"{md.get('namespace') or 'default'}/{md.get('name', '')}"


class _Res:
    """One resource list reduced to scheduler units."""

    __slots__ = ("cpu", "mem", "eph", "scalar", "has_cpu", "has_mem")

    def __init__(self, rl: Mapping[str, Any] | None) -> None:
        rl = rl or {}
        self.has_cpu = "cpu" in rl
        self.has_mem = "memory" in rl
        self.cpu = _milli(rl["cpu"]) if self.has_cpu else 0
        self.mem = _value(rl["memory"]) if self.has_mem else 0
        self.eph = _value(rl["ephemeral-storage"]) if "ephemeral-storage" in rl else 0
        self.scalar = {k: _value(v) for k, v in rl.items()
                       if k not in ("cpu", "memory", "ephemeral-storage", "pods")}


def _add_scalar(into: dict[str, int], add: Mapping[str, int], sign: int = 1) -> None:
    for k, v in add.items():
        into[k] = into.get(k, 0) + sign * v


def _pod_requests(spec: Mapping[str, Any]) -> tuple[int, int, int, dict[str, int], int, int]:
    """(cpu, mem, eph, scalar, nonzero cpu, nonzero mem) by upstream's rule:
    containers summed, restartable (sidecar) init containers added, each
    other init container's need taken as a floor, then overhead added."""
    cpu = mem = eph = nzc = nzm = 0
    scalar: dict[str, int] = {}
    for c in spec.get("containers") or ():
        r = _Res((c.get("resources") or {}).get("requests"))
        cpu += r.cpu
        mem += r.mem
        eph += r.eph
        _add_scalar(scalar, r.scalar)
        nzc += r.cpu if r.has_cpu else DEFAULT_MILLI_CPU_REQUEST
        nzm += r.mem if r.has_mem else DEFAULT_MEMORY_REQUEST
    side_cpu = side_mem = side_eph = side_nzc = side_nzm = 0
    side_scalar: dict[str, int] = {}
    init_cpu = init_mem = init_eph = init_nzc = init_nzm = 0
    init_scalar: dict[str, int] = {}
    for c in spec.get("initContainers") or ():
        r = _Res((c.get("resources") or {}).get("requests"))
        rc = r.cpu if r.has_cpu else DEFAULT_MILLI_CPU_REQUEST
        rm = r.mem if r.has_mem else DEFAULT_MEMORY_REQUEST
        if c.get("restartPolicy") == "Always":
            side_cpu += r.cpu
            side_mem += r.mem
            side_eph += r.eph
            side_nzc += rc
            side_nzm += rm
            _add_scalar(side_scalar, r.scalar)
            continue
        # A plain init container runs alongside the sidecars started before it.
        init_cpu = max(init_cpu, r.cpu + side_cpu)
        init_mem = max(init_mem, r.mem + side_mem)
        init_eph = max(init_eph, r.eph + side_eph)
        init_nzc = max(init_nzc, rc + side_nzc)
        init_nzm = max(init_nzm, rm + side_nzm)
        for k, v in r.scalar.items():
            init_scalar[k] = max(init_scalar.get(k, 0), v + side_scalar.get(k, 0))
    cpu, mem, eph = max(cpu + side_cpu, init_cpu), max(mem + side_mem, init_mem), max(eph + side_eph, init_eph)
    nzc, nzm = max(nzc + side_nzc, init_nzc), max(nzm + side_nzm, init_nzm)
    _add_scalar(scalar, side_scalar)
    for k, v in init_scalar.items():
        scalar[k] = max(scalar.get(k, 0), v)
    overhead = spec.get("overhead")
    if overhead:
        o = _Res(overhead)
        cpu += o.cpu
        mem += o.mem
        eph += o.eph
        nzc += o.cpu
        nzm += o.mem
        _add_scalar(scalar, o.scalar)
    return cpu, mem, eph, scalar, nzc, nzm


def _host_ports(spec: Mapping[str, Any]) -> tuple[tuple[str, str, int], ...]:
    out = []
    for group in ("initContainers", "containers"):
        for c in spec.get(group) or ():
            for p in c.get("ports") or ():
                hp = p.get("hostPort") or 0
                if hp > 0:
                    out.append((p.get("hostIP") or "0.0.0.0", p.get("protocol") or "TCP", int(hp)))
    return tuple(out)


class PodInfo:
    """A pod's scheduling facts, computed once."""

    __slots__ = ("pod", "key", "namespace", "name", "uid", "labels", "priority", "node_name",
                 "cpu", "mem", "eph", "scalar", "nz_cpu", "nz_mem", "host_ports", "images",
                 "tolerations", "affinity", "terminating", "assumed", "_extra", "_label_keys")

    def __init__(self, pod: Mapping[str, Any]) -> None:
        md = pod.get("metadata") or {}
        spec = pod.get("spec") or {}
        self.pod: dict[str, Any] = pod  # type: ignore[assignment]
        self.namespace: str = md.get("namespace") or "default"
        self.name: str = md.get("name", "")
        self.key = f"{self.namespace}/{self.name}"
        self.uid: str = md.get("uid", "")
        self.labels: dict[str, str] = md.get("labels") or {}
        self.priority: int = int(spec.get("priority") or 0)
        self.node_name: str = spec.get("nodeName") or ""
        self.cpu, self.mem, self.eph, self.scalar, self.nz_cpu, self.nz_mem = _pod_requests(spec)
        self.host_ports = _host_ports(spec)
        self.images = tuple(c.get("image", "") for c in (spec.get("containers") or ()) if c.get("image")) + \
            tuple(c.get("image", "") for c in (spec.get("initContainers") or ()) if c.get("image"))
        self.tolerations: list[dict[str, Any]] = spec.get("tolerations") or []
        self.affinity: dict[str, Any] = spec.get("affinity") or {}
        self.terminating = bool(md.get("deletionTimestamp"))
        self.assumed = False
        # Per-plugin memo (compiled selectors and the like), keyed by plugin.
        self._extra: dict[str, Any] = {}
        self._label_keys: tuple[tuple[str, str, str], ...] | None = None

    @property
    def spec(self) -> dict[str, Any]:
        return self.pod.get("spec") or {}

    @property
    def nominated_node_name(self) -> str:
        return (self.pod.get("status") or {}).get("nominatedNodeName") or ""

    @property
    def start_time(self) -> str:
        """status.startTime, or "" for a pod that has not started (upstream
        takes "now" for it: later than any real start)."""
        return (self.pod.get("status") or {}).get("startTime") or ""

    @property
    def label_keys(self) -> tuple[tuple[str, str, str], ...]:
        """(namespace, key, value) for each label: the label index's keys."""
        k = self._label_keys
        if k is None:
            ns = self.namespace
            k = self._label_keys = tuple((ns, lk, lv) for lk, lv in self.labels.items())
        return k

    @property
    def required_anti_affinity(self) -> list[dict[str, Any]]:
        return (self.affinity.get("podAntiAffinity") or {}).get("requiredDuringSchedulingIgnoredDuringExecution") or []

    @property
    def has_pod_affinity_terms(self) -> bool:
        a = self.affinity
        return bool(a.get("podAffinity") or a.get("podAntiAffinity"))

    def same_facts(self, pod: Mapping[str, Any]) -> bool:
        """Whether ``pod`` (a newer copy of this pod) changes nothing the
        scheduler counts: the confirmation of an assumed pod, a status update."""
        md = pod.get("metadata") or {}
        spec = pod.get("spec") or {}
        return self.node_name == (spec.get("nodeName") or "") and \
            self.uid == md.get("uid", "") and self.labels == (md.get("labels") or {}) and \
            self.terminating == bool(md.get("deletionTimestamp")) and \
            self.pod.get("spec") == spec

    def memo(self, key: str, make: Any) -> Any:
        v = self._extra.get(key)
        if v is None:
            v = self._extra[key] = make()
        return v


def _taint_split(taints: Iterable[dict[str, Any]]) -> tuple[tuple[dict[str, Any], ...], tuple[dict[str, Any], ...]]:
    hard = tuple(t for t in taints if t.get("effect") in ("NoSchedule", "NoExecute"))
    soft = tuple(t for t in taints if t.get("effect") == "PreferNoSchedule")
    return hard, soft


class NodeInfo:
    """A node and the aggregates of the pods on it."""

    __slots__ = ("name", "node", "labels", "taints", "hard_taints", "soft_taints", "unschedulable",
                 "alloc_cpu", "alloc_mem", "alloc_eph", "alloc_pods", "alloc_scalar",
                 "req_cpu", "req_mem", "req_eph", "req_scalar", "nz_cpu", "nz_mem",
                 "pods", "used_ports", "images", "generation", "n_affinity", "n_anti",
                 "free_cpu", "free_mem", "free_pods", "memo",
                 "least_shape", "least", "balanced_shape", "balanced", "fit_shape", "fit")

    def __init__(self, name: str) -> None:
        self.name = name
        self.node: dict[str, Any] | None = None
        self.labels: dict[str, str] = {}
        self.taints: list[dict[str, Any]] = []
        self.hard_taints: tuple[dict[str, Any], ...] = ()
        self.soft_taints: tuple[dict[str, Any], ...] = ()
        self.unschedulable = False
        self.alloc_cpu = self.alloc_mem = self.alloc_eph = self.alloc_pods = 0
        self.alloc_scalar: dict[str, int] = {}
        self.req_cpu = self.req_mem = self.req_eph = self.nz_cpu = self.nz_mem = 0
        self.req_scalar: dict[str, int] = {}
        self.pods: dict[str, PodInfo] = {}
        # (protocol, port) -> {hostIP: count}
        self.used_ports: dict[tuple[str, int], dict[str, int]] = {}
        self.images: dict[str, int] = {}
        self.generation = 0
        self.n_affinity = 0  # pods here with pod (anti-)affinity terms
        self.n_anti = 0  # pods here with required anti-affinity
        # What is left, kept current so the fit filter is three comparisons.
        self.free_cpu = self.free_mem = self.free_pods = 0
        # Plugins' results for this node (by constraint, ...); emptied whenever
        # the node changes.
        self.memo: dict[Any, Any] = {}
        # The two resource scores for the last pod shape scored here, kept in
        # slots rather than in ``memo``: scoring reads them on hundreds of nodes
        # per pod, and a dict per node spread over a large heap makes each read
        # a cache miss. The shape is compared by identity (see noderesources).
        self.least_shape: object = None
        self.least = 0
        self.balanced_shape: object = None
        self.balanced = 0
        self.fit_shape: object = None  # and whether that shape's requests fit
        self.fit = False

    def set_node(self, node: dict[str, Any]) -> None:
        self.node = node
        md = node.get("metadata") or {}
        spec = node.get("spec") or {}
        status = node.get("status") or {}
        self.labels = md.get("labels") or {}
        self.taints = spec.get("taints") or []
        self.hard_taints, self.soft_taints = _taint_split(self.taints)
        self.unschedulable = bool(spec.get("unschedulable"))
        alloc = status.get("allocatable") or status.get("capacity") or {}
        r = _Res(alloc)
        self.alloc_cpu, self.alloc_mem, self.alloc_eph, self.alloc_scalar = r.cpu, r.mem, r.eph, r.scalar
        self.alloc_pods = _value(alloc["pods"]) if "pods" in alloc else 0
        images: dict[str, int] = {}
        for im in status.get("images") or ():
            size = int(im.get("sizeBytes") or 0)
            for n in im.get("names") or ():
                images[n] = size
        self.images = images
        self._refresh()

    def _refresh(self) -> None:
        self.free_cpu = self.alloc_cpu - self.req_cpu
        self.free_mem = self.alloc_mem - self.req_mem
        self.free_pods = self.alloc_pods - len(self.pods)
        self.memo.clear()  # in place: the dict stays where the node is
        self.least_shape = self.balanced_shape = self.fit_shape = None
        self.generation += 1

    def add_pod(self, pi: PodInfo) -> None:
        self.pods[pi.key] = pi
        self._account(pi, 1)

    def remove_pod(self, key: str) -> PodInfo | None:
        pi = self.pods.pop(key, None)
        if pi is not None:
            self._account(pi, -1)
        return pi

    def _account(self, pi: PodInfo, sign: int) -> None:
        self.req_cpu += sign * pi.cpu
        self.req_mem += sign * pi.mem
        self.req_eph += sign * pi.eph
        self.nz_cpu += sign * pi.nz_cpu
        self.nz_mem += sign * pi.nz_mem
        if pi.scalar:
            _add_scalar(self.req_scalar, pi.scalar, sign)
        for ip, proto, port in pi.host_ports:
            ips = self.used_ports.setdefault((proto, port), {})
            n = ips.get(ip, 0) + sign
            if n > 0:
                ips[ip] = n
            else:
                ips.pop(ip, None)
                if not ips:
                    del self.used_ports[(proto, port)]
        if pi.has_pod_affinity_terms:
            self.n_affinity += sign
        if pi.required_anti_affinity:
            self.n_anti += sign
        self._refresh()

    def clone(self) -> NodeInfo:
        """A copy whose pod set can be changed freely (preemption what-ifs)."""
        c = NodeInfo(self.name)
        for s in NodeInfo.__slots__:
            setattr(c, s, getattr(self, s))
        c.pods = dict(self.pods)
        c.req_scalar = dict(self.req_scalar)
        c.used_ports = {k: dict(v) for k, v in self.used_ports.items()}
        c.memo = {}
        c.least_shape = c.balanced_shape = c.fit_shape = None
        return c


def _counts(pod: Mapping[str, Any]) -> bool:
    spec = pod.get("spec") or {}
    return bool(spec.get("nodeName")) and (pod.get("status") or {}).get("phase") not in _TERMINAL


class SchedulerCache:
    """Nodes, pods assigned to them, and indices the plugins use."""

    def __init__(self) -> None:
        self.nodes: dict[str, NodeInfo] = {}
        # Node order for the rotating search; rebuilt lazily after node churn.
        self._node_list: list[NodeInfo] | None = None
        self.pods: dict[str, PodInfo] = {}
        self.pods_by_ns: dict[str, dict[str, PodInfo]] = {}
        # Pods (assigned) with required anti-affinity; few in practice.
        self.anti_affinity_pods: dict[str, PodInfo] = {}
        self.affinity_pods: dict[str, PodInfo] = {}
        self.image_nodes: dict[str, int] = {}
        # The largest size any node reports for an image (an upper bound: not
        # lowered when that node goes, only when the last one does).
        self.image_max: dict[str, int] = {}
        self.soft_tainted_nodes = 0
        # With none of these, the taint and unschedulable filters have nothing to do.
        self.hard_tainted_nodes = 0
        self.unschedulable_nodes = 0
        # (namespace, label key, label value) -> assigned pods carrying that label.
        self.pods_by_label: dict[tuple[str, str, str], dict[str, PodInfo]] = {}
        # Nominated pods: node name -> pod key -> pod, and each pod's node.
        self.nominated: dict[str, dict[str, PodInfo]] = {}
        self._nominated_on: dict[str, str] = {}
        # Pods counted per topology domain for pod (anti-)affinity.
        self.topology = TopologyIndex()

    # --- nodes -------------------------------------------------------------

    def add_node(self, node: dict[str, Any]) -> NodeInfo:
        name = node["metadata"]["name"]
        ni = self.nodes.get(name)
        if ni is None:
            ni = self.nodes[name] = NodeInfo(name)
        old_labels = ni.labels
        if ni.node is None:
            self._node_list = None
            if ni.pods:
                self.topology.invalidate()  # its pods count from now on
        else:
            self._unindex_node(ni)
        ni.set_node(node)
        if ni.pods and ni.labels != old_labels:
            self.topology.invalidate()  # its pods are in other domains now
        self._index_node(ni)
        return ni

    update_node = add_node

    def remove_node(self, name: str) -> None:
        ni = self.nodes.get(name)
        if ni is None:
            return
        self._node_list = None
        if ni.node is not None:
            self._unindex_node(ni)
            if ni.pods:
                self.topology.invalidate()
        # Its pods stay known (the pod GC deletes them); they count again if
        # the node comes back.
        ni.node = None
        if not ni.pods:
            del self.nodes[name]

    def _index_node(self, ni: NodeInfo) -> None:
        for im, size in ni.images.items():
            self.image_nodes[im] = self.image_nodes.get(im, 0) + 1
            if size > self.image_max.get(im, -1):
                self.image_max[im] = size
        if ni.soft_taints:
            self.soft_tainted_nodes += 1
        if ni.hard_taints:
            self.hard_tainted_nodes += 1
        if ni.unschedulable:
            self.unschedulable_nodes += 1

    def _unindex_node(self, ni: NodeInfo) -> None:
        for im in ni.images:
            n = self.image_nodes.get(im, 0) - 1
            if n > 0:
                self.image_nodes[im] = n
            else:
                self.image_nodes.pop(im, None)
                self.image_max.pop(im, None)
        if ni.soft_taints:
            self.soft_tainted_nodes -= 1
        if ni.hard_taints:
            self.hard_tainted_nodes -= 1
        if ni.unschedulable:
            self.unschedulable_nodes -= 1

    def node_list(self) -> list[NodeInfo]:
        """Nodes known by their Node object, in a stable order."""
        if self._node_list is None:
            self._node_list = [ni for ni in self.nodes.values() if ni.node is not None]
        return self._node_list

    def __len__(self) -> int:
        return len(self.node_list())

    # --- pods --------------------------------------------------------------

    def add_pod(self, pod: dict[str, Any]) -> None:
        """An informer add/update: confirms an assumed pod, moves a changed one,
        drops one that finished or lost its node."""
        key = pod_key(pod)
        if not _counts(pod):
            self._drop_pod(key)
            return
        known = self.pods.get(key)
        if known is not None and known.same_facts(pod):
            # Most updates: the binding of an assumed pod comes back, or the
            # kubelet reports status. The node's sums and memos stay valid.
            known.pod = pod  # type: ignore[assignment]
            known.assumed = False
            return
        self._drop_pod(key)
        self._put(PodInfo(pod))

    update_pod = add_pod

    def remove_pod(self, pod: Mapping[str, Any] | str) -> None:
        self._drop_pod(pod if isinstance(pod, str) else pod_key(pod))

    def assume_pod(self, pod: Mapping[str, Any], node_name: str) -> PodInfo:
        """Count ``pod`` on ``node_name`` before the binding is observed."""
        spec = dict(pod.get("spec") or {})
        spec["nodeName"] = node_name
        p = dict(pod)
        p["spec"] = spec
        pi = PodInfo(p)
        pi.assumed = True
        self._drop_pod(pi.key)
        self._put(pi)
        return pi

    def assume_pod_info(self, pi: PodInfo, node_name: str) -> PodInfo:
        """As assume_pod, reusing facts already computed for ``pi``."""
        spec = dict(pi.pod.get("spec") or {})
        spec["nodeName"] = node_name
        p = dict(pi.pod)
        p["spec"] = spec
        new = PodInfo.__new__(PodInfo)
        for s in PodInfo.__slots__:
            setattr(new, s, getattr(pi, s))
        new.pod = p
        new.node_name = node_name
        new.assumed = True
        self._drop_pod(new.key)
        self._put(new)
        return new

    def forget_pod(self, pod: Mapping[str, Any] | str) -> None:
        """Undo an assume whose binding failed."""
        key = pod if isinstance(pod, str) else pod_key(pod)
        pi = self.pods.get(key)
        if pi is not None and pi.assumed:
            self._drop_pod(key)

    def is_assumed(self, key: str) -> bool:
        pi = self.pods.get(key)
        return pi is not None and pi.assumed

    def get_pod(self, key: str) -> PodInfo | None:
        return self.pods.get(key)

    def _put(self, pi: PodInfo) -> None:
        if self._nominated_on:
            self.delete_nominated_pod(pi.key)  # placed: the reservation has served
        self.pods[pi.key] = pi
        self.pods_by_ns.setdefault(pi.namespace, {})[pi.key] = pi
        if pi.required_anti_affinity:
            self.anti_affinity_pods[pi.key] = pi
        if pi.has_pod_affinity_terms:
            self.affinity_pods[pi.key] = pi
        by_label = self.pods_by_label
        for lk in pi.label_keys:
            d = by_label.get(lk)
            if d is None:
                by_label[lk] = {pi.key: pi}
            else:
                d[pi.key] = pi
        ni = self.nodes.get(pi.node_name)
        if ni is None:
            # A pod can arrive before its node; it counts once the node does.
            ni = self.nodes[pi.node_name] = NodeInfo(pi.node_name)
        ni.add_pod(pi)
        if ni.node is not None:
            self.topology.pod_changed(pi, ni.labels, 1)

    def _drop_pod(self, key: str) -> None:
        pi = self.pods.pop(key, None)
        if pi is None:
            return
        ns = self.pods_by_ns.get(pi.namespace)
        if ns is not None:
            ns.pop(key, None)
            if not ns:
                del self.pods_by_ns[pi.namespace]
        self.anti_affinity_pods.pop(key, None)
        self.affinity_pods.pop(key, None)
        by_label = self.pods_by_label
        for lk in pi.label_keys:
            d = by_label.get(lk)
            if d is not None:
                d.pop(key, None)
                if not d:
                    del by_label[lk]
        ni = self.nodes.get(pi.node_name)
        if ni is not None:
            if ni.node is not None:
                self.topology.pod_changed(pi, ni.labels, -1)
            ni.remove_pod(key)
            if ni.node is None and not ni.pods:
                del self.nodes[pi.node_name]

    def pods_in(self, namespaces: Iterable[str] | None) -> Iterator[PodInfo]:
        """Assigned pods in ``namespaces`` (None: all namespaces)."""
        if namespaces is None:
            for d in self.pods_by_ns.values():
                yield from d.values()
            return
        for ns in namespaces:
            in_ns = self.pods_by_ns.get(ns)
            if in_ns:
                yield from in_ns.values()

    def pods_with_label(self, namespace: str, key: str, value: str) -> Mapping[str, PodInfo]:
        """Assigned pods in ``namespace`` whose label ``key`` is ``value``."""
        return self.pods_by_label.get((namespace, key, value)) or _EMPTY

    def candidate_pods(self, namespaces: Iterable[str] | None,
                       alternatives: Sequence[Sequence[tuple[str, str]]] | None) -> Iterator[PodInfo]:
        """Assigned pods in ``namespaces`` (None: all) that may match a label
        selector, found through the label index: per namespace, the pods of
        the alternative with the fewest (see _match.selector_alternatives).
        A superset: the caller still matches each pod. Without alternatives,
        every pod in the namespaces."""
        if alternatives is None:
            yield from self.pods_in(namespaces)
            return
        by_label = self.pods_by_label
        for ns in (self.pods_by_ns if namespaces is None else namespaces):
            if ns not in self.pods_by_ns:
                continue
            best: list[Mapping[str, PodInfo]] | None = None
            best_n = -1
            for alt in alternatives:
                found: list[Mapping[str, PodInfo]] = [
                    d for d in (by_label.get((ns, k, v)) for k, v in alt) if d]
                n = sum(len(d) for d in found)
                if best is None or n < best_n:
                    best, best_n = found, n
                    if n == 0:
                        break
            for d in best or ():
                yield from d.values()

    def topology_counts(self, sig: Hashable, key: str, match: Callable[[PodInfo], bool],
                        label_keys: Sequence[tuple[str, str]] | None,
                        namespaces: Iterable[str] | None,
                        alternatives: Sequence[Sequence[tuple[str, str]]] | None) -> TopologyCounts:
        """Assigned pods that ``match`` selects, counted per value of node
        label ``key`` and kept current (see topology.TopologyIndex.counts);
        ``namespaces`` and ``alternatives`` find them the first time."""
        def candidates() -> Iterator[tuple[PodInfo, Mapping[str, str]]]:
            for p in self.candidate_pods(namespaces, alternatives):
                ni = self.nodes.get(p.node_name)
                if ni is not None and ni.node is not None:
                    yield p, ni.labels
        return self.topology.counts(sig, key, match, label_keys, candidates)

    def term_groups(self) -> dict[Hashable, TermGroup]:
        """The affinity terms of assigned pods, grouped and counted per domain."""
        def pods() -> Iterator[tuple[PodInfo, Mapping[str, str]]]:
            for p in self.affinity_pods.values():
                ni = self.nodes.get(p.node_name)
                if ni is not None and ni.node is not None:
                    yield p, ni.labels
        return self.topology.groups(pods())

    # --- nominated pods ------------------------------------------------------

    def add_nominated_pod(self, pi: PodInfo, node: str | None = None) -> None:
        """Keep room on ``node`` for the pending pod ``pi`` (None: the node in
        its status.nominatedNodeName; "": drop its nomination)."""
        self.delete_nominated_pod(pi.key)
        if node is None:
            node = pi.nominated_node_name
        if not node or pi.node_name:
            return  # a bound pod counts as a pod, not as a nomination
        self.nominated.setdefault(node, {})[pi.key] = pi
        self._nominated_on[pi.key] = node

    def update_nominated_pod(self, old: Mapping[str, Any], new: PodInfo) -> None:
        """A nominated (or newly nominated) pending pod changed. An update
        that carries no nomination either side keeps one made in memory: the
        status update that records it may still be on its way (upstream's
        UpdateNominatedPod)."""
        node = None
        if not (old.get("status") or {}).get("nominatedNodeName") and not new.nominated_node_name:
            node = self._nominated_on.get(new.key)
        self.add_nominated_pod(new, node)

    def delete_nominated_pod(self, key: str) -> None:
        node = self._nominated_on.pop(key, None)
        if node is None:
            return
        on = self.nominated.get(node)
        if on is not None:
            on.pop(key, None)
            if not on:
                del self.nominated[node]

    def nominated_node_of(self, key: str) -> str | None:
        return self._nominated_on.get(key)

    def nominated_pods(self, node: str) -> list[PodInfo]:
        on = self.nominated.get(node)
        return list(on.values()) if on else []


_EMPTY: Mapping[str, PodInfo] = {}
