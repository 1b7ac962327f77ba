"""The host's cgroup hierarchies: where the agent's cgroups are, and the one
change to the host's layout it makes, so that crun can run on hybrid hosts.

crun refuses a hybrid host (v1 controllers, plus the v2 hierarchy at
/sys/fs/cgroup/unified) whose v2 hierarchy still offers a controller: "cgroups
in hybrid mode not supported, drop all controllers from cgroupv2". systemd's
hybrid mode binds every controller to a v1 hierarchy, so that file is empty;
hosts set up by hand (this project's CI machines among them) leave one or
two out, hugetlb typically. The agent binds those to v1 hierarchies of their
own, as systemd would have, provided nothing uses them on v2, and records it
so that `pinnace agent --reset` can put them back once no agent runs and no
cgroup is left in them. crun costs a third of runc's CPU per container.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import signal
import time
from pathlib import Path

from . import libc

log = logging.getLogger("pinnace.kubelet.cgroups")

ROOT = Path("/sys/fs/cgroup")
UNIFIED = ROOT / "unified"
# What the agent mounted, one controller a line; under /run, so a reboot
# (which undoes the mounts) forgets it too.
RECORD = Path("/run/pinnace/cgroup-v1-mounts")


# The QoS tiers the pods' cgroups are made in, as the kubelet's cgroupfs driver names them.
TIERS = ("kubepods/burstable", "kubepods/besteffort", "kubepods")
# The parent of the runtime probe's throwaway cgroup (oci.probe).
PROBE_PARENT = "pinnace"


class CgroupError(Exception):
    pass


def hierarchies() -> list[Path]:
    """The cgroup v2 root, or each v1 hierarchy's (and the hybrid v2 one's)."""
    return [ROOT] + ([p for p in ROOT.iterdir() if p.is_dir() and not p.is_symlink()]
                     if ROOT.is_dir() else [])


def _rmdir(d: Path) -> None:
    try:
        os.rmdir(d)
    except OSError:
        pass  # not there, or still in use


def kill_pod_processes(uid: str, wait: float = 5.0) -> int:
    """SIGKILL whatever still runs in the pod's cgroups (a container whose
    runtime state was lost: nothing else would stop it), and wait up to
    ``wait`` seconds for them to be gone, so the cgroups can be removed.
    How many there were."""

    def pids() -> set[int]:
        out: set[int] = set()
        for base in hierarchies():
            for tier in TIERS:
                for procs in (base / tier / f"pod{uid}").glob("**/cgroup.procs"):
                    try:
                        out.update(int(p) for p in procs.read_text().split())
                    except (OSError, ValueError):
                        pass
        return out

    found = pids()
    for pid in found:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    deadline = time.monotonic() + wait
    while found and pids() and time.monotonic() < deadline:
        time.sleep(0.05)
    return len(found)


def remove_pod_cgroups(uid: str) -> None:
    """The pod's cgroup directories, its containers' included, under every
    hierarchy (v1 and v2); those still in use stay."""
    for base in hierarchies():
        for tier in TIERS:
            pod = base / tier / f"pod{uid}"
            try:
                with os.scandir(pod) as entries:
                    for e in entries:
                        if e.is_dir(follow_symlinks=False):
                            _rmdir(Path(e.path))
            except OSError:
                continue  # no such pod here
            _rmdir(pod)


def remove_unused_pod_cgroups() -> None:
    """Every pod cgroup in the QoS tiers that nothing uses any more, whoever
    made it: an agent stopped in the middle of a pod's teardown leaves that
    pod's, and a reset no longer knows the pod. One in use stays (the
    kernel refuses to remove a cgroup with processes or children in use)."""
    for base in hierarchies():
        for tier in TIERS:
            try:
                with os.scandir(base / tier) as entries:
                    uids = [e.name[3:] for e in entries
                            if e.name.startswith("pod") and e.is_dir(follow_symlinks=False)]
            except OSError:
                continue
            for uid in uids:
                remove_pod_cgroups(uid)


def remove_node_cgroups() -> None:
    """The QoS tiers themselves, and the probe's parent, once nothing is left in them."""
    for base in hierarchies():
        for d in (*TIERS, PROBE_PARENT):
            _rmdir(base / d)


def _mount_types() -> dict[str, str]:
    """Mount point -> file system type, as this process sees them."""
    out = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields = left.split()
            if len(fields) >= 5 and right:
                out[fields[4]] = right.split()[0]
    return out


