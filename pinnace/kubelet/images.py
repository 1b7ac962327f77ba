"""The node's image store: content-addressed, shared by the agent and `pinnace image`.

Layout under the root (DATA/agent/images, see `image_root`):

  index.json             images by id (the config digest): tags, repo digests,
                         manifests, layer diffIDs, size, last use. Written
                         whole to a temp file and renamed, under lock.
  lock                   flock'ed around every change of the index, so the
                         agent and the CLI can share one store.
  blobs/sha256/<hex>     manifests and configs, checked against their digest.
  layers/<diffid-hex>/   each layer unpacked once, in overlayfs form (whiteouts
                         as 0/0 character devices, opaque directories with
                         trusted.overlay.opaque=y), ready to be a lowerdir.
  tmp/<pid>.<random>/    downloads and half-unpacked layers; a layer only
                         appears under layers/ by rename once it is whole, and
                         leftovers of dead processes are removed at start.

Compressed layer blobs are not kept once unpacked (their digest is checked
while they stream in): the unpacked tree is what containers use, and keeping
both would double the disk an image takes.

Images come from a registry (`pull`: the OCI distribution API with token or
basic auth, manifest lists and platform choice) or from archives (`import_archive`:
`docker save` tarballs, oci-archives and OCI layout directories). Errors a
user should see in pod status are `ImageError`s worded as containerd words
them, so `kubectl describe pod` reads the same as on any cluster.
"""

from __future__ import annotations

import asyncio
import base64
import builtins
import contextlib
import errno
import fcntl
import fnmatch
import gzip
import hashlib
import io
import json
import logging
import os
import platform as _platform
import re
import shutil
import stat
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, BinaryIO, cast

import aiohttp

from pinnace.kubelet.podstatus import normalize_image

log = logging.getLogger("pinnace.kubelet.images")

Progress = Callable[[int, int, str], None]
Obj = dict[str, Any]

MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MT_DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
INDEX_TYPES = (MT_OCI_INDEX, MT_DOCKER_LIST)
MANIFEST_TYPES = (MT_OCI_MANIFEST, MT_DOCKER_MANIFEST)
ACCEPT = ", ".join((*MANIFEST_TYPES, *INDEX_TYPES))
MAX_MANIFEST = 4 << 20

_GOARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64", "armv7l": "arm",
           "armv6l": "arm", "i386": "386", "i686": "386", "ppc64le": "ppc64le", "s390x": "s390x",
           "riscv64": "riscv64", "loongarch64": "loong64"}


def host_platform() -> tuple[str, ...]:
    """This machine as registries name platforms: ("linux", GOARCH[, variant])."""
    machine = _platform.machine().lower()
    arch = _GOARCH.get(machine, machine)
    if machine.startswith("armv"):
        return ("linux", arch, machine[3:5].rstrip("l"))
    return ("linux", arch)


HOST_PLATFORM = host_platform()


def image_root(data_dir: Path) -> Path:
    """Where the images of a data dir live; the agent and `pinnace image` both use this."""
    return Path(data_dir) / "agent" / "images"


@dataclass
class Image:
    id: str                 # "sha256:<config digest>"
    repo_tags: list[str]    # normalized refs, e.g. "docker.io/library/busybox:latest"
    repo_digests: list[str]  # "repo@sha256:<manifest digest>"
    size: int               # bytes of the (compressed) layers, as the kubelet reports sizeBytes
    config: dict[str, Any]  # the image config's "config" part (Env, Entrypoint, Cmd, WorkingDir, User, ...)
    layers: list[Path]      # unpacked layer directories, bottom first (overlayfs lowerdirs)


class ImageError(Exception):
    """What a user sees in pod status. `reason` is the kubelet's waiting reason."""

    def __init__(self, message: str, reason: str = "ErrImagePull") -> None:
        super().__init__(message)
        self.reason = reason


# --- references ---------------------------------------------------------------------------------------

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REF_RE = re.compile(rf"^(?P<host>[a-zA-Z0-9.-]+(?::[0-9]+)?|\[[0-9a-fA-F:]+\](?::[0-9]+)?)/"
                     rf"(?P<repo>{_COMPONENT}(?:/{_COMPONENT})*)"
                     r"(?::(?P<tag>[\w][\w.-]{0,127}))?(?:@(?P<digest>sha256:[0-9a-f]{64}))?$")
_DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")


@dataclass(frozen=True)
class Reference:
    registry: str   # host[:port] as written, e.g. "localhost:5000", "docker.io"
    repository: str  # e.g. "library/busybox"
    tag: str | None
    digest: str | None

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}"

    def __str__(self) -> str:
        if self.digest:
            return f"{self.name}@{self.digest}"
        return f"{self.name}:{self.tag}"


def parse_reference(ref: str) -> Reference:
    """A normalized, validated reference; `ImageError(reason="InvalidImageName")` if it is none."""
    full = normalize_image(ref.strip()) if ref.strip() else ""
    m = _REF_RE.match(full)
    if not m:
        raise ImageError(f'couldn\'t parse image name "{ref}": invalid reference format', "InvalidImageName")
    digest = m["digest"]
    return Reference(m["host"], m["repo"], None if digest else (m["tag"] or "latest"), digest)


def _is_local(host: str) -> bool:
    return host.rpartition(":")[0].strip("[]") in ("localhost", "127.0.0.1", "::1") or host in (
        "localhost", "127.0.0.1", "[::1]")


# --- layer unpacking ------------------------------------------------------------------------------------

