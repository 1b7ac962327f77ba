"""Resource usage of the node and its containers: cAdvisor's job, reduced to
what the kubelet's /stats/summary and /metrics/resource serve (statsapi
Summary; `kubectl top` and the HPA read it through metrics.k8s.io).

Where the numbers come from:
  node       /proc/stat (CPU), /proc/meminfo and /proc/vmstat (memory),
             /sys/class/net (interfaces), statvfs (filesystems)
  pods and   their cgroups, as runc was given them ("/kubepods/burstable/
  containers pod<uid>/<id>"; a pod's cgroup is its containers' parent), under
             either layout: cgroup v2 (one hierarchy: cpu.stat usage_usec,
             memory.current, memory.stat) or v1 (cpuacct.usage under the
             cpu,cpuacct or cpuacct hierarchy, memory.usage_in_bytes and
             memory.stat under memory; a hybrid host is v1 for these)
  network    the host end of the pod's veth: what it receives the pod sent,
             so rx and tx swap sides
  disk       du of the container's writable layer and of its log directory,
             at most once a minute per directory (cAdvisor's rate too)

Working set is usage minus inactive file pages, as cAdvisor computes it.
usageNanoCores is a rate: the collector keeps the previous reading of each
cgroup (and of the node) and divides the CPU time used since by the time
passed. Readings closer together than MIN_WINDOW keep the older one as the
reference (two scrapes a few milliseconds apart would give noise). The first
reading of a cgroup has no predecessor: the rate is then its average since
the container started (the node's since boot), so the first answer is
already sensible.
"""

from __future__ import annotations

import os
import posixpath
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .podstatus import rfc3339

Obj = dict[str, Any]

MIN_WINDOW = 1.0      # seconds between two CPU readings for a new rate
DU_INTERVAL = 60.0    # seconds a directory's disk usage is reused
DEFAULT_INTERFACE = "eth0"  # the kubelet's defaultNetworkInterfaceName
_UNLIMITED = 1 << 62  # v1 memory.limit_in_bytes above this means no limit
_HOST_VETH = re.compile(r"pn[0-9a-f]{11}")  # network.PodNetwork.host_veth_name
_IGNORED_PREFIXES = ("lo", "veth", "docker", "nerdctl", "cni", "flannel", "cali", "tunl")


@dataclass(frozen=True)
class ContainerRef:
    """A running container, as the agent knows it."""
    pod_uid: str
    namespace: str
    pod_name: str
    name: str
    cgroup: str                # cgroupsPath as given to runc, e.g. /kubepods/pod<uid>/<id>
    started_at: float          # unix seconds
    log_path: str = ""         # its CRI log file (the directory holds every attempt)
    rootfs_upper: str = ""     # the overlay upper dir: what the container wrote


@dataclass
class _Sample:
    t: float
    ns: int
    rate: int


# -- cgroups -------------------------------------------------------------------

class Cgroups:
    """Reads CPU and memory of cgroups under ``root`` (v1 or v2, detected)."""

    def __init__(self, root: Path = Path("/sys/fs/cgroup")):
        self.root = root
        self.v2 = (root / "cgroup.controllers").is_file()
        if self.v2:
            self.cpu_root = self.mem_root = root
        else:
            self.cpu_root = next((root / d for d in ("cpu,cpuacct", "cpuacct,cpu", "cpuacct")
                                  if (root / d).is_dir()), root / "cpuacct")
            self.mem_root = root / "memory"

    def _dir(self, base: Path, cgroup: str) -> Path:
        return base / cgroup.strip("/")

    def cpu_ns(self, cgroup: str) -> int | None:
        """Cumulative CPU time in nanoseconds; None if the cgroup is gone."""
        if self.v2:
            stat = _kv(self._dir(self.cpu_root, cgroup) / "cpu.stat")
            return stat["usage_usec"] * 1000 if "usage_usec" in stat else None
        return _int(self._dir(self.cpu_root, cgroup) / "cpuacct.usage")

    def memory(self, cgroup: str) -> dict[str, int] | None:
        """usage, workingSet, rss, pageFaults, majorPageFaults and (when the
        cgroup is limited) limit, in bytes and counts; None if it is gone."""
        d = self._dir(self.mem_root, cgroup)
        if self.v2:
            usage = _int(d / "memory.current")
            limit = _int(d / "memory.max")  # "max" reads as None
            inactive, rss = "inactive_file", "anon"
        else:
            usage = _int(d / "memory.usage_in_bytes")
            limit = _int(d / "memory.limit_in_bytes")
            if limit is not None and limit >= _UNLIMITED:
                limit = None
            inactive, rss = "total_inactive_file", "total_rss"
        if usage is None:
            return None
        stat = _kv(d / "memory.stat")
        out = {"usage": usage, "workingSet": max(usage - stat.get(inactive, 0), 0),
               "rss": stat.get(rss, 0), "pageFaults": stat.get("pgfault", 0),
               "majorPageFaults": stat.get("pgmajfault", 0)}
        if limit is not None:
            out["limit"] = limit
        return out


