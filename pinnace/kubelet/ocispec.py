"""The OCI runtime-spec config.json for a pod's sandbox and its containers.

Pure functions on JSON dicts: the pod and container as the API holds them,
the image's config, and what the agent has already resolved (environment,
volume mounts, namespace paths) go in; a config.json for runc or crun comes
out. The rules follow what the kubelet asks of containerd and what
containerd's CRI plugin writes: the image's ENTRYPOINT and CMD overridden by
command and args, containerd's default capability set, masked /proc paths,
cgroup limits from resources.
"""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path
from typing import Any

from pinnace.api.quantity import parse_quantity

Obj = dict[str, Any]

# What containerd grants a container that asks for nothing more (its
# oci.DefaultCapabilities), so a pod behaves here as it does on a node there.
DEFAULT_CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
                "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
                "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"]

ALL_CAPS = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK",
    "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
    "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE"]

MASKED_PATHS = ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
                "/sys/firmware", "/sys/devices/virtual/powercap"]
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CPU_PERIOD = 100_000
MIN_SHARES, MAX_SHARES = 2, 262_144


class SpecError(Exception):
    """A container that cannot be configured as asked (CreateContainerConfigError)."""


# -- what runs -------------------------------------------------------------------

def process_args(container: Obj, image_config: Obj) -> list[str]:
    """Kubernetes' rule: command replaces the image's ENTRYPOINT (and then its
    CMD is not used), args replace CMD."""
    command = container.get("command") or []
    args = container.get("args") or []
    if command:
        return [*command, *args]
    entry = image_config.get("Entrypoint") or []
    return [*entry, *(args or image_config.get("Cmd") or [])]


def merge_env(image_env: list[str], env: list[str]) -> list[str]:
    """The image's variables, overridden by the container's (same name: last wins, first place kept)."""
    out: dict[str, str] = {}
    for item in [*image_env, *env]:
        name, _, _ = item.partition("=")
        out[name] = item
    if "PATH" not in out:
        out["PATH"] = f"PATH={DEFAULT_PATH}"
    return list(out.values())


@functools.lru_cache(maxsize=64)
def _rows_of(path: str, stamp: tuple[int, int, int]) -> tuple[list[str], ...]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return tuple(line.split(":") for line in f.read().splitlines())
    except OSError:
        return ()


def _rows(path: Path) -> tuple[list[str], ...]:
    """A passwd or group file's lines, split at the colons. Every container
    start looks its user up; an image's files do not change, so they are
    read again only when the file's inode, size or mtime does (a stat
    instead of an open, a read and a parse)."""
    try:
        st = os.stat(path)
    except OSError:
        return ()
    return _rows_of(str(path), (st.st_ino, st.st_size, st.st_mtime_ns))


def _lookup(path: Path, name: str, field: int) -> int | None:
    """The numeric id of ``name`` in a passwd or group file, or None."""
    try:
        for parts in _rows(path):
            if len(parts) > field and parts[0] == name:
                return int(parts[field])
    except ValueError:
        pass
    return None


def _groups_of(rootfs: Path, user: str, uid: int) -> list[int]:
    out = []
    try:
        for parts in _rows(rootfs / "etc/group"):
            if len(parts) >= 4 and user and user in parts[3].split(","):
                out.append(int(parts[2]))
    except ValueError:
        pass
    return out