class _HashingReader(io.RawIOBase):
    """Passes reads through and hashes them, so a digest is checked in the same pass that uses the data."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw, self.sha, self.count = raw, hashlib.sha256(), 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.sha.update(data)
        self.count += len(data)
        return data

    def readinto(self, buf: Any) -> int:
        data = self.read(len(buf))
        buf[:len(data)] = data
        return len(data)

    def drain(self) -> str:
        while self.read(1 << 20):
            pass
        return "sha256:" + self.sha.hexdigest()


def _decompressed(raw: IO[bytes]) -> IO[bytes]:
    """The tar stream inside a layer blob: gzip, zstd or plain, told by the magic bytes (media types lie)."""
    buf = io.BufferedReader(raw, 1 << 16)  # type: ignore[arg-type,type-var]
    magic = buf.peek(4)[:4]
    if magic[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=buf, mode="rb")  # type: ignore[return-value]
    if magic == b"\x28\xb5\x2f\xfd":
        try:
            import zstandard
        except ImportError:
            raise ImageError("zstd-compressed layer, but the zstandard package is not installed") from None
        return zstandard.ZstdDecompressor().stream_reader(buf, read_across_frames=True)  # type: ignore
    return buf


def _clean(name: str) -> list[str]:
    """A tar member name as components inside the layer: `..` cannot climb above the root."""
    out: list[str] = []
    for part in name.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if out:
                out.pop()
            continue
        out.append(part)
    return out


class _Extractor:
    """Writes tar members under `root` the way overlayfs wants a layer.

    Nothing escapes the root: names are cleaned lexically (as containerd does),
    and symlinks met on the way to an entry are resolved inside the root, never
    followed out of it; the entry itself is never followed. Directory metadata
    is applied at the end, since adding entries changes a directory's mtime.
    """

    def __init__(self, root: Path) -> None:
        self.root = str(root)
        self.as_root = os.geteuid() == 0
        self.dirs: list[tuple[str, tarfile.TarInfo]] = []

    def resolve(self, parts: list[str], create: bool) -> str:
        """The real path of a directory given by components, symlinks resolved within the root."""
        done: list[str] = []
        pending = list(parts)
        links = 0
        while pending:
            part = pending.pop(0)
            if part in ("", "."):
                continue
            if part == "..":
                if done:
                    done.pop()
                continue
            path = os.path.join(self.root, *done, part)
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                if not create:
                    raise
                os.mkdir(path, 0o755)
                done.append(part)
                continue
            if stat.S_ISLNK(st.st_mode):
                links += 1
                if links > 255:
                    raise ImageError(f"too many levels of symbolic links under {'/'.join(parts)}")
                target = os.readlink(path)
                if target.startswith("/"):
                    done = []
                pending[:0] = target.split("/")
                continue
            if not stat.S_ISDIR(st.st_mode):
                raise ImageError(f"layer entry under /{'/'.join(parts)}: /{'/'.join([*done, part])} is not a directory")
            done.append(part)
        return os.path.join(self.root, *done)

    def add(self, m: tarfile.TarInfo, tar: tarfile.TarFile) -> None:
        parts = _clean(m.name)
        if not parts:
            if m.isdir():
                self.dirs.append((self.root, m))
            return
        parent, base = self.resolve(parts[:-1], create=True), parts[-1]
        if base.startswith(".wh."):
            self._whiteout(parent, base)
            return
        path = os.path.join(parent, base)
        if m.isdir():
            if not os.path.isdir(path) or os.path.islink(path):
                _remove(path)
                os.mkdir(path, 0o700)
            self.dirs.append((path, m))
            return
        _remove(path)
        if m.isreg():
            src = tar.extractfile(m)
            assert src is not None
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        elif m.issym():
            os.symlink(m.linkname, path)
        elif m.islnk():
            target_parts = _clean(m.linkname)
            if not target_parts:
                raise ImageError(f"layer entry /{'/'.join(parts)}: hard link to the root")
            target = os.path.join(self.resolve(target_parts[:-1], create=False), target_parts[-1])
            os.link(target, path, follow_symlinks=False)
            return  # a hard link shares the target's metadata
        elif m.ischr() or m.isblk():
            kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK
            if not self._mknod(path, kind | (m.mode & 0o7777), os.makedev(m.devmajor, m.devminor)):
                return
        elif m.isfifo():
            os.mkfifo(path, 0o600)
        else:
            log.debug("layer entry %s: type %r skipped", m.name, m.type)
            return
        self._meta(path, m)

    def _whiteout(self, parent: str, base: str) -> None:
        if base == ".wh..wh..opq":
            try:
                os.setxattr(parent, "trusted.overlay.opaque", b"y", follow_symlinks=False)
            except OSError as e:
                raise ImageError(f"cannot mark {parent} opaque for overlayfs: {e}") from None
            return
        if base.startswith(".wh..wh."):
            return  # aufs bookkeeping (.wh..wh.plnk and such), meaningless to overlayfs
        path = os.path.join(parent, base[4:])
        _remove(path)
        if not self._mknod(path, stat.S_IFCHR, os.makedev(0, 0)):
            raise ImageError(f"cannot create the overlayfs whiteout {path}: not running as root")

    def _mknod(self, path: str, mode: int, dev: int) -> bool:
        try:
            os.mknod(path, mode, dev)
            return True
        except PermissionError:
            log.debug("no permission to create device %s", path)
            return False

    def _meta(self, path: str, m: tarfile.TarInfo) -> None:
        is_link = m.issym()
        if self.as_root:
            try:
                os.chown(path, m.uid, m.gid, follow_symlinks=False)
            except OSError as e:
                log.debug("chown %s: %s", path, e)
        if not is_link:
            os.chmod(path, m.mode & 0o7777)
        for key, value in m.pax_headers.items():
            if key.startswith("SCHILY.xattr."):
                try:
                    os.setxattr(path, key[13:], value.encode("utf-8", "surrogateescape"), follow_symlinks=False)
                except OSError as e:
                    log.debug("xattr %s on %s: %s", key[13:], path, e)
        with contextlib.suppress(OSError):
            os.utime(path, (m.mtime, m.mtime), follow_symlinks=False)

    def finish(self) -> None:
        for path, m in reversed(self.dirs):
            self._meta(path, m)


def _remove(path: str) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def unpack_layer(blob: IO[bytes], dest: Path) -> str:
    """Extract one layer (gzip, zstd or plain tar) into the directory `dest` in overlayfs form.
    Returns its diffID, the sha256 of the uncompressed tar."""
    tar_stream = _HashingReader(_decompressed(blob))
    try:
        with tarfile.open(fileobj=tar_stream, mode="r|") as tar:  # type: ignore[call-overload]
            ex = _Extractor(dest)
            for member in tar:
                ex.add(member, tar)
            ex.finish()
        return tar_stream.drain()
    except ImageError:
        raise
    except Exception as e:  # tar, gzip, zstd and file system errors alike: the layer cannot be used
        raise ImageError(f"failed to extract layer: {e}") from None


# --- the store ---------------------------------------------------------------------------------------------

def _hex(digest: str) -> str:
    if not _DIGEST_RE.match(digest):
        raise ImageError(f"unsupported digest {digest!r}")
    return digest[7:]


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _repo_of(tag_or_digest_ref: str) -> str:
    name = tag_or_digest_ref.partition("@")[0]
    last = name.rpartition("/")[2]
    return name.rpartition(":")[0] if ":" in last else name


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class _Parsed:
    """A manifest resolved to what the store keeps of it."""
    manifest_digest: str   # the platform manifest
    manifest: bytes
    config_digest: str
    config: bytes
    layers: list[Obj]      # the manifest's layer descriptors
    diff_ids: list[str]
    top_digest: str        # what the tag points to (an index or the manifest), for repo digests
    pins: set[str] = field(default_factory=set)


class ImageStore:
    """Images under `root`. All methods but `pull` block: an agent calls them off its event loop when
    they may take long (`remove`, `collect_garbage`, `import_archive`, `disk_usage`)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.blobs = self.root / "blobs" / "sha256"
        self.layers = self.root / "layers"
        self.tmp = self.root / "tmp"
        for d in (self.blobs, self.layers, self.tmp):
            d.mkdir(parents=True, exist_ok=True)
        self._index_path = self.root / "index.json"
        self._cache: tuple[tuple[int, int, int], Obj] | None = None
        self._configs: dict[str, Obj] = {}
        self._pinned: dict[str, int] = {}  # digests and diffIDs a pull or import in this process is writing
        self._pulls: dict[tuple[str, str], asyncio.Future[Image]] = {}
        self._clean_tmp()

    # index

    def _load(self) -> Obj:
        try:
            st = os.stat(self._index_path)
        except FileNotFoundError:
            return {"version": 1, "images": {}}
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        if self._cache and self._cache[0] == key:
            return self._cache[1]
        idx = json.loads(self._index_path.read_bytes())
        self._cache = (key, idx)
        return idx

    def _save(self, idx: Obj) -> None:
        data = json.dumps(idx, indent=1, sort_keys=True).encode()
        fd, tmp = tempfile.mkstemp(prefix=".index.", dir=self.root)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self._index_path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        self._cache = None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[Obj]:
        """The index, freshly read under an exclusive lock; saved when the block ends without error."""
        with open(self.root / "lock", "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._cache = None
            idx = self._load()
            idx = json.loads(json.dumps(idx))  # never edit the cached copy
            yield idx
            self._save(idx)

    # reading

    def _resolve(self, idx: Obj, ref: str) -> str | None:
        images: Obj = idx["images"]
        ref = ref.strip()
        if ref in images:
            return ref
        try:
            r = parse_reference(ref)
        except ImageError:
            r = None
        if r is not None:
            want = f"{r.name}@{r.digest}" if r.digest else str(r)
            key = "repo_digests" if r.digest else "repo_tags"
            for iid, e in images.items():
                if want in e[key]:
                    return iid
        hexpart = ref[7:] if ref.startswith("sha256:") else ref
        if re.fullmatch(r"[0-9a-f]{4,64}", hexpart):
            found = [iid for iid in images if iid[7:].startswith(hexpart)]
            if len(found) == 1:
                return found[0]
        return None

    def _image(self, iid: str, e: Obj) -> Image:
        config = self._configs.get(iid)
        if config is None:
            try:
                config = json.loads((self.blobs / _hex(iid)).read_bytes()).get("config") or {}
            except (OSError, ValueError):
                config = {}
            self._configs[iid] = config
        return Image(id=iid, repo_tags=list(e["repo_tags"]), repo_digests=list(e["repo_digests"]),
                     size=int(e["size"]), config=config,
                     layers=[self.layers / _hex(d) for d in e["layers"]])

    def get(self, ref: str) -> Image | None:
        """The image a tag, digest reference or image id (or a unique id prefix) names, if all its
        layers are here. Marks it used now (for garbage collection)."""
        idx = self._load()
        iid = self._resolve(idx, ref)
        if iid is None:
            return None
        e = idx["images"][iid]
        if not all((self.layers / _hex(d)).is_dir() for d in e["layers"]):
            return None
        if time.time() - e.get("last_used", 0) > 60:
            with self._locked() as idx:
                if iid in idx["images"]:
                    idx["images"][iid]["last_used"] = time.time()
        return self._image(iid, e)

    def list(self) -> list[Image]:
        images = self._load()["images"]
        return sorted((self._image(iid, e) for iid, e in images.items()),
                      key=lambda i: (i.repo_tags[:1] or ["~"], i.id))

    # writing

    def _commit(self, p: _Parsed, tags: builtins.list[str], repos: builtins.list[str], size: int) -> Image:
        """Record an image whose blobs and layers are all in place; tags move to it from other images."""
        iid = p.config_digest
        now = time.time()
        with self._locked() as idx:
            images = idx["images"]
            for other_id, other in images.items():
                if other_id != iid:
                    other["repo_tags"] = [t for t in other["repo_tags"] if t not in tags]
            e = images.setdefault(iid, {"repo_tags": [], "repo_digests": [], "manifests": [], "created": now})
            e.update(layers=p.diff_ids, size=size, last_used=now)
            if p.manifest_digest not in e["manifests"]:
                e["manifests"].append(p.manifest_digest)
            for t in tags:
                if t not in e["repo_tags"]:
                    e["repo_tags"].append(t)
            for repo in repos:
                d = f"{repo}@{p.top_digest}"
                if d not in e["repo_digests"]:
                    e["repo_digests"].append(d)
        self._configs.pop(iid, None)
        return self._image(iid, images[iid])

    def remove(self, ref: str) -> bool:
        """A tag is untagged (the image goes when its last tag goes); a digest reference or an id
        removes the image. Blobs and layers no remaining image uses are deleted."""
        with self._locked() as idx:
            iid = self._resolve(idx, ref)
            if iid is None:
                return False
            e = idx["images"][iid]
            try:
                r: Reference | None = parse_reference(ref)
            except ImageError:
                r = None
            tag = str(r) if r and not r.digest and str(r) in e["repo_tags"] else None
            if tag is not None and len(e["repo_tags"]) > 1:
                e["repo_tags"].remove(tag)
                repo = _repo_of(tag)
                if not any(_repo_of(t) == repo for t in e["repo_tags"]):
                    e["repo_digests"] = [d for d in e["repo_digests"] if _repo_of(d) != repo]
            else:
                del idx["images"][iid]
                self._configs.pop(iid, None)
            keep = self._referenced(idx)
        self._sweep(keep)
        return True

    def _referenced(self, idx: Obj) -> tuple[set[str], set[str]]:
        blobs, layers = set(self._pinned), set(self._pinned)
        for iid, e in idx["images"].items():
            blobs.add(iid)
            blobs.update(e["manifests"])
            layers.update(e["layers"])
        return {_hex(b) for b in blobs if _DIGEST_RE.match(b)}, {_hex(d) for d in layers if _DIGEST_RE.match(d)}

    def _sweep(self, keep: tuple[set[str], set[str]]) -> None:
        """Delete unreferenced blobs and layers. A layer is first renamed out of layers/, so a crash
        halfway through deleting it cannot leave a partial tree that looks like a whole layer."""
        keep_blobs, keep_layers = keep
        for p in self.blobs.iterdir():
            if p.name not in keep_blobs and not p.name.startswith("."):
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
        trash: Path | None = None
        for p in self.layers.iterdir():
            if p.name in keep_layers or p.name.startswith("."):
                continue
            trash = trash or Path(tempfile.mkdtemp(prefix=f"{os.getpid()}.", dir=self.tmp))
            with contextlib.suppress(FileNotFoundError):
                p.rename(trash / p.name)
        if trash:
            shutil.rmtree(trash, ignore_errors=True)

    def _clean_tmp(self) -> None:
        for p in self.tmp.iterdir():
            pid = p.name.partition(".")[0]
            if not pid.isdigit() or not _pid_alive(int(pid)):
                shutil.rmtree(p, ignore_errors=True)

    @contextlib.contextmanager
    def _work(self, *pins: str) -> Iterator[Path]:
        """A private temp dir, and digests no sweep may delete while this block runs."""
        for p in pins:
            self._pinned[p] = self._pinned.get(p, 0) + 1
        work = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}.", dir=self.tmp))
        try:
            yield work
        finally:
            shutil.rmtree(work, ignore_errors=True)
            for p in pins:
                self._pinned[p] -= 1
                if not self._pinned[p]:
                    del self._pinned[p]

    def _put_blob(self, digest: str, data: bytes) -> None:
        if _digest(data) != digest:
            raise ImageError(f"blob {digest}: content does not match its digest")
        path = self.blobs / _hex(digest)
        if path.exists():
            return
        fd, tmp = tempfile.mkstemp(prefix=".", dir=self.blobs)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)

    def has_layer(self, diff_id: str) -> bool:
        return (self.layers / _hex(diff_id)).is_dir()

    def _unpack(self, blob: IO[bytes], diff_id: str, blob_digest: str | None, work: Path) -> None:
        """Unpack a layer into layers/<diffid>, checking the blob's digest (if given) and the diffID."""
        final = self.layers / _hex(diff_id)
        if final.is_dir():
            return
        dest = Path(tempfile.mkdtemp(prefix="layer.", dir=work))
        outer = _HashingReader(blob)
        got = unpack_layer(cast(IO[bytes], outer), dest)
        if blob_digest is not None and outer.drain() != blob_digest:
            raise ImageError(f"layer {blob_digest}: content does not match its digest")
        if got != diff_id:
            raise ImageError(f"layer {blob_digest or diff_id}: uncompressed digest {got} does not match "
                             f"the image config's diffID {diff_id}")
        try:
            dest.rename(final)
        except OSError as e:
            if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise  # else another pull unpacked the same layer first

    # garbage collection

    def _fs_usage(self) -> tuple[int, int]:
        """(used, capacity) bytes of the filesystem that holds the store."""
        st = os.statvfs(self.root)
        capacity = st.f_blocks * st.f_frsize
        return capacity - st.f_bavail * st.f_frsize, capacity

    def collect_garbage(self, in_use: set[str], high_percent: int = 85, low_percent: int = 80) -> builtins.list[str]:
        """As the kubelet's image GC: above `high_percent` use of the filesystem, remove images no
        container uses (`in_use`: ids or references), least recently used first, until use is below
        `low_percent`. Returns the removed ids."""
        used, capacity = self._fs_usage()
        if capacity <= 0 or used * 100 <= high_percent * capacity:
            return []
        images = self._load()["images"]
        normalized = set(in_use)
        for ref in in_use:
            with contextlib.suppress(ImageError):
                r = parse_reference(ref)
                normalized.add(f"{r.name}@{r.digest}" if r.digest else str(r))
        candidates = sorted(((e.get("last_used", 0), iid) for iid, e in images.items()
                             if not ({iid, *e["repo_tags"], *e["repo_digests"]} & normalized)))
        removed: builtins.list[str] = []
        for _, iid in candidates:
            if used * 100 < low_percent * capacity:
                break
            if self.remove(iid):
                removed.append(iid)
                log.info("image garbage collection removed %s", iid)
            used, capacity = self._fs_usage()
        return removed

    def disk_usage(self) -> int:
        """Bytes the store takes on disk (allocated blocks, hard links counted once)."""
        seen: set[tuple[int, int]] = set()
        total = 0
        for dirpath, dirnames, filenames in os.walk(self.root):
            for name in dirnames + filenames:
                with contextlib.suppress(OSError):
                    st = os.lstat(os.path.join(dirpath, name))
                    if (st.st_dev, st.st_ino) not in seen:
                        seen.add((st.st_dev, st.st_ino))
                        total += st.st_blocks * 512
        return total

    # import

    def import_archive(self, path: Path, progress: Progress | None = None) -> builtins.list[Image]:
        """Load the images of a `docker save` tarball, an oci-archive or an OCI layout directory.
        Names come from RepoTags (docker), io.containerd.image.name or a full reference in
        org.opencontainers.image.ref.name (OCI); an OCI entry named by a bare tag stays untagged."""
        path = Path(path)
        try:
            src: _Source = _DirSource(path) if path.is_dir() else _TarSource(path)
        except (OSError, tarfile.TarError) as e:
            raise ImageError(f"{path}: {e}") from None
        with src:
            try:
                if src.exists("index.json"):
                    loaded = self._import_oci(src, progress)
                elif src.exists("manifest.json"):
                    loaded = self._import_docker(src, progress)
                else:
                    raise ImageError(f"{path}: neither an OCI layout (index.json) nor a docker archive "
                                     "(manifest.json)")
            except (KeyError, TypeError, AttributeError, tarfile.TarError) as e:
                raise ImageError(f"{path}: malformed image archive ({type(e).__name__}: {e})") from None
        # One image may be named by several entries: report each once, with all its names.
        images = self._load()["images"]
        return [self._image(iid, images[iid]) for iid in dict.fromkeys(i.id for i in loaded) if iid in images]

    def _import_oci(self, src: _Source, progress: Progress | None) -> builtins.list[Image]:
        index = _json(src.read("index.json"), "index.json")
        out = []
        for desc in index.get("manifests") or []:
            ann = desc.get("annotations") or {}
            name = ann.get("io.containerd.image.name") or ann.get("org.opencontainers.image.ref.name") or ""
            tags = []
            if any(c in name for c in ":/@"):
                r = parse_reference(name)
                tags = [] if r.digest else [str(r)]
            top = desc["digest"]
            data = src.blob(top)
            p = _resolve_manifest(top, desc.get("mediaType"), data, HOST_PLATFORM,
                                  lambda d: src.blob(d), str(src.path))
            out.append(self._import_layers(src, p, tags, progress, compressed=True))
        return out

    def _import_docker(self, src: _Source, progress: Progress | None) -> builtins.list[Image]:
        entries = _json(src.read("manifest.json"), "manifest.json")
        out = []
        for entry in entries:
            config = src.read(entry["Config"])
            cfg = _json(config, entry["Config"])
            diff_ids = list((cfg.get("rootfs") or {}).get("diff_ids") or [])
            if len(diff_ids) != len(entry["Layers"]):
                raise ImageError(f"{src.path}: {len(entry['Layers'])} layers but {len(diff_ids)} diffIDs")
            layers = [{"mediaType": MT_DOCKER_LAYER, "digest": d, "size": src.size(name), "_file": name}
                      for d, name in zip(diff_ids, entry["Layers"])]
            config_digest = _digest(config)
            manifest = json.dumps({"schemaVersion": 2, "mediaType": MT_DOCKER_MANIFEST,
                                   "config": {"mediaType": MT_DOCKER_CONFIG, "digest": config_digest,
                                              "size": len(config)},
                                   "layers": [{k: v for k, v in x.items() if k != "_file"} for x in layers]},
                                  separators=(",", ":")).encode()
            md = _digest(manifest)
            p = _Parsed(md, manifest, config_digest, config, layers, diff_ids, md)
            tags = [str(parse_reference(t)) for t in entry.get("RepoTags") or []]
            out.append(self._import_layers(src, p, tags, progress, compressed=False))
        return out

    def _import_layers(self, src: _Source, p: _Parsed, tags: builtins.list[str], progress: Progress | None,
                       compressed: bool) -> Image:
        total = sum(int(x.get("size") or 0) for x in p.layers)
        done = 0
        with self._work(p.config_digest, p.manifest_digest, *p.diff_ids) as work:
            self._put_blob(p.manifest_digest, p.manifest)
            self._put_blob(p.config_digest, p.config)
            for desc, diff_id in zip(p.layers, p.diff_ids):
                short = diff_id[7:19]
                if self.has_layer(diff_id):
                    event = "exists"
                else:
                    _report(progress, done, total, f"{short} unpacking")
                    name = desc.get("_file") or _blob_name(desc["digest"])
                    with src.open(name) as f:
                        self._unpack(f, diff_id, desc["digest"] if compressed else None, work)
                    event = "done"
                done += int(desc.get("size") or 0)
                _report(progress, done, total, f"{short} {event}")
            return self._commit(p, tags, sorted({_repo_of(t) for t in tags}), total)

    # pull

    async def pull(self, ref: str, *, auth: dict[str, str] | None = None, insecure: AbstractSet[str] = frozenset(),
                   platform: tuple[str, ...] = HOST_PLATFORM, progress: Progress | None = None) -> Image:
        """Fetch an image from its registry (OCI distribution API v2) and unpack its layers.

        `auth` is one dockerconfigjson entry ({"username", "password"} or {"auth": base64}); see
        `credentials_for`. Registries are reached over https, or plain http when their host:port
        is in `insecure` or is localhost (as containerd does). A pull already running for the
        same reference is joined rather than repeated."""
        r = parse_reference(ref)
        if r.digest:
            have = self.get(str(r))
            if have is not None:
                return have
        key = (str(r), "/".join(platform))
        running = self._pulls.get(key)
        if running is not None:
            return await asyncio.shield(running)
        fut: asyncio.Future[Image] = asyncio.get_running_loop().create_future()
        self._pulls[key] = fut
        try:
            image = await self._pull(r, auth, insecure, platform, progress)
            fut.set_result(image)
            return image
        except asyncio.CancelledError:
            fut.cancel()
            raise
        except BaseException as e:
            prefix = f'failed to pull and unpack image "{r}"'
            err: BaseException = e
            if isinstance(e, ImageError) and not str(e).startswith(prefix):
                err = ImageError(f"{prefix}: {e}", e.reason)
            elif isinstance(e, (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError, KeyError)):
                err = ImageError(f"{prefix}: {_describe(e)}")
            fut.set_exception(err)
            fut.exception()  # joined pulls re-raise it; no "never retrieved" warning
            if err is e:
                raise
            raise err from e
        finally:
            del self._pulls[key]

    async def _pull(self, r: Reference, auth: dict[str, str] | None, insecure: AbstractSet[str],
                    platform: tuple[str, ...], progress: Progress | None) -> Image:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=120)
        async with aiohttp.ClientSession(timeout=timeout, trust_env=True) as session:
            reg = _Registry(session, r, auth, r.registry in insecure or _is_local(r.registry))
            top_data, top_type = await reg.manifest(r.digest or r.tag or "latest")
            top = _digest(top_data)
            if r.digest and top != r.digest:
                raise ImageError(f'failed to pull and unpack image "{r}": manifest content does not match '
                                 f"its digest")
            fetched: dict[str, bytes] = {}

            async def fetch_manifest(d: str) -> None:
                fetched[d] = (await reg.manifest(d))[0]

            # The index names the platform manifest; fetch it (and the config) before deciding.
            p = None
            while p is None:
                try:
                    p = _resolve_manifest(top, top_type, top_data, platform, lambda d: fetched[d], str(r))
                except _NeedBlob as need:
                    if need.digest in fetched:
                        raise
                    if need.manifest:
                        await fetch_manifest(need.digest)
                    else:
                        fetched[need.digest] = await reg.blob_bytes(need.digest)
            return await self._pull_layers(reg, r, p, progress)

    async def _pull_layers(self, reg: _Registry, r: Reference, p: _Parsed, progress: Progress | None) -> Image:
        size = sum(int(x.get("size") or 0) for x in p.layers)
        missing = [(x, d) for x, d in zip(p.layers, p.diff_ids) if not self.has_layer(d)]
        total = sum(int(x.get("size") or 0) for x, _ in missing)
        done = 0
        limit = asyncio.Semaphore(3)

        def tick(n: int, what: str) -> None:
            nonlocal done
            done += n
            _report(progress, done, total, what)

        with self._work(p.config_digest, p.manifest_digest, *p.diff_ids) as work:
            self._put_blob(p.manifest_digest, p.manifest)
            self._put_blob(p.config_digest, p.config)
            for _x, d in zip(p.layers, p.diff_ids):
                if self.has_layer(d):
                    tick(0, f"{d[7:19]} exists")

            async def one(desc: Obj, diff_id: str) -> None:
                async with limit:
                    short = diff_id[7:19]
                    blob = work / _hex(desc["digest"])
                    await reg.download(desc["digest"], blob, lambda n: tick(n, f"{short} downloading"))
                    tick(0, f"{short} unpacking")
                    with open(blob, "rb") as f:
                        await asyncio.to_thread(self._unpack, f, diff_id, desc["digest"], work)
                    blob.unlink()
                    tick(0, f"{short} done")

            tasks = [asyncio.ensure_future(one(x, d)) for x, d in missing]
            try:
                await asyncio.gather(*tasks)
            except BaseException:
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                raise
            return self._commit(p, [] if r.digest else [str(r)], [r.name], size)