def _int(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _kv(path: Path) -> dict[str, int]:
    """A "key value" per line file (memory.stat, cpu.stat, /proc/vmstat)."""
    out: dict[str, int] = {}
    try:
        text = path.read_text()
    except OSError:
        return out
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2:
            try:
                out[parts[0].rstrip(":")] = int(parts[1])
            except ValueError:
                pass
    return out


# -- the collector ---------------------------------------------------------------

class StatsCollector:
    """Builds Summaries, remembering the previous CPU readings for rates.
    ``proc`` and ``sys_class_net`` are there for tests; ``veth_name`` maps a
    pod uid to the host end of its veth; ``image_dir`` is the image store
    (runtime.imageFs), ``clock`` gives unix seconds."""

    def __init__(self, *, cgroups: Cgroups | None = None, proc: Path = Path("/proc"),
                 sys_class_net: Path = Path("/sys/class/net"),
                 veth_name: Callable[[str], str] | None = None, image_dir: Path | None = None,
                 clock: Callable[[], float] = time.time,
                 samples: dict[str, _Sample] | None = None):
        self.cgroups = cgroups or Cgroups()
        self.proc = proc
        self.net = sys_class_net
        self.veth_name = veth_name
        self.image_dir = image_dir
        self.clock = clock
        self.samples: dict[str, _Sample] = samples if samples is not None else {}
        self._du: dict[str, tuple[float, int, int]] = {}
        self._lock = threading.Lock()

    def summary(self, node_name: str, pods: Iterable[Obj], containers: Iterable[ContainerRef],
                *, rootfs_dir: Path) -> Obj:
        with self._lock:
            now = self.clock()
            seen: dict[str, _Sample] = {}
            node = self._node(node_name, now, rootfs_dir, seen)
            by_uid: dict[str, list[ContainerRef]] = {}
            for c in containers:
                by_uid.setdefault(c.pod_uid, []).append(c)
            objs = {(p.get("metadata") or {}).get("uid"): p for p in pods}
            out_pods = [self._pod(refs, objs.get(uid), now, rootfs_dir, seen)
                        for uid, refs in by_uid.items()]
            self.samples.clear()
            self.samples.update(seen)
            self._du = {k: v for k, v in self._du.items() if now - v[0] < 2 * DU_INTERVAL}
            return {"node": node, "pods": out_pods}

    # -- rates -----------------------------------------------------------------

    def _rate(self, key: str, now: float, ns: int, since: float,
              seen: dict[str, _Sample]) -> int:
        prev = self.samples.get(key)
        if prev is not None and ns >= prev.ns:
            if now - prev.t >= MIN_WINDOW:
                rate = int((ns - prev.ns) / (now - prev.t))
                seen[key] = _Sample(now, ns, rate)
                return rate
            seen[key] = prev  # too soon: keep the older reading as the reference
            return prev.rate
        # First reading (or the counter went back: a new cgroup under the old name).
        elapsed = now - since if since else 0.0
        rate = int(ns / elapsed) if elapsed > 0 else 0
        seen[key] = _Sample(now, ns, rate)
        return rate

    def _cpu(self, key: str, cgroup: str, now: float, since: float,
             seen: dict[str, _Sample]) -> Obj | None:
        ns = self.cgroups.cpu_ns(cgroup)
        if ns is None:
            return None
        return {"time": rfc3339(now), "usageNanoCores": self._rate(key, now, ns, since, seen),
                "usageCoreNanoSeconds": ns}

    def _memory(self, cgroup: str, now: float) -> Obj | None:
        m = self.cgroups.memory(cgroup)
        if m is None:
            return None
        out = {"time": rfc3339(now), "usageBytes": m["usage"], "workingSetBytes": m["workingSet"],
               "rssBytes": m["rss"], "pageFaults": m["pageFaults"],
               "majorPageFaults": m["majorPageFaults"]}
        if "limit" in m:
            out["availableBytes"] = max(m["limit"] - m["workingSet"], 0)
        return out

    # -- node ------------------------------------------------------------------

    def _node(self, name: str, now: float, rootfs_dir: Path, seen: dict[str, _Sample]) -> Obj:
        node: Obj = {"nodeName": name}
        stat = _proc_stat(self.proc / "stat")
        boot = stat.get("btime", 0.0)
        if boot:
            node["startTime"] = rfc3339(boot)
        if "cpu_ns" in stat:
            ns = int(stat["cpu_ns"])
            node["cpu"] = {"time": rfc3339(now),
                           "usageNanoCores": self._rate("/", now, ns, boot, seen),
                           "usageCoreNanoSeconds": ns}
        mem = _kv(self.proc / "meminfo")
        if "MemTotal" in mem:
            total = mem["MemTotal"] * 1024
            usage = total - mem.get("MemFree", 0) * 1024
            ws = max(usage - mem.get("Inactive(file)", 0) * 1024, 0)
            vm = _kv(self.proc / "vmstat")
            node["memory"] = {"time": rfc3339(now), "availableBytes": max(total - ws, 0),
                              "usageBytes": usage, "workingSetBytes": ws,
                              "rssBytes": mem.get("AnonPages", 0) * 1024,
                              "pageFaults": vm.get("pgfault", 0),
                              "majorPageFaults": vm.get("pgmajfault", 0)}
        node["network"] = self._node_network(now)
        fs = _fs(rootfs_dir, now)
        if fs:
            node["fs"] = fs
        image_fs = _fs(self.image_dir or rootfs_dir, now)
        if image_fs:
            if self.image_dir is not None:
                used, inodes = self._usage(self.image_dir, now)
                image_fs["usedBytes"], image_fs["inodesUsed"] = used, inodes
            node["runtime"] = {"imageFs": image_fs, "containerFs": dict(image_fs)}
        return node

    def _node_network(self, now: float) -> Obj:
        out: Obj = {"time": rfc3339(now)}
        interfaces = []
        try:
            names = sorted(os.listdir(self.net))
        except OSError:
            names = []
        for name in names:
            if name.startswith(_IGNORED_PREFIXES) or _HOST_VETH.fullmatch(name) or \
                    (self.net / name / "bridge").is_dir():
                continue
            st = _iface(self.net / name / "statistics")
            if st is None:
                continue
            i = {"name": name, "rxBytes": st["rx_bytes"], "rxErrors": st["rx_errors"],
                 "txBytes": st["tx_bytes"], "txErrors": st["tx_errors"]}
            interfaces.append(i)
            if name == DEFAULT_INTERFACE:
                out.update(i)
        out["interfaces"] = interfaces
        return out

    # -- pods ------------------------------------------------------------------

    def _pod(self, refs: list[ContainerRef], obj: Obj | None, now: float, rootfs_dir: Path,
             seen: dict[str, _Sample]) -> Obj:
        first = refs[0]
        started = min((r.started_at for r in refs if r.started_at), default=0.0)
        start = ((obj or {}).get("status") or {}).get("startTime") or \
            (rfc3339(started) if started else None)
        pod: Obj = {"podRef": {"name": first.pod_name, "namespace": first.namespace,
                               "uid": first.pod_uid}}
        if start:
            pod["startTime"] = start
        root_fs = _fs(rootfs_dir, now) or {"time": rfc3339(now)}
        containers = []
        for r in sorted(refs, key=lambda r: r.name):
            c: Obj = {"name": r.name}
            if r.started_at:
                c["startTime"] = rfc3339(r.started_at)
            cpu = self._cpu(r.cgroup, r.cgroup, now, r.started_at, seen)
            if cpu:
                c["cpu"] = cpu
            mem = self._memory(r.cgroup, now)
            if mem:
                c["memory"] = mem
            if r.rootfs_upper:
                used, inodes = self._usage(Path(r.rootfs_upper), now)
                c["rootfs"] = {**root_fs, "usedBytes": used, "inodesUsed": inodes}
            if r.log_path:
                used, inodes = self._usage(Path(r.log_path).parent, now)
                c["logs"] = {**root_fs, "usedBytes": used, "inodesUsed": inodes}
            containers.append(c)
        pod["containers"] = containers
        pod_cg = posixpath.dirname(first.cgroup.rstrip("/")) if first.cgroup else ""
        cpu = self._cpu(pod_cg, pod_cg, now, started, seen) if pod_cg not in ("", "/") else None
        if cpu is None:
            cpu = _sum(now, [c.get("cpu") for c in containers],
                       ("usageNanoCores", "usageCoreNanoSeconds"))
        if cpu:
            pod["cpu"] = cpu
        mem = self._memory(pod_cg, now) if pod_cg not in ("", "/") else None
        if mem is None:
            mem = _sum(now, [c.get("memory") for c in containers],
                       ("usageBytes", "workingSetBytes", "rssBytes", "pageFaults",
                        "majorPageFaults"))
        if mem:
            pod["memory"] = mem
        net = self._pod_network(first.pod_uid, now)
        if net:
            pod["network"] = net
        used = sum(c[k].get("usedBytes", 0) for c in containers for k in ("rootfs", "logs")
                   if k in c)
        inodes = sum(c[k].get("inodesUsed", 0) for c in containers for k in ("rootfs", "logs")
                     if k in c)
        pod["ephemeral-storage"] = {**root_fs, "usedBytes": used, "inodesUsed": inodes}
        return pod

    def _pod_network(self, uid: str, now: float) -> Obj | None:
        if self.veth_name is None:
            return None
        st = _iface(self.net / self.veth_name(uid) / "statistics")
        if st is None:
            return None  # host network, or no veth (yet)
        # The host end receives what the pod sends.
        i = {"name": DEFAULT_INTERFACE, "rxBytes": st["tx_bytes"], "rxErrors": st["tx_errors"],
             "txBytes": st["rx_bytes"], "txErrors": st["rx_errors"]}
        return {"time": rfc3339(now), **i, "interfaces": [i]}

    # -- disk ------------------------------------------------------------------

    def _usage(self, path: Path, now: float) -> tuple[int, int]:
        """(bytes, inodes) under ``path``, recomputed at most every DU_INTERVAL."""
        key = str(path)
        hit = self._du.get(key)
        if hit is not None and now - hit[0] < DU_INTERVAL:
            return hit[1], hit[2]
        used, inodes = _du(path)
        self._du[key] = (now, used, inodes)
        return used, inodes


def _sum(now: float, parts: list[Obj | None], keys: tuple[str, ...]) -> Obj | None:
    have = [p for p in parts if p]
    if not have:
        return None
    return {"time": rfc3339(now), **{k: sum(p.get(k, 0) for p in have) for k in keys}}


def _proc_stat(path: Path) -> dict[str, float]:
    """The node's cumulative CPU time (ns) and boot time from /proc/stat."""
    out: dict[str, float] = {}
    try:
        text = path.read_text()
    except OSError:
        return out
    hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0] == "cpu":
            # user nice system idle iowait irq softirq steal: busy is all but idle and iowait
            v = [int(x) for x in parts[1:9]] + [0] * (8 - len(parts[1:9]))
            busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7]
            out["cpu_ns"] = busy * 1_000_000_000 // hz
        elif parts and parts[0] == "btime" and len(parts) > 1:
            out["btime"] = float(parts[1])
    return out