def resolve_user(pod: Obj, container: Obj, image_config: Obj, rootfs: Path) -> tuple[int, int, list[int]]:
    """uid, gid and supplementary groups: securityContext first (container,
    then pod), else the image's USER, looked up in the image's /etc/passwd.
    The groups, sorted, hold the gid itself, the pod's supplementalGroups
    and fsGroup and, unless the pod's supplementalGroupsPolicy is Strict,
    the groups the image's /etc/group lists the user in (containerd's way)."""
    psc = (pod.get("spec") or {}).get("securityContext") or {}
    csc = container.get("securityContext") or {}
    uid = csc.get("runAsUser", psc.get("runAsUser"))
    gid = csc.get("runAsGroup", psc.get("runAsGroup"))
    user_name = ""
    image_user = str(image_config.get("User") or "")
    if uid is None and image_user:
        u, _, g = image_user.partition(":")
        if u.isdigit():
            uid = int(u)
        else:
            found = _lookup(rootfs / "etc/passwd", u, 2)
            if found is None:
                raise SpecError(f"unable to find user {u}: no matching entries in passwd file")
            uid, user_name = found, u
        if g and gid is None:
            gid = int(g) if g.isdigit() else _lookup(rootfs / "etc/group", g, 2)
            if gid is None:
                raise SpecError(f"unable to find group {g}: no matching entries in group file")
    uid = int(uid or 0)
    if gid is None:
        if not user_name:
            user_name = _name_of(rootfs / "etc/passwd", uid)
        gid = _lookup(rootfs / "etc/passwd", user_name, 3) if user_name else None
    gid = int(gid or 0)
    if (csc.get("runAsNonRoot", psc.get("runAsNonRoot"))) and uid == 0:
        if csc.get("runAsUser", psc.get("runAsUser")) is None and not image_user:
            raise SpecError("container has runAsNonRoot and image will run as root "
                            f"(pod: \"{_pod_ref(pod)}\", container: {container.get('name')})")
        raise SpecError("container's runAsUser breaks non-root policy "
                        f"(pod: \"{_pod_ref(pod)}\", container: {container.get('name')})")
    image_groups = [] if psc.get("supplementalGroupsPolicy") == "Strict" else \
        _groups_of(rootfs, user_name or _name_of(rootfs / "etc/passwd", uid), uid)
    groups = sorted({gid, *image_groups, *[int(g) for g in psc.get("supplementalGroups") or []],
                     *([int(psc["fsGroup"])] if psc.get("fsGroup") is not None else [])})
    return uid, gid, groups


def _name_of(passwd: Path, uid: int) -> str:
    for parts in _rows(passwd):
        if len(parts) > 2 and parts[2] == str(uid):
            return parts[0]
    return ""


def _pod_ref(pod: Obj) -> str:
    meta = pod.get("metadata") or {}
    return f"{meta.get('name')}_{meta.get('namespace')}({meta.get('uid')})"


# -- limits ------------------------------------------------------------------------

def milli_cpu(value: Any) -> int:
    return math.ceil(parse_quantity(str(value)) * 1000) if value is not None else 0


