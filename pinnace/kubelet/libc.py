"""The C library calls the agent needs and Python's os module lacks (mount,
umount2, unshare, sethostname, setns before 3.12, prctl), through one
handle, with their flags by name and their failures as OSError.

One handle for the process: each ctypes.CDLL makes classes of its own for
its functions, and a pod's start and teardown mount and unmount several
times over.
"""

from __future__ import annotations

import ctypes
import functools
import os
from pathlib import Path

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_SHARED = 1 << 20
MNT_DETACH = 0x2
PR_SET_CHILD_SUBREAPER = 36
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWNET = 0x40000000

Arg = str | bytes | Path | None


@functools.cache
def handle() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def check(rc: int, what: str, path: object = None) -> None:
    """Raise the call's errno as OSError ("what: strerror", path) if rc != 0."""
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}", str(path) if path is not None else None)


def _b(v: Arg) -> bytes | None:
    return None if v is None else v if isinstance(v, bytes) else os.fsencode(v)


def mount(source: Arg, target: Arg, fstype: Arg = None, flags: int = 0, data: Arg = None,
          what: str = "mount") -> None:
    check(handle().mount(_b(source), _b(target), _b(fstype), flags, _b(data)), what, target)


def umount(target: Arg, flags: int = 0) -> int:
    """0, or the errno of the failed umount2: EINVAL says nothing was
    mounted there, which callers take as done."""
    if handle().umount2(_b(target), flags) == 0:
        return 0
    return ctypes.get_errno()


def setns(fd: int, nstype: int, path: object = None) -> None:
    """setns(2) for the calling thread (os.setns from Python 3.12 on)."""
    if hasattr(os, "setns"):
        os.setns(fd, nstype)
        return
    check(handle().setns(fd, nstype), "setns", path)