def _iface(stats: Path) -> dict[str, int] | None:
    out = {}
    for k in ("rx_bytes", "rx_errors", "tx_bytes", "tx_errors"):
        v = _int(stats / k)
        if v is None:
            return None
        out[k] = v
    return out


def _fs(path: Path, now: float) -> Obj | None:
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return {"time": rfc3339(now), "availableBytes": st.f_bavail * st.f_frsize,
            "capacityBytes": st.f_blocks * st.f_frsize,
            "usedBytes": (st.f_blocks - st.f_bfree) * st.f_frsize,
            "inodesFree": st.f_ffree, "inodes": st.f_files, "inodesUsed": st.f_files - st.f_ffree}


def _du(path: Path) -> tuple[int, int]:
    """Bytes allocated and inodes under ``path`` (du -s; hard links once)."""
    used = inodes = 0
    seen: set[tuple[int, int]] = set()
    stack = [str(path)]
    while stack:
        d = stack.pop()
        try:
            it = os.scandir(d)
        except OSError:
            continue
        with it:
            for e in it:
                try:
                    st = e.stat(follow_symlinks=False)
                except OSError:
                    continue
                if st.st_nlink > 1:
                    if (st.st_dev, st.st_ino) in seen:
                        continue
                    seen.add((st.st_dev, st.st_ino))
                used += st.st_blocks * 512
                inodes += 1
                if e.is_dir(follow_symlinks=False):
                    stack.append(e.path)
    return used, inodes