def _report(progress: Progress | None, done: int, total: int, what: str) -> None:
    if progress is not None:
        try:
            progress(done, total, what)
        except Exception:  # a broken progress display must not break a pull
            log.debug("progress callback failed", exc_info=True)


def _describe(e: BaseException) -> str:
    if isinstance(e, asyncio.TimeoutError):
        return "i/o timeout"
    if isinstance(e, aiohttp.ClientConnectorError):
        return f"dial tcp {e.host}:{e.port}: connect: {e.os_error.strerror or e.os_error}"
    return str(e) or type(e).__name__


def _json(data: bytes, what: str) -> Any:
    try:
        return json.loads(data)
    except ValueError as e:
        raise ImageError(f"{what}: not valid JSON: {e}") from None


def _blob_name(digest: str) -> str:
    return f"blobs/sha256/{_hex(digest)}"


class _NeedBlob(Exception):
    def __init__(self, digest: str, manifest: bool) -> None:
        super().__init__(digest)
        self.digest, self.manifest = digest, manifest


def _media_type(data: Obj, given: str | None) -> str:
    mt = (given or "").partition(";")[0].strip()
    if mt in (*INDEX_TYPES, *MANIFEST_TYPES):
        return mt
    if data.get("mediaType"):
        return str(data["mediaType"])
    if "manifests" in data:
        return MT_OCI_INDEX
    if "layers" in data:
        return MT_OCI_MANIFEST
    return mt or "unknown"