def hybrid_v2_controllers() -> list[str]:
    """The controllers the v2 hierarchy of a hybrid host offers; [] on a
    v1-only or v2-only host, or one with none left on v2."""
    types = _mount_types()
    if types.get(str(ROOT)) != "tmpfs" or types.get(str(UNIFIED)) != "cgroup2":
        return []
    try:
        return (UNIFIED / "cgroup.controllers").read_text().split()
    except OSError:
        return []


def _locked() -> int:
    RECORD.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(RECORD.with_name(RECORD.name + ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def _recorded() -> list[str]:
    try:
        return RECORD.read_text().split()
    except OSError:
        return []


def bind_hybrid_controllers_to_v1() -> list[str]:
    """Mount each controller the v2 hierarchy of a hybrid host offers as a v1
    hierarchy at /sys/fs/cgroup/<name>; the names mounted. Raises
    CgroupError (with the names mounted so far kept and recorded) if one
    cannot be: in use on v2, or the kernel says no."""
    fd = _locked()  # two agents starting at once: the second finds nothing left to do
    try:
        names = hybrid_v2_controllers()
        if not names:
            return []
        in_use = (UNIFIED / "cgroup.subtree_control").read_text().split()
        if in_use:
            raise CgroupError(f"the cgroup v2 hierarchy uses {' '.join(in_use)}")
        done: list[str] = []
        for name in names:
            target = ROOT / name
            try:
                target.mkdir(exist_ok=True)
            except OSError as e:
                raise CgroupError(f"making {target}: {e.strerror}") from e
            err = _mount_v1(name, target)
            if err:
                _rmdir(target)
                raise CgroupError(f"mounting the {name} controller as cgroup v1 at {target}: "
                                  f"{os.strerror(err)}")
            done.append(name)
            RECORD.write_text("".join(f"{n}\n" for n in [*_recorded(), name]))
        return done
    finally:
        os.close(fd)


def _hierarchy_id(name: str) -> int:
    """The hierarchy a controller is bound to (/proc/cgroups; 0: cgroup v2)."""
    with open("/proc/cgroups") as f:
        for line in f:
            fields = line.split()
            if fields and fields[0] == name:
                return int(fields[1])
    return 0


def _mount_v1(name: str, target: Path) -> int:
    try:
        libc.mount("cgroup", target, "cgroup", libc.MS_NOSUID | libc.MS_NODEV | libc.MS_NOEXEC,
                   name)
    except OSError as e:
        return e.errno or errno.EIO
    return 0


def _unmount_v1(name: str, target: Path) -> bool:
    """Unmount the hierarchy and see the kernel destroy it. It does so at
    the unmount only if no cgroup, not even a removed one not yet freed, is
    left in it; else it keeps it, unmounted, and the controller stays off
    v2 for good. Mounted again once those are freed, it is the same
    hierarchy, and unmounting that destroys it."""
    for attempt in range(5):
        if attempt:
            time.sleep(0.5)
            if _mount_v1(name, target):
                return False
        err = libc.umount(target)
        if err:
            if err != errno.EINVAL:  # EINVAL: not mounted (any more)
                log.warning("unmounting %s: %s", target, os.strerror(err))
                return False
        for _ in range(10):
            if _hierarchy_id(name) == 0:
                return True
            time.sleep(0.05)
    return False


def release_v1_mounts() -> list[str]:
    """Undo bind_hybrid_controllers_to_v1 for each hierarchy it mounted that
    holds no cgroup any more (the controller goes back to v2); the names
    released. For `agent --reset` when no agent runs on the machine."""
    fd = _locked()
    try:
        kept, released = [], []
        for name in _recorded():
            target = ROOT / name
            if any(p.is_dir() for p in target.iterdir()) if target.is_dir() else False:
                kept.append(name)  # someone's cgroups are still in it
                continue
            if not _unmount_v1(name, target):
                log.warning("the %s cgroup controller stays on cgroup v1", name)
                kept.append(name)
                continue
            _rmdir(target)
            released.append(name)
        if kept:
            RECORD.write_text("".join(f"{n}\n" for n in kept))
        else:
            RECORD.unlink(missing_ok=True)
        return released
    finally:
        os.close(fd)


__all__ = ["CgroupError", "bind_hybrid_controllers_to_v1", "hierarchies", "hybrid_v2_controllers",
           "kill_pod_processes", "release_v1_mounts", "remove_node_cgroups", "remove_pod_cgroups",
           "remove_unused_pod_cgroups"]
