"""The agent's mount and umount2 calls: what they do, and how a failure reads."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from pinnace.kubelet import libc
from pinnace.kubelet.volumes import mount_tmpfs, mounts_under, unmount

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to mount")


def test_a_tmpfs_is_mounted_with_its_flags_and_unmounted(tmp_path: Path) -> None:
    target = tmp_path / "t"
    target.mkdir()
    try:
        libc.mount("tmpfs", target, "tmpfs", libc.MS_NOSUID | libc.MS_NODEV, "size=1m")
        assert mounts_under(tmp_path) == [target]
        flags = os.statvfs(target).f_flag
        assert flags & os.ST_NOSUID and flags & os.ST_NODEV and not flags & os.ST_RDONLY
    finally:
        assert libc.umount(target) == 0
    assert mounts_under(tmp_path) == []
    # Nothing mounted there any more: the kernel says EINVAL, which callers take as done.
    assert libc.umount(target) == errno.EINVAL


def test_a_failed_mount_names_the_call_the_reason_and_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    with pytest.raises(OSError) as e:
        libc.mount("tmpfs", missing, "tmpfs", what="mount scratch")
    assert e.value.errno == errno.ENOENT
    assert e.value.strerror == f"mount scratch: {os.strerror(errno.ENOENT)}"
    assert e.value.filename == str(missing)


def test_volumes_tmpfs_and_its_unmount_leave_nothing(tmp_path: Path) -> None:
    d = tmp_path / "vol"
    d.mkdir()
    try:
        mount_tmpfs(d, 1 << 20, "0755")
        assert oct(d.stat().st_mode & 0o7777) == "0o755"
        (d / "f").write_text("x")
    finally:
        unmount(d)
        unmount(d)  # twice: not mounted is no error
    assert mounts_under(tmp_path) == []
    assert not (d / "f").exists()