def _resolve_manifest(top: str, top_type: str | None, top_data: bytes, platform: tuple[str, ...],
                      get: Callable[[str], bytes], where: str) -> _Parsed:
    """From what a tag points to (index or manifest) to the platform's manifest, config and layers.
    `get(digest)` returns a blob's bytes or raises KeyError (or _NeedBlob), which the caller turns into
    a fetch and a retry, so registries and archives share this logic."""
    def blob(d: str, manifest: bool) -> bytes:
        try:
            data = get(d)
        except KeyError:
            raise _NeedBlob(d, manifest) from None
        if _digest(data) != d:
            raise ImageError(f"{where}: blob {d}: content does not match its digest")
        return data

    data, digest, mt = top_data, top, top_type
    for _ in range(3):  # an index may point at an index; not deeper
        doc = _json(data, f"{where}: manifest {digest}")
        kind = _media_type(doc, mt)
        if kind in INDEX_TYPES:
            desc = choose_platform(doc.get("manifests") or [], platform)
            if desc is None:
                raise ImageError(f"{where}: no match for platform {'/'.join(platform)} in manifest {digest}: "
                                 "not found")
            digest, mt = desc["digest"], desc.get("mediaType")
            data = blob(digest, True)
            continue
        if kind not in MANIFEST_TYPES:
            raise ImageError(f"{where}: unsupported manifest media type {kind!r}")
        config_desc = doc.get("config") or {}
        if config_desc.get("mediaType") not in (MT_OCI_CONFIG, MT_DOCKER_CONFIG, None):
            raise ImageError(f"{where}: not a container image (config media type {config_desc.get('mediaType')})")
        config = blob(config_desc["digest"], False)
        cfg = _json(config, f"{where}: config")
        layers = list(doc.get("layers") or [])
        diff_ids = list((cfg.get("rootfs") or {}).get("diff_ids") or [])
        if len(diff_ids) != len(layers):
            raise ImageError(f"{where}: manifest has {len(layers)} layers but the config {len(diff_ids)} diffIDs")
        for d in diff_ids:
            _hex(d)
        return _Parsed(digest, data, config_desc["digest"], config, layers, diff_ids, top)
    raise ImageError(f"{where}: manifest index nested too deep")


