"""Linux namespaces kept alive by a bind mount instead of a process, as
`ip netns add` keeps a network namespace and CRI-O's pinns keeps a pod's.

A namespace is made by a short-lived thread of our own that unshares it and
bind-mounts /proc/thread-self/ns/<kind> onto a file; the thread ends, the
mount keeps the namespace. Containers join it by path. No fork: a forked
child of a threaded asyncio process is a hazard, and a thread is cheaper.
Mounts live under /run, so a reboot takes them away as it takes the
processes.
"""

from __future__ import annotations

import errno
import fcntl
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from . import libc

T = TypeVar("T")

CLONE = {"ipc": libc.CLONE_NEWIPC, "uts": libc.CLONE_NEWUTS, "net": libc.CLONE_NEWNET}
_NS_GET_NSTYPE = 0xB703
_dirs_lock = threading.Lock()


def on_fresh_thread(fn: Callable[[], T]) -> T:
    """Run fn on a new OS thread that ends with it: a namespace it enters
    dies with the thread."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:  # handed to the caller
            box["error"] = e

    t = threading.Thread(target=run, name="pinnace-ns", daemon=True)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


def share_dir(d: Path, memory: bool = False) -> None:
    """Make d a shared mount point of its own, as `ip netns add` does, so the
    namespace mounts in it (and their removal) propagate to mount namespaces
    copied later. Checked on every call, not remembered: `agent --reset`
    (or a test's end) may unmount an empty dir under a running agent.

    ``memory`` (for a directory only pinnace uses): an empty d that is not a
    mount point yet gets a tmpfs of its own rather than a bind mount of
    itself. Pins are files made and removed with every pod; where /run is
    on a disk (ext4 here), creating one took ~0.3 ms of the kernel's time,
    searching the inode bitmap past the pins just deleted; on tmpfs a few
    microseconds. The pins are gone after a reboot either way."""
    with _dirs_lock:
        d.mkdir(parents=True, exist_ok=True)
        try:
            libc.mount("none", d, None, libc.MS_SHARED | libc.MS_REC)
        except OSError:  # EINVAL unless d is a mount point already
            with os.scandir(d) as entries:
                empty = next(entries, None) is None
            if memory and empty:
                libc.mount("pinnace-pins", d, "tmpfs",
                           libc.MS_NOSUID | libc.MS_NODEV | libc.MS_NOEXEC, "mode=0755,size=1m",
                           what="mount namespace dir")
            else:
                libc.mount(d, d, "none", libc.MS_BIND | libc.MS_REC, what="bind namespace dir")
            libc.mount("none", d, None, libc.MS_SHARED | libc.MS_REC, what="share namespace dir")


def pin(paths: dict[str, Path], hostname: str | None = None,
        inside: Callable[[], T] | None = None, memory: bool = False) -> T | None:
    """New namespaces of the given kinds ("ipc", "uts", "net"), each
    bind-mounted at its path; ``hostname`` is set in a new UTS namespace.
    ``inside`` runs in the new namespaces, on the thread that made them
    (a socket it opens belongs to them): its result is returned.
    ``memory``: the paths' directories are pinnace's own (see share_dir)."""
    if not paths:
        return None
    for d in {p.parent for p in paths.values()}:
        share_dir(d, memory)
    for p in paths.values():
        os.close(os.open(p, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0))
    flags = 0
    for kind in paths:
        flags |= CLONE[kind]

    def unshare_and_bind() -> T | None:
        lib = libc.handle()
        libc.check(lib.unshare(flags), "unshare", ",".join(paths))
        if hostname is not None and "uts" in paths:
            name = hostname.encode()
            libc.check(lib.sethostname(name, len(name)), "sethostname", hostname)
        for kind, p in paths.items():
            libc.mount(f"/proc/thread-self/ns/{kind}", p, "none", libc.MS_BIND,
                       what=f"bind {kind} namespace")
        return inside() if inside is not None else None

    try:
        return on_fresh_thread(unshare_and_bind)
    except BaseException:
        for p in paths.values():
            unpin(p)
        raise


def is_pinned(path: str | Path, kind: str) -> bool:
    """True if path is a bind-mounted namespace of that kind."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return fcntl.ioctl(fd, _NS_GET_NSTYPE) == CLONE[kind]
    except OSError:
        return False
    finally:
        os.close(fd)


def unpin(path: Path) -> None:
    """Unmount and remove a namespace file; no error if it is gone."""
    err = libc.umount(path, libc.MNT_DETACH)
    if err not in (0, errno.EINVAL, errno.ENOENT):
        raise OSError(err, f"umount: {os.strerror(err)}", str(path))
    path.unlink(missing_ok=True)
