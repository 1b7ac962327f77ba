"""Pod volumes on the node, as the kubelet's volume plugins lay them out.

    pods_dir/<uid>/volumes/kubernetes.io~empty-dir/<name>/
    pods_dir/<uid>/volumes/kubernetes.io~configmap/<name>/    (also ~secret,
                                                   ~downward-api, ~projected)
hostPath and persistentVolumeClaim (hostPath or local PVs) use the host's
path itself. ConfigMap, Secret, downward API and projected volumes are
written the kubelet's atomic way (``write_atomic``):

    <dir>/..2024_05_01_10_00_00.123456789/   the files
    <dir>/..data -> ..2024_05_01_10_00_00.123456789
    <dir>/key    -> ..data/key               what the container sees

An update writes a new timestamped directory and renames a fresh ``..data``
link over the old one, so a reader sees the old set or the new set, never a
mix. Secret, downward API and projected volumes sit on a tmpfs when the
agent may mount (root), as the kubelet puts them on a memory-backed
emptyDir; ``teardown`` unmounts them.

Errors carry the kubelet's words: ``str(MountError)`` is the event message
(``MountVolume.SetUp failed for volume "cfg" : configmap "x" not found``).
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import errno
import logging
import os
import random
import shutil
import stat
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from pinnace.api.quantity import QuantityError, value
from pinnace.client.rest import ApiError

from . import libc, steps
from .envvars import ConfigError, expand, metadata_field, resource_value

log = logging.getLogger("pinnace.kubelet.volumes")

Obj = dict[str, Any]

__all__ = ["MountError", "VolumeManager", "container_mounts", "write_atomic"]

PLUGIN_DIRS = {
    "emptyDir": "kubernetes.io~empty-dir",
    "configMap": "kubernetes.io~configmap",
    "secret": "kubernetes.io~secret",
    "downwardAPI": "kubernetes.io~downward-api",
    "projected": "kubernetes.io~projected",
}
# Written by the atomic writer, refreshed while the pod runs, read-only in containers.
ATOMIC = ("configMap", "secret", "downwardAPI", "projected")
# The kubelet keeps these on a memory-backed emptyDir.
MEMORY_BACKED = ("secret", "downwardAPI", "projected")
DEFAULT_MODE = 0o644
ROOT_CA_CONFIGMAP = "kube-root-ca.crt"
TOKEN_MAX_AGE = 24 * 3600      # the kubelet's token manager renews a day-old token anyway
# Seconds a ConfigMap or Secret read serves every pod (VolumeManager._get):
# well under the agent's refresh interval, so a change still shows within it.
FRESH_FOR = 1.0
DATA_DIR, NEW_DATA_DIR = "..data", "..data_tmp"


class MountError(Exception):
    """A volume that cannot be set up or mounted. ``message`` is the cause in
    the kubelet's words; ``str()`` adds the kubelet's prefix when the error
    belongs to one volume."""

    def __init__(self, message: str, volume: str | None = None):
        self.message = message
        self.volume = volume
        super().__init__(f'MountVolume.SetUp failed for volume "{volume}" : {message}'
                         if volume else message)


def _aggregate(errors: list[str]) -> str:
    """utilerrors.NewAggregate(...).Error(): one message, or [a, b] for several."""
    seen = list(dict.fromkeys(errors))
    return seen[0] if len(seen) == 1 else "[" + ", ".join(seen) + "]"


# -- the atomic writer -------------------------------------------------------------------

Payload = dict[str, tuple[bytes, int]]    # relative path -> (content, mode)


def _validate_path(p: str) -> None:
    if not p:
        raise ValueError(f'invalid path: must not be empty: "{p}"')
    if p.startswith("/"):
        raise ValueError(f"invalid path: must be relative path: {p}")
    if len(p) > 4096:
        raise ValueError("invalid path: must be less than or equal to 4096 characters")
    items = p.split("/")
    for item in items:
        if item == "..":
            raise ValueError(f"invalid path: must not contain '..': {p}")
        if len(item) > 255:
            raise ValueError("invalid path: filenames must be less than or equal to 255 characters")
    if items[0].startswith("..") and len(items[0]) > 2:
        raise ValueError(f"invalid path: must not start with '..': {p}")


def _walk(root: Path) -> set[str]:
    out: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        for n in [*dirnames, *filenames]:
            out.add(n if rel == "." else f"{rel}/{n}")
    return out


def _set_ownership(root: Path, gid: int) -> None:
    """volume.SetVolumeOwnership for a read-only volume: group fsGroup,
    group-readable, directories setgid."""
    for dirpath, dirnames, filenames in os.walk(root):
        for p in [dirpath, *(os.path.join(dirpath, n) for n in [*dirnames, *filenames])]:
            try:
                os.lchown(p, -1, gid)
            except OSError as e:
                log.debug("chown %s: %s", p, e)
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                continue
            mask = 0o440 | (0o110 | stat.S_ISGID if stat.S_ISDIR(st.st_mode) else 0)
            os.chmod(p, stat.S_IMODE(st.st_mode) | mask)


def _new_ts_dir(target: Path) -> Path:
    prefix = dt.datetime.now(dt.UTC).strftime("..%Y_%m_%d_%H_%M_%S.")
    while True:
        d = target / f"{prefix}{random.randrange(10**9)}"
        try:
            d.mkdir()
        except FileExistsError:
            continue
        os.chmod(d, 0o755)
        return d


def write_atomic(target: Path, payload: Payload, fs_group: int | None = None) -> bool:
    """Project ``payload`` into ``target`` atomically (pkg/volume/util's
    AtomicWriter). Returns False when the files on disk already match.
    Raises ValueError for a path the writer refuses."""
    clean: Payload = {}
    for p, content in payload.items():
        _validate_path(p)
        clean[os.path.normpath(p)] = content
    target.mkdir(parents=True, exist_ok=True)
    data_link = target / DATA_DIR
    try:
        old_ts = os.readlink(data_link)
    except FileNotFoundError:
        old_ts = ""
    to_remove: set[str] = set()
    if old_ts:
        old_path = target / old_ts
        wanted: set[str] = set()
        for p in clean:
            while p:
                wanted.add(p)
                p = os.path.dirname(p)
        to_remove = (_walk(old_path) if old_path.is_dir() else set()) - wanted
        if not to_remove and all(_same(old_path / p, data) for p, (data, _) in clean.items()):
            return False
    ts = _new_ts_dir(target)
    try:
        for p, (data, mode) in clean.items():
            full = ts / p
            full.parent.mkdir(parents=True, exist_ok=True)
            for d in full.parents:
                if d == ts:
                    break
                os.chmod(d, 0o755)
            fd = os.open(full, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            try:
                os.write(fd, data)
                os.fchmod(fd, mode & 0o7777)
            finally:
                os.close(fd)
        if fs_group is not None:
            _set_ownership(ts, fs_group)
        tmp_link = target / NEW_DATA_DIR
        if os.path.lexists(tmp_link):
            os.unlink(tmp_link)
        os.symlink(ts.name, tmp_link)
        os.rename(tmp_link, data_link)
    except BaseException:
        shutil.rmtree(ts, ignore_errors=True)
        raise
    for p in clean:
        top = p.split("/", 1)[0]
        if not os.path.lexists(target / top):
            os.symlink(f"{DATA_DIR}/{top}", target / top)
    for p in to_remove:
        if "/" not in p and os.path.islink(target / p):
            os.unlink(target / p)
    if old_ts and old_ts != ts.name:
        shutil.rmtree(target / old_ts, ignore_errors=True)
    if fs_group is not None:
        _set_ownership_one(target, fs_group)
    return True


def _set_ownership_one(p: Path, gid: int) -> None:
    try:
        os.lchown(p, -1, gid)
        os.chmod(p, stat.S_IMODE(os.stat(p).st_mode) | 0o550 | stat.S_ISGID)
    except OSError as e:
        log.debug("chown %s: %s", p, e)


def _same(path: Path, data: bytes) -> bool:
    try:
        return path.read_bytes() == data
    except OSError:
        return False


# -- tmpfs --------------------------------------------------------------------------------

def mount_tmpfs(path: Path, size: int | None, mode: str = "1777") -> None:
    opts = f"mode={mode}" + (f",size={size}" if size else "")
    libc.mount("tmpfs", path, "tmpfs", libc.MS_NOSUID | libc.MS_NODEV, opts,
               what="mount tmpfs")


def unmount(path: Path) -> None:
    e = libc.umount(path)
    if e in (0, errno.EINVAL, errno.ENOENT):   # not a mount point (any more)
        return
    e = libc.umount(path, libc.MNT_DETACH)
    if e:
        raise OSError(e, f"unmount {path}: {os.strerror(e)}")


def mounts_under(root: Path) -> list[Path]:
    """Mount points at or below ``root``, deepest first (from /proc/self/mountinfo)."""
    prefix = str(root).rstrip("/")
    out = []
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        fields = line.split(" ")
        if len(fields) < 5:
            continue
        mp = _unescape(fields[4])
        if mp == prefix or mp.startswith(prefix + "/"):
            out.append(Path(mp))
    return sorted(set(out), key=lambda p: len(p.parts), reverse=True)


def _unescape(s: str) -> str:
    """A mountinfo field with its octal escapes (\\040 for a space) undone."""
    if "\\" not in s:  # nearly every line: a teardown reads them all, twice
        return s
    out, i = [], 0
    while i < len(s):
        if s[i] == "\\" and i + 3 < len(s) and s[i + 1:i + 4].isdigit():
            out.append(chr(int(s[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


# -- host paths -----------------------------------------------------------------------------

def _no_backsteps(p: str) -> bool:
    return ".." not in p.split("/")


def check_host_path(path: str, type_: str) -> None:
    """The hostPath type check (pkg/volume/hostpath), creating what *OrCreate asks for."""
    if not type_:
        return
    p = Path(path)
    try:
        s: os.stat_result | None = os.stat(p)
    except OSError:
        s = None
    if type_ == "DirectoryOrCreate" and s is None:
        os.makedirs(p, 0o755, exist_ok=True)
        return
    if type_ in ("DirectoryOrCreate", "Directory"):
        if s is None or not stat.S_ISDIR(s.st_mode):
            raise ValueError(f"hostPath type check failed: {path} is not a directory")
        return
    if type_ == "FileOrCreate" and s is None:
        try:
            os.close(os.open(p, os.O_CREAT | os.O_WRONLY, 0o644))
        except OSError as e:
            raise ValueError(str(e)) from e
        return
    if type_ in ("FileOrCreate", "File"):
        if s is None or not stat.S_ISREG(s.st_mode):
            raise ValueError(f"hostPath type check failed: {path} is not a file")
        return
    checks = {"Socket": (stat.S_ISSOCK, "a socket file"),
              "CharDevice": (stat.S_ISCHR, "a character device"),
              "BlockDevice": (stat.S_ISBLK, "a block device")}
    if type_ not in checks:
        raise ValueError(f"{type_} is an invalid volume type")
    test, what = checks[type_]
    if s is None or not test(s.st_mode):
        raise ValueError(f"hostPath type check failed: {path} is not {what}")


# -- the manager ------------------------------------------------------------------------------

@dataclass
class _Token:
    token: str
    issued: float
    expires: float


@dataclass
class _PodVolumes:
    paths: dict[str, Path] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)
    tokens: dict[tuple[str, int], _Token] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


def _volume_kind(v: Obj) -> str:
    for k in v:
        if k != "name" and v[k] is not None:
            return k
    return "emptyDir"


def _api_message(e: ApiError) -> str:
    return str(e.status.get("message") or e)


class VolumeManager:
    """Sets up, refreshes and tears down the volumes of the pods on this node.

    client: the agent's API client (configmaps, secrets, PVCs, PVs, tokens).
    pods_dir: the kubelet's pods directory. node_name: this node.
    ca_file: the cluster CA, used for the kube-root-ca.crt ConfigMap while
    the controllers have not published it yet. cluster_domain: kept for
    callers that template service names; no volume needs it today.
    node_allocatable: what resourceFieldRef and memory-backed volumes fall
    back to (default: this host). memory_backed: put Memory emptyDirs and
    secret/downwardAPI/projected volumes on tmpfs (default: when root).
    clock: seconds since the epoch (tests pass a fake). fresh_for: seconds a
    ConfigMap or Secret read from the API serves every pod that asks (0:
    read it each time)."""

    def __init__(self, client: Any, pods_dir: Path, *, node_name: str,
                 ca_file: Path | None = None, cluster_domain: str = "cluster.local",
                 node_allocatable: Mapping[str, Any] | None = None,
                 memory_backed: bool | None = None,
                 clock: Callable[[], float] = time.time, fresh_for: float = FRESH_FOR):
        self.client = client
        self.pods_dir = Path(pods_dir)
        self.node_name = node_name
        self.ca_file = ca_file
        self.cluster_domain = cluster_domain
        self.node_allocatable = node_allocatable
        self.memory_backed = os.geteuid() == 0 if memory_backed is None else memory_backed
        self.clock = clock
        self._pods: dict[str, _PodVolumes] = {}
        self._immutable: dict[tuple[str, str, str], Obj] = {}
        self.fresh_for = fresh_for
        # key -> (monotonic time it was read, what was read: None if absent)
        self._recent: dict[tuple[str, str, str], tuple[float, Obj | None]] = {}
        self._reading: dict[tuple[str, str, str], asyncio.Future[Obj | None]] = {}

    def volumes_dir(self, uid: str) -> Path:
        return self.pods_dir / uid / "volumes"

    def _dir(self, uid: str, kind: str, name: str) -> Path:
        return self.volumes_dir(uid) / PLUGIN_DIRS[kind] / name

    # -- lifecycle --------------------------------------------------------------------------

    async def setup(self, pod: Obj) -> dict[str, Path]:
        """Set up every volume not yet set up; volume name -> host path.
        Raises MountError for the first volume that failed (the others are
        still set up, so the next call has less to do)."""
        uid = pod["metadata"]["uid"]
        st = self._pods.setdefault(uid, _PodVolumes())
        async with st.lock:
            first: MountError | None = None
            for v in (pod.get("spec") or {}).get("volumes") or []:
                name = v.get("name") or ""
                if name in st.paths:
                    continue
                try:
                    st.paths[name] = await self._setup_one(pod, v, st)
                    st.kinds[name] = _volume_kind(v)
                except MountError as e:
                    if e.volume is None:
                        e = MountError(e.message, name)
                    log.info("pod %s: %s", uid, e)
                    first = first or e
            if first is not None:
                raise first
            return dict(st.paths)

    async def refresh(self, pod: Obj) -> bool:
        """Rewrite configMap, secret, downwardAPI and projected volumes whose
        contents changed (renewing tokens past 80% of their lifetime). True
        if anything was rewritten. A source that fails now keeps the last
        contents, as the kubelet does."""
        uid = pod["metadata"]["uid"]
        st = self._pods.get(uid)
        if st is None:
            return False
        changed = False
        async with st.lock:
            for v in (pod.get("spec") or {}).get("volumes") or []:
                name = v.get("name") or ""
                kind = st.kinds.get(name)
                if name not in st.paths or kind not in ATOMIC:
                    continue
                try:
                    payload = await self._payload(pod, v, kind, st)
                    changed |= await steps.run(
                        write_atomic, st.paths[name], payload, self._fs_group(pod))
                except MountError as e:
                    log.info("pod %s: refresh of volume %s: %s", uid, name, e.message)
                except (OSError, ValueError) as e:
                    log.warning("pod %s: refresh of volume %s: %s", uid, name, e)
        return changed

    async def teardown(self, pod_uid: str) -> None:
        """Unmount this pod's tmpfs volumes and remove its volumes directory."""
        st = self._pods.get(pod_uid)
        lock = st.lock if st is not None else asyncio.Lock()
        async with lock:
            root = self.volumes_dir(pod_uid)
            await steps.run(self._teardown_sync, root)
            self._pods.pop(pod_uid, None)

    @staticmethod
    def _teardown_sync(root: Path) -> None:
        for mp in mounts_under(root):
            unmount(mp)
        if mounts_under(root):
            raise OSError(errno.EBUSY, f"{root}: mounts remain")
        if os.path.lexists(root):
            shutil.rmtree(root)

    # -- one volume --------------------------------------------------------------------------

    async def _setup_one(self, pod: Obj, v: Obj, st: _PodVolumes) -> Path:
        kind = _volume_kind(v)
        name = v.get("name") or ""
        uid = pod["metadata"]["uid"]
        try:
            if kind == "emptyDir":
                return await steps.run(self._empty_dir, pod, v)
            if kind == "hostPath":
                hp = v["hostPath"] or {}
                return await steps.run(self._host_path, hp.get("path") or "",
                                       hp.get("type") or "")
            if kind == "persistentVolumeClaim":
                src = v["persistentVolumeClaim"] or {}
                return await self._claim(pod, src.get("claimName") or "")
            if kind == "ephemeral":
                return await self._claim(pod, f"{pod['metadata']['name']}-{name}")
            if kind in ATOMIC:
                d = self._dir(uid, kind, name)
                payload = await self._payload(pod, v, kind, st)
                await steps.run(self._write_atomic_dir, pod, d, kind, payload)
                return d
        except (OSError, ValueError) as e:
            raise MountError(str(e), name) from e
        raise MountError(f"volume type {kind} is not supported on this node", name)

    @staticmethod
    def _fs_group(pod: Obj) -> int | None:
        g = ((pod.get("spec") or {}).get("securityContext") or {}).get("fsGroup")
        return int(g) if isinstance(g, int) else None

    def _memory_size(self, pod: Obj, size_limit: Any = None) -> int | None:
        """calculateEmptyDirMemorySize: node allocatable memory, lowered to
        the pod's memory limit, lowered to sizeLimit."""
        alloc = self.node_allocatable
        size: int | None = None
        try:
            if alloc is not None and alloc.get("memory") is not None:
                size = value(alloc["memory"])
            else:
                from .host import MEMORY_AVAILABLE_MIN, mem_total
                size = max(mem_total() - MEMORY_AVAILABLE_MIN, 0) or None
            pod_limit = _pod_memory_limit(pod)
            if pod_limit and (size is None or pod_limit <= size):
                size = pod_limit
            if size_limit is not None:
                lim = value(size_limit)
                if lim > 0 and (size is None or lim <= size):
                    size = lim
        except QuantityError:
            pass
        return size

    def _empty_dir(self, pod: Obj, v: Obj) -> Path:
        ed = v.get("emptyDir") or {}
        d = self._dir(pod["metadata"]["uid"], "emptyDir", v["name"])
        d.mkdir(parents=True, exist_ok=True)
        medium = ed.get("medium") or ""
        if medium not in ("", "Memory"):
            raise ValueError(f"unsupported storage medium {medium!r}")
        if medium == "Memory" and self.memory_backed:
            if not os.path.ismount(d):
                mount_tmpfs(d, self._memory_size(pod, ed.get("sizeLimit")), "1777")
                return self._own_empty_dir(pod, d)
            return d
        if medium == "Memory":
            log.warning("emptyDir %s: medium Memory on disk (tmpfs not permitted here)",
                        v["name"])
        os.chmod(d, 0o777)
        return self._own_empty_dir(pod, d)

    def _own_empty_dir(self, pod: Obj, d: Path) -> Path:
        g = self._fs_group(pod)
        if g is not None:
            try:
                os.chown(d, -1, g)
                os.chmod(d, stat.S_IMODE(os.stat(d).st_mode) | 0o660 | 0o110 | stat.S_ISGID)
            except OSError as e:
                log.debug("chown %s: %s", d, e)
        return d

    @staticmethod
    def _host_path(path: str, type_: str) -> Path:
        if not _no_backsteps(path):
            raise ValueError(f"invalid HostPath `{path}`: must not contain '..'")
        check_host_path(path, type_)
        return Path(path)

    def _write_atomic_dir(self, pod: Obj, d: Path, kind: str, payload: Payload) -> None:
        """The volume's directory (a tmpfs for secrets and tokens) and its files."""
        d.mkdir(parents=True, exist_ok=True)
        if kind in MEMORY_BACKED and self.memory_backed and not os.path.ismount(d):
            mount_tmpfs(d, self._memory_size(pod), "0755")
        os.chmod(d, 0o755)
        write_atomic(d, payload, self._fs_group(pod))

    async def _claim(self, pod: Obj, claim: str) -> Path:
        ns = pod["metadata"].get("namespace") or "default"
        pvc = await self._get("persistentvolumeclaims", ns, claim)
        if pvc is None:
            raise MountError(f'persistentvolumeclaim "{claim}" not found')
        phase = (pvc.get("status") or {}).get("phase") or ""
        pv_name = (pvc.get("spec") or {}).get("volumeName") or ""
        if phase != "Bound" or not pv_name:
            raise MountError(f'PVC {ns}/{claim} has non-bound phase ("{phase}") or empty '
                             f'pvc.Spec.VolumeName ("{pv_name}")')
        pv = await self._get("persistentvolumes", None, pv_name)
        if pv is None:
            raise MountError(f'failed to fetch PV {pv_name} from API server: persistentvolumes '
                             f'"{pv_name}" not found')
        ref = (pv.get("spec") or {}).get("claimRef")
        if not ref:
            raise MountError(f"found PV object {pv_name} but it has a nil pv.Spec.ClaimRef "
                             f"indicating it is not yet bound to the claim")
        if ref.get("uid") and ref["uid"] != pvc["metadata"].get("uid"):
            raise MountError(f'found PV object "{pv_name}" but its pv.Spec.ClaimRef.UID '
                             f'("{ref["uid"]}") does not point to claim.UID '
                             f'("{pvc["metadata"].get("uid")}")')
        spec = pv.get("spec") or {}
        if spec.get("hostPath"):
            hp = spec["hostPath"]
            return await steps.run(self._host_path, hp.get("path") or "",
                                   hp.get("type") or "")
        if spec.get("local"):
            path = spec["local"].get("path") or ""
            if not os.path.exists(path):
                raise MountError(f"path {path} does not exist")
            return Path(path)
        kind = next((k for k in spec if isinstance(spec[k], dict) and k not in (
            "claimRef", "capacity", "nodeAffinity")), "unknown")
        raise MountError(f"persistentvolume {pv_name}: volume type {kind} is not supported "
                         f"on this node (only hostPath and local)")

    # -- contents ------------------------------------------------------------------------------

    async def _get(self, resource: str, namespace: str | None, name: str) -> Obj | None:
        """The object, or None if there is none. A read serves every pod that
        asks for the same object within ``fresh_for`` seconds, and pods that
        ask while it is under way wait for it: ten pods of a namespace
        starting at once make one request for its kube-root-ca.crt, and the
        refresh of every pod's volumes one per object (the kubelet's
        TTL-cache strategy for ConfigMaps and Secrets, with a short TTL)."""
        key = (resource, namespace or "", name)
        if key in self._immutable:
            return self._immutable[key]
        recent = self._recent.get(key)
        if recent is not None and time.monotonic() - recent[0] < self.fresh_for:
            return recent[1]
        reading = self._reading.get(key)
        if reading is not None:
            try:
                return await asyncio.shield(reading)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if not reading.cancelled() or (task is not None and task.cancelling()):
                    raise
                # The pod that was reading it was cancelled, not this one: read it here.
        fut: asyncio.Future[Obj | None] = asyncio.get_running_loop().create_future()
        self._reading[key] = fut
        try:
            obj = await self._read(resource, namespace, name)
        except asyncio.CancelledError:
            fut.cancel()
            raise
        except BaseException as e:
            fut.set_exception(e)
            fut.exception()  # retrieved: nobody else may be waiting
            raise
        else:
            fut.set_result(obj)
        finally:
            if self._reading.get(key) is fut:
                del self._reading[key]
        if obj is not None and obj.get("immutable") is True:
            self._immutable[key] = obj
        elif self.fresh_for > 0:
            if len(self._recent) > 4096:
                self._recent.clear()
            self._recent[key] = (time.monotonic(), obj)
        return obj

    async def _read(self, resource: str, namespace: str | None, name: str) -> Obj | None:
        try:
            obj: Obj = await self.client.resource("v1", resource).get(name, namespace=namespace)
        except ApiError as e:
            if e.code == 404:
                return None
            raise MountError(_api_message(e)) from e
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as e:
            raise MountError(f"couldn't get {resource} {namespace}/{name}: {e}") from e
        return obj

    async def _config_map(self, ns: str, name: str) -> Obj | None:
        cm = await self._get("configmaps", ns, name)
        if cm is None and name == ROOT_CA_CONFIGMAP and self.ca_file is not None:
            try:
                return {"data": {"ca.crt": self.ca_file.read_text()}}
            except OSError:
                return None
        return cm

    async def _payload(self, pod: Obj, v: Obj, kind: str, st: _PodVolumes) -> Payload:
        ns = pod["metadata"].get("namespace") or "default"
        src = v.get(kind) or {}
        mode = src.get("defaultMode")
        mode = DEFAULT_MODE if mode is None else int(mode)
        if kind == "configMap":
            name = src.get("name") or ""
            return _config_map_payload(name, await self._config_map(ns, name),
                                       src.get("items"), mode, bool(src.get("optional")))
        if kind == "secret":
            name = src.get("secretName") or ""
            return _secret_payload(name, await self._get("secrets", ns, name),
                                   src.get("items"), mode, bool(src.get("optional")))
        if kind == "downwardAPI":
            return self._downward_payload(pod, src.get("items"), mode)
        return await self._projected_payload(pod, v["name"], src, mode, st)

    def _downward_payload(self, pod: Obj, items: Any, mode: int) -> Payload:
        out: Payload = {}
        errors = []
        for item in items or []:
            path = os.path.normpath(item.get("path") or "")
            m = item.get("mode")
            m = mode if m is None else int(m)
            try:
                if item.get("fieldRef"):
                    data = metadata_field(pod, item["fieldRef"].get("fieldPath") or "")
                elif item.get("resourceFieldRef"):
                    data = resource_value(pod, None, item["resourceFieldRef"],
                                          self.node_allocatable)
                else:
                    data = ""
            except ConfigError as e:
                errors.append(str(e))
                continue
            out[path] = (data.encode(), m)
        if errors:
            raise MountError(_aggregate(errors))
        return out

    async def _projected_payload(self, pod: Obj, vol: str, src: Obj, mode: int,
                                 st: _PodVolumes) -> Payload:
        ns = pod["metadata"].get("namespace") or "default"
        out: Payload = {}
        errors: list[str] = []
        for i, s in enumerate(src.get("sources") or []):
            try:
                if s.get("configMap"):
                    c = s["configMap"]
                    name = c.get("name") or ""
                    out.update(_config_map_payload(name, await self._config_map(ns, name),
                                                   c.get("items"), mode,
                                                   bool(c.get("optional"))))
                elif s.get("secret"):
                    c = s["secret"]
                    name = c.get("name") or ""
                    out.update(_secret_payload(name, await self._get("secrets", ns, name),
                                               c.get("items"), mode, bool(c.get("optional"))))
                elif s.get("downwardAPI"):
                    out.update(self._downward_payload(pod, s["downwardAPI"].get("items"), mode))
                elif s.get("serviceAccountToken"):
                    t = s["serviceAccountToken"]
                    token = await self._token(pod, vol, i, t, st)
                    tmode = 0o600 if self._fs_group(pod) is not None else mode
                    out[os.path.normpath(t.get("path") or "token")] = (token.encode(), tmode)
                else:
                    kinds = [k for k in s if s[k] is not None]
                    log.warning("pod %s: projected source %s not supported; skipped",
                                pod["metadata"].get("name"), kinds)
            except MountError as e:
                errors.append(e.message)
        if errors:
            raise MountError(_aggregate(errors))
        return out

    async def _token(self, pod: Obj, vol: str, index: int, src: Obj, st: _PodVolumes) -> str:
        """A bound service account token from the TokenRequest API, cached
        until 80% of its lifetime (or a day) has passed."""
        now = self.clock()
        key = (vol, index)
        have = st.tokens.get(key)
        if have is not None and now < have.expires and \
                now < have.issued + 0.8 * (have.expires - have.issued) and \
                now < have.issued + TOKEN_MAX_AGE:
            return have.token
        meta, spec = pod["metadata"], pod.get("spec") or {}
        ns = meta.get("namespace") or "default"
        sa = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
        seconds = int(src.get("expirationSeconds") or 3600)
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "spec": {"audiences": [src["audience"]] if src.get("audience") else [],
                         "expirationSeconds": seconds,
                         "boundObjectRef": {"apiVersion": "v1", "kind": "Pod",
                                            "name": meta["name"], "uid": meta["uid"]}}}
        try:
            tr = await self.client.resource("v1", "serviceaccounts").create_subresource(
                sa, "token", body, namespace=ns)
        except ApiError as e:
            raise MountError(_api_message(e)) from e
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as e:
            raise MountError(f"failed to fetch token: {e}") from e
        status = tr.get("status") or {}
        token = status.get("token") or ""
        if not token:
            raise MountError("failed to fetch token: the server returned no token")
        lifetime = int((tr.get("spec") or {}).get("expirationSeconds") or seconds)
        expires = now + lifetime
        if status.get("expirationTimestamp"):
            try:
                expires = dt.datetime.fromisoformat(
                    status["expirationTimestamp"].replace("Z", "+00:00")).timestamp()
            except ValueError:
                pass
        st.tokens[key] = _Token(token, expires - lifetime, expires)
        return token