def choose_platform(manifests: list[Obj], platform: tuple[str, ...]) -> Obj | None:
    """The index entry for `platform` (os, architecture[, variant]); arm64 without a variant is v8.
    Entries without platform (attestations have unknown/unknown) never match unless alone."""
    want_os, want_arch = platform[0], platform[1]
    want_variant = platform[2] if len(platform) > 2 else ""
    best, best_score = None, -1
    for m in manifests:
        p = m.get("platform")
        if p is None:
            if len(manifests) == 1:
                return m
            continue
        if p.get("os") != want_os or p.get("architecture") != want_arch:
            continue
        variant = p.get("variant") or ""
        if want_arch == "arm64":
            variant, want_v = variant or "v8", want_variant or "v8"
        else:
            want_v = want_variant
        if not want_v:
            score = 2 if not variant else 1
        elif variant == want_v:
            score = 2
        elif not variant:
            score = 1
        elif want_arch == "arm" and variant < want_v:
            score = 0  # v7 runs v6 and v5 images
        else:
            continue
        if score > best_score:
            best, best_score = m, score
    return best


# --- archives ------------------------------------------------------------------------------------------------

class _Source:
    """Files of an archive or layout, by cleaned name."""
    path: Path

    def __enter__(self) -> _Source:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def exists(self, name: str) -> bool:
        raise NotImplementedError

    def open(self, name: str) -> IO[bytes]:
        raise NotImplementedError

    def size(self, name: str) -> int:
        raise NotImplementedError

    def read(self, name: str) -> bytes:
        if not self.exists(name):
            raise ImageError(f"{self.path}: {name} is missing")
        with self.open(name) as f:
            return f.read()

    def blob(self, digest: str) -> bytes:
        name = _blob_name(digest)
        if not self.exists(name):
            raise ImageError(f"{self.path}: blob {digest} is missing")
        return self.read(name)


