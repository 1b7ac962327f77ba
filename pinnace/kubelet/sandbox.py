"""A pod's sandbox: the namespaces its containers share.

Network, IPC and UTS namespaces are pinned by bind mounts (namespaces.py;
the network one by PodNetwork), so no process has to hold them: starting a
pod costs two runtime calls fewer than with a pause container. Only a pod
that shares one PID namespace among its containers (shareProcessNamespace)
needs a process to be that namespace's init: then a catatonit container
runs as the sandbox, as before.

A marker file in the pod's directory (data dir, kept over a reboot) says a
sandbox was made; the pins live under /run, on a tmpfs of their own
(namespaces.share_dir; gone after a reboot). A marker
without live pins is a sandbox that died: the pod worker makes a new one and
restarts the containers in it, as the kubelet does after a reboot.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

from . import libc, namespaces, ocispec, steps
from .oci import RUNNING, OCIRuntime, Record, dump_json, unmount

Obj = dict[str, Any]

RUN_DIR = Path("/run/pinnace/pods")
MARKER = "sandbox.json"


def release_pin_dir() -> bool:
    """Unmount RUN_DIR, the shared mount pods' namespaces are pinned in (as
    `ip netns add` makes /run/netns), when it is empty: for `agent --reset`
    and a test's or benchmark's end. An agent still running makes it again
    at its next pod. True if it was unmounted."""
    if not RUN_DIR.is_dir() or any(RUN_DIR.iterdir()):
        return False
    return unmount(RUN_DIR)


class Sandboxes:
    def __init__(self, runtime: OCIRuntime, pods_dir: Path, pause: str, run_dir: Path = RUN_DIR):
        self.rt = runtime
        self.pods_dir = pods_dir
        self.pause = pause
        self.run_dir = run_dir
        # The markers as written, by pod uid: a pod's sync reads its marker
        # several times, and only this object writes or removes them.
        self._infos: dict[str, Obj] = {}

    # -- what exists ----------------------------------------------------------------

    def _marker(self, uid: str) -> Path:
        return self.pods_dir / uid / MARKER

    def info(self, uid: str) -> Obj | None:
        info = self._infos.get(uid)
        if info is None:
            try:
                info = json.loads(self._marker(uid).read_bytes())
            except (OSError, ValueError):
                return None
            self._infos[uid] = info
        return info

    def _write_marker(self, uid: str, info: Obj) -> None:
        self._marker(uid).write_bytes(dump_json(info))
        self._infos[uid] = info

    def existed(self, uid: str) -> bool:
        return self._marker(uid).exists()

    def uids(self) -> set[str]:
        return {p.parent.name for p in self.pods_dir.glob(f"*/{MARKER}")}

    def pause_record(self, uid: str) -> Record | None:
        info = self.info(uid) or {}
        pid = info.get("pause") or ""
        if not pid:
            return None
        try:
            return Record(**json.loads((self.rt.bundle(pid) / "meta.json").read_bytes()))
        except (OSError, ValueError, TypeError):
            return Record(id=pid, pod_uid=uid, namespace="", pod_name="", name="")

    def alive(self, uid: str) -> bool:
        info = self.info(uid)
        if info is None:
            return False
        if not all(namespaces.is_pinned(p, kind) for kind, p in info.get("pins", {}).items()):
            return False
        if info.get("netns") and not namespaces.is_pinned(info["netns"], "net"):
            return False
        pause = self.pause_record(uid)
        return pause is None or self.rt.state(pause).status == RUNNING

    # -- making and removing ---------------------------------------------------------

    def pin(self, pod: Obj, netns: str, hostname: str) -> None:
        """Pin the pod's namespaces and remember them. Blocking: on a step
        thread, where the caller may have made the pod's network just before
        (one hand-over for both)."""
        meta, spec = pod["metadata"], pod["spec"]
        uid = meta["uid"]
        pins: dict[str, Path] = {}
        # Files side by side in one directory, which is made a shared mount once.
        if not spec.get("hostIPC"):
            pins["ipc"] = self.run_dir / f"{uid}.ipc"
        if netns:  # a pod on the host's network has the host's name too
            pins["uts"] = self.run_dir / f"{uid}.uts"
        info: Obj = {"pins": {k: str(v) for k, v in pins.items()}, "netns": netns,
                     "pause": "", "created": time.time()}
        (self.pods_dir / uid).mkdir(parents=True, exist_ok=True)
        self._write_marker(uid, info)
        self._pin(pins, hostname if "uts" in pins else None, uid)

    async def create(self, pod: Obj, netns: str, hostname: str, pinned: bool = False) -> None:
        """Pin the pod's namespaces unless ``pinned`` (done by ``pin``), and
        start its pause container when its containers share a PID namespace."""
        meta, spec = pod["metadata"], pod["spec"]
        uid = meta["uid"]
        if not pinned:
            await steps.run(self.pin, pod, netns, hostname)
        if spec.get("shareProcessNamespace") and not spec.get("hostPID"):
            info = self.info(uid) or {}
            rec = Record(id=uuid.uuid4().hex + uuid.uuid4().hex, pod_uid=uid,
                         namespace=meta.get("namespace") or "default", pod_name=meta["name"],
                         name="")
            info["pause"] = rec.id
            self._write_marker(uid, info)
            ns = [{"type": "mount"}, {"type": "pid"}, *self._joined(info)]
            cfg = ocispec.config(
                args=["/pause", "-P"], env=[], cwd="/", uid=0, gid=0, groups=[], rootfs="",
                readonly_root=True, hostname=None, namespaces=ns,
                cgroups_path=f"{cgroup_parent(pod)}/{rec.id}",
                linux_resources={"cpu": {"shares": 2}},
                caps={k: [] for k in ("bounding", "effective", "permitted")}, privileged=False,
                no_new_privileges=True, mounts=[ocispec.bind(self.pause, "/pause", True)])
            await self.rt.create(rec, cfg)
            await self.rt.start(rec)

    def _pin(self, pins: dict[str, Path], hostname: str | None, uid: str) -> None:
        """The namespaces, and the pod's /dev/shm (one thread hop for both)."""
        namespaces.pin(pins, hostname, memory=True)
        if "ipc" in pins:
            # One /dev/shm for the pod, as its IPC namespace is one (containerd's
            # sandbox shm, 64 MiB).
            mount_shm(self.shm_dir(uid))

    def _unpin(self, pins: list[Path], uid: str) -> None:
        for p in pins:
            namespaces.unpin(p)
        unmount(self.shm_dir(uid))

    async def remove(self, uid: str) -> None:
        """Stop the pause container, unpin the namespaces, forget the marker
        (the network namespace is PodNetwork's to remove)."""
        info = self.info(uid) or {}
        pause = self.pause_record(uid)
        if pause is not None:
            await self.rt.stop(pause, 0)
            await self.rt.remove(pause)
        await steps.run(self._unpin, [Path(p) for p in info.get("pins", {}).values()], uid)
        self._marker(uid).unlink(missing_ok=True)
        self._infos.pop(uid, None)

    # -- for the containers ----------------------------------------------------------

    def shm_dir(self, uid: str) -> Path:
        return self.pods_dir / uid / "shm"

    def shm(self, uid: str) -> str | None:
        """The pod's /dev/shm, when it has its own IPC namespace."""
        d = self.shm_dir(uid)
        return str(d) if os.path.ismount(d) else None

    def _joined(self, info: Obj) -> list[Obj]:
        out = [{"type": {"ipc": "ipc", "uts": "uts"}[k], "path": p}
               for k, p in info.get("pins", {}).items()]
        if info.get("netns"):
            out.append({"type": "network", "path": info["netns"]})
        return out

    def container_namespaces(self, pod: Obj) -> list[Obj]:
        """The namespaces a container of the pod joins or gets, for its config.json."""
        uid = pod["metadata"]["uid"]
        info = self.info(uid) or {}
        out: list[Obj] = [{"type": "mount"}, *self._joined(info)]
        pause = self.pause_record(uid)
        if pause is not None:
            out.append({"type": "pid", "path": f"/proc/{self.rt.state(pause).pid}/ns/pid"})
        elif not pod["spec"].get("hostPID"):
            out.append({"type": "pid"})
        return out


def mount_shm(target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    if os.path.ismount(target):
        return
    libc.mount("shm", target, "tmpfs", libc.MS_NOSUID | libc.MS_NODEV | libc.MS_NOEXEC,
               "mode=1777,size=67108864", what="mount shm")


def cgroup_parent(pod: Obj) -> str:
    """The pod's cgroup, under its QoS tier, as the kubelet's cgroupfs driver names it."""
    qos = ocispec.qos_class(pod)
    tier = {"Guaranteed": "", "Burstable": "/burstable", "BestEffort": "/besteffort"}[qos]
    return f"/kubepods{tier}/pod{pod['metadata']['uid']}"