def _pod_memory_limit(pod: Obj) -> int | None:
    """The pod's memory limit when every container has one (the larger of
    the app containers' sum and the largest init container)."""
    spec = pod.get("spec") or {}
    pod_level = ((spec.get("resources") or {}).get("limits") or {}).get("memory")
    if pod_level is not None:
        return value(pod_level)

    def lim(c: Obj) -> int | None:
        q = ((c.get("resources") or {}).get("limits") or {}).get("memory")
        return value(q) if q is not None else None

    app = [lim(c) for c in spec.get("containers") or []]
    init = [lim(c) for c in spec.get("initContainers") or []]
    if not app or any(x is None for x in app + init):
        return None
    return max(sum(x for x in app if x), max((x for x in init if x), default=0))


def _items_payload(data: Mapping[str, bytes], items: Any, mode: int, optional: bool,
                   missing: Callable[[str], str]) -> Payload:
    out: Payload = {}
    if not items:
        for k, b in data.items():
            out[k] = (b, mode)
        return out
    for it in items:
        key = it.get("key") or ""
        if key not in data:
            if optional:
                continue
            raise MountError(missing(key))
        m = it.get("mode")
        out[it.get("path") or key] = (data[key], mode if m is None else int(m))
    return out


def _config_map_payload(name: str, cm: Obj | None, items: Any, mode: int,
                        optional: bool) -> Payload:
    if cm is None:
        if not optional:
            raise MountError(f'configmap "{name}" not found')
        cm = {}
    data: dict[str, bytes] = {k: str(v).encode() for k, v in (cm.get("data") or {}).items()}
    for k, v in (cm.get("binaryData") or {}).items():
        data[k] = base64.b64decode(v or "")
    return _items_payload(data, items, mode, optional,
                          lambda k: f"configmap references non-existent config key: {k}")