class _TarSource(_Source):
    def __init__(self, path: Path) -> None:
        self.path = path
        self.tar = tarfile.open(path, "r:*")
        self.members = {"/".join(_clean(m.name)): m for m in self.tar.getmembers()}

    def __exit__(self, *exc: object) -> None:
        self.tar.close()

    def exists(self, name: str) -> bool:
        return "/".join(_clean(name)) in self.members

    def open(self, name: str) -> IO[bytes]:
        f = self.tar.extractfile(self.members["/".join(_clean(name))])
        if f is None:
            raise ImageError(f"{self.path}: {name} is not a file")
        return f

    def size(self, name: str) -> int:
        with self.open(name) as f:
            return f.seek(0, io.SEEK_END)


class _DirSource(_Source):
    def __init__(self, path: Path) -> None:
        self.path = path

    def _file(self, name: str) -> Path:
        p = (self.path / "/".join(_clean(name))).resolve()
        if not p.is_relative_to(self.path.resolve()):
            raise ImageError(f"{self.path}: {name} points outside the layout")
        return p

    def exists(self, name: str) -> bool:
        return self._file(name).is_file()

    def open(self, name: str) -> BinaryIO:
        return open(self._file(name), "rb")

    def size(self, name: str) -> int:
        return self._file(name).stat().st_size