def summary(node_name: str, pods: Iterable[Obj], containers: Iterable[ContainerRef], *,
            rootfs_dir: Path, prev: dict[str, _Sample] | None = None, **options: Any) -> Obj:
    """One Summary; ``prev`` holds the CPU readings between calls (pass the
    same dict again; it is updated in place). ``options`` go to StatsCollector."""
    return StatsCollector(samples=prev, **options).summary(node_name, pods, containers,
                                                           rootfs_dir=rootfs_dir)


# -- /metrics/resource -----------------------------------------------------------

_HELP = {
    "node_cpu_usage_seconds_total": ("counter", "Cumulative cpu time consumed by the node in "
                                                "core-seconds"),
    "node_memory_working_set_bytes": ("gauge", "Current working set of the node in bytes"),
    "container_cpu_usage_seconds_total": ("counter", "Cumulative cpu time consumed by the "
                                                     "container in core-seconds"),
    "container_memory_working_set_bytes": ("gauge", "Current working set of the container in "
                                                    "bytes"),
    "container_start_time_seconds": ("gauge", "Start time of the container since unix epoch in "
                                              "seconds"),
    "pod_cpu_usage_seconds_total": ("counter", "Cumulative cpu time consumed by the pod in "
                                               "core-seconds"),
    "pod_memory_working_set_bytes": ("gauge", "Current working set of the pod in bytes"),
    "resource_scrape_error": ("gauge", "1 if there was an error while getting container "
                                       "metrics, 0 otherwise"),
    "scrape_error": ("gauge", "1 if there was an error while getting container metrics, "
                              "0 otherwise"),
}
_STABILITY = {"scrape_error": "[ALPHA] (Deprecated since 1.29.0) "}