def shares_of(milli: int) -> int:
    """cpu.shares from a request, as the kubelet computes them (MilliCPUToShares)."""
    if milli == 0:
        return MIN_SHARES
    return max(MIN_SHARES, min(MAX_SHARES, milli * 1024 // 1000))


def resources(container: Obj, qos: str) -> Obj:
    """linux.resources for a container's requests and limits."""
    res = container.get("resources") or {}
    limits, requests = res.get("limits") or {}, res.get("requests") or {}
    out: Obj = {}
    req_cpu = milli_cpu(requests.get("cpu", limits.get("cpu")))
    cpu: Obj = {"shares": shares_of(req_cpu) if qos != "BestEffort" else MIN_SHARES}
    if limits.get("cpu") is not None:
        cpu["quota"] = max(1000, milli_cpu(limits["cpu"]) * CPU_PERIOD // 1000)
        cpu["period"] = CPU_PERIOD
    out["cpu"] = cpu
    if limits.get("memory") is not None:
        out["memory"] = {"limit": int(parse_quantity(str(limits["memory"])))}
    return out


# -- privileges ---------------------------------------------------------------------

def capabilities(container: Obj) -> Obj:
    sc = container.get("securityContext") or {}
    if sc.get("privileged"):
        caps = list(ALL_CAPS)
    else:
        add = [_cap(c) for c in (sc.get("capabilities") or {}).get("add") or []]
        drop = {_cap(c) for c in (sc.get("capabilities") or {}).get("drop") or []}
        if "CAP_ALL" in add:
            caps = list(ALL_CAPS)
        else:
            caps = [c for c in DEFAULT_CAPS if c not in drop] + [c for c in add if c not in DEFAULT_CAPS]
        if "CAP_ALL" in drop:
            caps = [c for c in add if c != "CAP_ALL"]
    return {k: list(caps) for k in ("bounding", "effective", "permitted")}


def _cap(name: str) -> str:
    name = name.upper()
    return name if name.startswith("CAP_") else "CAP_" + name


# -- the whole config -----------------------------------------------------------------

def _base_mounts(readonly_sys: bool) -> list[Obj]:
    return [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", "ro" if readonly_sys else "rw"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
    ]


def bind(source: str | Path, destination: str, readonly: bool = False) -> Obj:
    return {"destination": destination, "type": "bind", "source": str(source),
            "options": ["rbind", "rprivate", "ro" if readonly else "rw"]}


def config(*, args: list[str], env: list[str], cwd: str, uid: int, gid: int, groups: list[int],
           rootfs: str, readonly_root: bool, hostname: str | None, namespaces: list[Obj],
           cgroups_path: str, linux_resources: Obj, caps: Obj, privileged: bool,
           no_new_privileges: bool, mounts: list[Obj], shm: str | None = None,
           oom_score_adj: int | None = None, annotations: dict[str, str] | None = None) -> Obj:
    """The config.json: base mounts, then ``mounts`` (volumes, /etc/hosts, ...),
    which override a base mount at the same destination."""
    own = {m["destination"] for m in mounts}
    base = [m for m in _base_mounts(not privileged) if m["destination"] not in own]
    if shm and "/dev/shm" not in own:
        base.append(bind(shm, "/dev/shm"))
    elif "/dev/shm" not in own:
        base.append({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
                     "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]})
    process: Obj = {"terminal": False, "user": {"uid": uid, "gid": gid, "additionalGids": groups},
                    "args": args, "env": env, "cwd": cwd or "/", "capabilities": caps,
                    "noNewPrivileges": no_new_privileges}
    if oom_score_adj is not None:
        process["oomScoreAdj"] = oom_score_adj
    linux: Obj = {"namespaces": namespaces, "cgroupsPath": cgroups_path, "resources": {
        **linux_resources, "devices": [{"allow": privileged, "access": "rwm"}]}}
    if not privileged:
        linux["maskedPaths"] = list(MASKED_PATHS)
        linux["readonlyPaths"] = list(READONLY_PATHS)
    out: Obj = {"ociVersion": "1.0.2", "process": process,
                "root": {"path": rootfs, "readonly": readonly_root},
                "mounts": base + mounts, "linux": linux,
                "annotations": dict(annotations or {})}
    if hostname is not None:
        out["hostname"] = hostname
    return out


def qos_class(pod: Obj) -> str:
    """The pod's QoS class (as the API server sets status.qosClass)."""
    status_qos = (pod.get("status") or {}).get("qosClass")
    if status_qos:
        return str(status_qos)
    spec = pod.get("spec") or {}
    containers = [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
    requests_any, guaranteed = False, True
    for c in containers:
        res = c.get("resources") or {}
        req, lim = res.get("requests") or {}, res.get("limits") or {}
        if req or lim:
            requests_any = True
        for r in ("cpu", "memory"):
            if r not in lim or (r in req and parse_quantity(str(req[r])) != parse_quantity(str(lim[r]))):
                guaranteed = False
    if not requests_any:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def oom_score_adj(qos: str, memory_request: float, memory_capacity: float) -> int:
    """The kubelet's OOM score policy: guaranteed pods last, best-effort first."""
    if qos == "Guaranteed":
        return -997
    if qos == "BestEffort":
        return 1000
    adj = 1000 - int(1000 * memory_request / max(memory_capacity, 1))
    return max(3, min(999, adj))


__all__ = ["ALL_CAPS", "DEFAULT_CAPS", "SpecError", "bind", "capabilities", "config", "merge_env",
           "oom_score_adj", "process_args", "qos_class", "resolve_user", "resources", "shares_of"]