# --- registry client ---------------------------------------------------------------------------------------

_CHALLENGE_RE = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))')


def _basic(auth: dict[str, str] | None) -> str | None:
    """The Basic credentials of a dockerconfigjson entry, base64 encoded."""
    if not auth:
        return None
    if auth.get("username") or auth.get("password"):
        return base64.b64encode(f"{auth.get('username', '')}:{auth.get('password', '')}".encode()).decode()
    if auth.get("auth"):
        return str(auth["auth"]).strip()
    return None


# Docker Hub's images are named docker.io/..., but its registry API answers
# elsewhere (as containerd and every other client know); its credentials
# are filed under the old index name.
DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
DOCKER_HUB_ALIASES = ("docker.io", "index.docker.io", "registry-1.docker.io")


def _api_host(registry: str) -> str:
    return DOCKER_HUB_API if registry == DOCKER_HUB else registry


class _Registry:
    """One repository on one registry, for the span of a pull: scheme choice, auth, errors."""

    def __init__(self, session: aiohttp.ClientSession, r: Reference, auth: dict[str, str] | None,
                 plain_ok: bool) -> None:
        self.session, self.ref, self.basic = session, r, _basic(auth)
        self.plain_ok = plain_ok
        self.base: str | None = None
        self.authz: str | None = None

    async def _request(self, path: str, accept: str | None = None) -> aiohttp.ClientResponse:
        headers = {"Accept": accept} if accept else {}
        if self.base is None:
            try:
                resp = await self._send(f"https://{_api_host(self.ref.registry)}{path}", headers)
                self.base = f"https://{_api_host(self.ref.registry)}"
                return resp
            except (aiohttp.ClientConnectorError, aiohttp.ClientOSError, aiohttp.ServerDisconnectedError,
                    aiohttp.ClientSSLError):
                if not self.plain_ok:
                    raise
                log.debug("%s: https failed, trying http", self.ref.registry)
                self.base = f"http://{self.ref.registry}"
        return await self._send(self.base + path, headers)

    async def _send(self, url: str, headers: dict[str, str]) -> aiohttp.ClientResponse:
        ssl = not self.plain_ok  # insecure registries: TLS without verification, or plain http
        for attempt in (0, 1):
            h = dict(headers)
            if self.authz:
                h["Authorization"] = self.authz
            resp = await self.session.get(url, headers=h, ssl=ssl)
            if resp.status != 401 or attempt:
                return resp
            challenge = resp.headers.get("WWW-Authenticate", "")
            new = await self._authorize(challenge, ssl)
            if new is None or new == self.authz:
                return resp
            resp.release()
            self.authz = new
        raise AssertionError("unreachable")

    async def _authorize(self, challenge: str, ssl: bool) -> str | None:
        scheme, _, rest = challenge.strip().partition(" ")
        params = {m[1].lower(): m[2] if m[2] is not None else m[3] for m in _CHALLENGE_RE.finditer(rest)}
        if scheme.lower() == "basic":
            return f"Basic {self.basic}" if self.basic else None
        if scheme.lower() != "bearer" or not params.get("realm"):
            return None
        query = {"scope": params.get("scope") or f"repository:{self.ref.repository}:pull"}
        if params.get("service"):
            query["service"] = params["service"]
        headers = {"Authorization": f"Basic {self.basic}"} if self.basic else {}
        async with self.session.get(params["realm"], params=query, headers=headers, ssl=ssl) as resp:
            if resp.status != 200:
                msg = await _error_text(resp)
                raise self._denied(f"failed to fetch {'oauth' if self.basic else 'anonymous'} token: "
                                   f"{resp.status} {resp.reason}{': ' + msg if msg else ''}")
            body = await resp.json(content_type=None)
        token = body.get("token") or body.get("access_token")
        return f"Bearer {token}" if token else None

    def _denied(self, msg: str) -> ImageError:
        return ImageError(f'failed to pull and unpack image "{self.ref}": failed to resolve reference "{self.ref}": '
                          f"pull access denied, repository does not exist or may require authorization: {msg}")

    async def manifest(self, ref: str) -> tuple[bytes, str | None]:
        """A manifest's bytes and its media type, by tag or digest."""
        path = f"/v2/{self.ref.repository}/manifests/{ref}"
        async with await self._request(path, ACCEPT) as resp:
            if resp.status == 200:
                data = await resp.content.read(MAX_MANIFEST + 1)
                if len(data) > MAX_MANIFEST:
                    raise ImageError(f'failed to pull and unpack image "{self.ref}": manifest {ref} too large')
                return data, resp.headers.get("Content-Type")
            msg = await _error_text(resp)
            if resp.status == 404:
                raise ImageError(f'failed to pull and unpack image "{self.ref}": failed to resolve reference '
                                 f'"{self.ref}": {self.ref}: not found{": " + msg if msg else ""}')
            if resp.status in (401, 403):
                raise self._denied(f"server message: {msg or f'{resp.status} {resp.reason}'}")
            raise ImageError(f'failed to pull and unpack image "{self.ref}": failed to resolve reference '
                             f'"{self.ref}": unexpected status from GET request to {resp.url}: '
                             f"{resp.status} {resp.reason}{': ' + msg if msg else ''}")

    async def _blob_response(self, digest: str) -> aiohttp.ClientResponse:
        resp = await self._request(f"/v2/{self.ref.repository}/blobs/{digest}")
        if resp.status != 200:
            msg = await _error_text(resp)
            resp.release()
            raise ImageError(f'failed to pull and unpack image "{self.ref}": failed to fetch blob {digest}: '
                             f"{resp.status} {resp.reason}{': ' + msg if msg else ''}")
        return resp

    async def blob_bytes(self, digest: str) -> bytes:
        async with await self._blob_response(digest) as resp:
            data = await resp.content.read(MAX_MANIFEST + 1)
        if len(data) > MAX_MANIFEST:
            raise ImageError(f'failed to pull and unpack image "{self.ref}": config {digest} too large')
        return data

    async def download(self, digest: str, dest: Path, tick: Callable[[int], None]) -> None:
        """Stream a blob to `dest`, checking its digest; `tick(n)` after each chunk."""
        sha = hashlib.sha256()
        async with await self._blob_response(digest) as resp:
            with open(dest, "wb") as f:
                async for chunk in resp.content.iter_chunked(1 << 18):
                    sha.update(chunk)
                    f.write(chunk)
                    tick(len(chunk))
        if "sha256:" + sha.hexdigest() != digest:
            raise ImageError(f'failed to pull and unpack image "{self.ref}": blob {digest}: content does not '
                             "match its digest")