def resource_metrics(summary: Obj | None) -> str:
    """The kubelet's /metrics/resource (Prometheus text) for ``summary``;
    None means reading the stats failed (scrape_error 1)."""
    series: dict[str, list[str]] = {k: [] for k in _HELP}

    def add(name: str, labels: dict[str, str], value: float, at: str | None = None) -> None:
        lbl = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
        ts = f" {_millis(at)}" if at else ""
        series[name].append(f"{name}{{{lbl}}} {_num(value)}{ts}" if lbl
                            else f"{name} {_num(value)}{ts}")

    if summary is not None:
        node = summary.get("node") or {}
        cpu, mem = node.get("cpu") or {}, node.get("memory") or {}
        if "usageCoreNanoSeconds" in cpu:
            add("node_cpu_usage_seconds_total", {}, cpu["usageCoreNanoSeconds"] / 1e9,
                cpu.get("time"))
        if "workingSetBytes" in mem:
            add("node_memory_working_set_bytes", {}, mem["workingSetBytes"], mem.get("time"))
        for pod in summary.get("pods") or []:
            ref = pod.get("podRef") or {}
            pl = {"pod": ref.get("name", ""), "namespace": ref.get("namespace", "")}
            for c in pod.get("containers") or []:
                cl = {"container": c.get("name", ""), **pl}
                if c.get("startTime"):
                    add("container_start_time_seconds", cl, _seconds(c["startTime"]))
                ccpu, cmem = c.get("cpu") or {}, c.get("memory") or {}
                if "usageCoreNanoSeconds" in ccpu:
                    add("container_cpu_usage_seconds_total", cl,
                        ccpu["usageCoreNanoSeconds"] / 1e9, ccpu.get("time"))
                if "workingSetBytes" in cmem:
                    add("container_memory_working_set_bytes", cl, cmem["workingSetBytes"],
                        cmem.get("time"))
            pcpu, pmem = pod.get("cpu") or {}, pod.get("memory") or {}
            if "usageCoreNanoSeconds" in pcpu:
                add("pod_cpu_usage_seconds_total", pl, pcpu["usageCoreNanoSeconds"] / 1e9,
                    pcpu.get("time"))
            if "workingSetBytes" in pmem:
                add("pod_memory_working_set_bytes", pl, pmem["workingSetBytes"], pmem.get("time"))
    error = 0 if summary is not None else 1
    add("resource_scrape_error", {}, error)
    add("scrape_error", {}, error)
    out = []
    for name in sorted(series):
        kind, text = _HELP[name]
        out.append(f"# HELP {name} {_STABILITY.get(name, '[STABLE] ')}{text}")
        out.append(f"# TYPE {name} {kind}")
        out.extend(series[name])
    return "\n".join(out) + "\n"


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _num(v: float) -> str:
    if float(v).is_integer() and abs(v) < 1e15:
        return str(int(v))
    return repr(float(v))


def _seconds(t: str) -> float:
    import datetime as dt

    return dt.datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp()


def _millis(t: str) -> int:
    return int(_seconds(t) * 1000)


__all__ = ["Cgroups", "ContainerRef", "StatsCollector", "resource_metrics", "summary"]
