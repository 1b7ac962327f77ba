"""Unmounting what the agent mounted, a directory bound onto itself included
(the namespace pin dir): os.path.ismount alone misses such a mount, and it
was left behind."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from pinnace.kubelet.oci import unmount
from pinnace.kubelet.volumes import mounts_under


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to mount")
def test_a_directory_bound_onto_itself_is_seen_and_unmounted(tmp_path: Path) -> None:
    d = tmp_path / "pins dir"  # a space, as mountinfo escapes it
    d.mkdir()
    assert not unmount(d)  # nothing mounted: nothing done, no warning
    subprocess.run(["mount", "--bind", str(d), str(d)], check=True)
    try:
        assert not os.path.ismount(d)  # same filesystem: the device test cannot tell
        assert mounts_under(d) == [d]
        assert unmount(d)
        assert mounts_under(d) == []
    finally:
        subprocess.run(["umount", str(d)], capture_output=True)