def _secret_payload(name: str, secret: Obj | None, items: Any, mode: int,
                    optional: bool) -> Payload:
    if secret is None:
        if not optional:
            raise MountError(f'secret "{name}" not found')
        secret = {}
    data = {k: base64.b64decode(v or "") for k, v in (secret.get("data") or {}).items()}
    return _items_payload(data, items, mode, optional,
                          lambda k: f"references non-existent secret key: {k}")


# -- container mounts ---------------------------------------------------------------------------

_PROPAGATION = {None: "rprivate", "None": "rprivate", "HostToContainer": "rslave",
                "Bidirectional": "rshared"}


def _env_map(env: list[str] | None) -> dict[str, str]:
    out = {}
    for item in env or []:
        k, _, v = item.partition("=")
        out[k] = v
    return out


def _expand_sub_path(expr: str, envmap: Mapping[str, str]) -> str:
    """subPathExpr: every $(VAR) must have a non-empty value."""
    missing: set[str] = set()

    def look(k: str) -> str:
        if not envmap.get(k):
            missing.add(k)
        return envmap.get(k, "")
    out = expand(expr, look)
    if missing:
        raise MountError(f"missing value for {', '.join(sorted(missing))}")
    return out


def container_mounts(pod: Obj, container: Obj, volume_paths: Mapping[str, Path], *,
                     env: list[str] | None = None) -> list[Obj]:
    """The OCI bind mounts for a container's volumeMounts (kubelet's makeMounts).

    subPath is joined under the volume (created as a directory if missing)
    and must stay inside it; subPathExpr expands $(VAR) from ``env`` (the
    container's "K=V" list). ConfigMap, secret, downward API and projected
    volumes, and claims mounted readOnly, are always read-only."""
    kinds = {v.get("name"): v for v in (pod.get("spec") or {}).get("volumes") or []}
    cname = container.get("name") or ""
    envmap = _env_map(env)
    out: list[Obj] = []
    for m in container.get("volumeMounts") or []:
        name = m.get("name") or ""
        vol = kinds.get(name)
        if vol is None or name not in volume_paths:
            raise MountError(f'cannot find volume "{name}" to mount into container "{cname}"')
        kind = _volume_kind(vol)
        host = Path(volume_paths[name])
        sub = m.get("subPath") or ""
        if m.get("subPathExpr"):
            sub = _expand_sub_path(m["subPathExpr"], envmap)
        if sub:
            if sub.startswith("/"):
                raise MountError(f"error SubPath `{sub}` must not be an absolute path")
            if ".." in sub.split("/"):
                raise MountError(f"unable to provision SubPath `{sub}`: must not contain '..'")
            host = _safe_subpath(host, sub, name, cname)
        dest = m.get("mountPath") or ""
        if not dest.startswith("/"):
            dest = "/" + dest
        ro = bool(m.get("readOnly")) or kind in ATOMIC or bool(
            kind == "persistentVolumeClaim" and (vol.get(kind) or {}).get("readOnly"))
        prop = _PROPAGATION.get(m.get("mountPropagation"))
        if prop is None:
            raise MountError(f'invalid MountPropagation mode: "{m.get("mountPropagation")}"')
        out.append({"destination": dest, "type": "bind", "source": str(host),
                    "options": ["rbind", prop, "ro" if ro else "rw"]})
    return out


def _safe_subpath(volume: Path, sub: str, vol_name: str, cname: str) -> Path:
    """volume/sub, resolved, inside the volume; a missing path becomes a
    directory with the volume's mode (created one level at a time, never
    through a link that leaves the volume)."""
    base = Path(os.path.realpath(volume))
    fail = MountError(f'failed to prepare subPath for volumeMount "{vol_name}" of container '
                      f'"{cname}"')

    def inside(p: str) -> bool:
        return p == str(base) or p.startswith(str(base).rstrip("/") + "/")

    target = volume / sub
    if not os.path.lexists(target):
        try:
            perm = stat.S_IMODE(os.stat(base).st_mode)
            cur = base
            for part in Path(sub).parts:
                if part in ("", "."):
                    continue
                cur = Path(os.path.realpath(cur / part))
                if not inside(str(cur)):
                    raise fail
                if not cur.exists():
                    cur.mkdir(mode=perm)
                    os.chmod(cur, perm)
        except OSError as e:
            log.warning("subPath %s of volume %s: %s", sub, vol_name, e)
            raise fail from e
    real = os.path.realpath(target)
    if not inside(real) or not os.path.exists(real):
        raise fail
    return Path(real)