async def _error_text(resp: aiohttp.ClientResponse) -> str:
    """The registry's own words for an error: "code: message" from its JSON errors, if any."""
    try:
        body = await resp.content.read(64 << 10)
        errors = json.loads(body).get("errors") or []
    except (ValueError, AttributeError, aiohttp.ClientError):
        return ""
    parts = []
    for e in errors[:3]:
        if isinstance(e, dict):
            text = str(e.get("message") or e.get("code") or "")
            code = str(e.get("code") or "").lower()
            parts.append(f"{code}: {text}" if code and code.replace("_", " ") != text.lower() else text)
    return "; ".join(p for p in parts if p)


# --- credentials -------------------------------------------------------------------------------------------

def credentials_for(ref: str, docker_configs: list[dict[str, Any]]) -> dict[str, str] | None:
    """The entry of parsed .dockerconfigjson documents ({"auths": {key: entry}}, or the older
    .dockercfg map itself) for the registry of `ref`, as `pull(auth=...)` takes it.

    Keys may carry a scheme, a path prefix ("host/team" matches only that part of the registry)
    and a leading "*." wildcard, as the kubelet's keyring allows; the most specific key wins.
    """
    try:
        r = parse_reference(ref)
    except ImageError:
        return None
    host, repo = r.registry.lower(), r.repository
    best: tuple[int, dict[str, str]] | None = None
    for doc in docker_configs:
        if not isinstance(doc, dict):
            continue
        auths: dict[str, Any] = doc["auths"] if isinstance(doc.get("auths"), dict) else doc
        for key, entry in auths.items():
            if not isinstance(entry, dict):
                continue
            k = re.sub(r"^[a-z]+://", "", str(key).strip().lower()).rstrip("/")
            k_host, _, k_path = k.partition("/")
            if k_path in ("v1", "v2"):
                k_path = ""
            if host == DOCKER_HUB and k_host in DOCKER_HUB_ALIASES:
                k_host = host
            if not (k_host == host or (k_host.startswith("*.") and fnmatch.fnmatchcase(host, k_host))):
                continue
            if k_path and not (repo == k_path or repo.startswith(k_path + "/")):
                continue
            score = len(k_path) * 2 + (0 if k_host.startswith("*.") else 1)
            if best is None or score > best[0]:
                best = (score, _entry(entry))
    return best[1] if best else None


def _entry(entry: dict[str, Any]) -> dict[str, str]:
    out = {k: str(v) for k, v in entry.items() if isinstance(v, (str, int))}
    if not out.get("username") and out.get("auth"):
        try:
            user, _, password = base64.b64decode(out["auth"]).decode().partition(":")
            out.update(username=user, password=password)
        except (ValueError, UnicodeDecodeError):
            pass
    return out


__all__ = ["HOST_PLATFORM", "Image", "ImageError", "ImageStore", "Reference", "choose_platform",
           "credentials_for", "host_platform", "image_root", "parse_reference", "unpack_layer"]
