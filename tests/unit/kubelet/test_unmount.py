"""Unmounting what the agent mounted, a directory bound onto itself included
(the namespace pin dir): os.path.ismount alone misses such a mount, and it
was left behind."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from pinnace.kubelet.oci import is_mount, unmount


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to mount")
def test_a_directory_bound_onto_itself_is_seen_and_unmounted(tmp_path: Path) -> None:
    d = tmp_path / "pins dir"  # a space, as mountinfo escapes it
    d.mkdir()
    assert not is_mount(d)
    subprocess.run(["mount", "--bind", str(d), str(d)], check=True)
    try:
        assert not os.path.ismount(d)  # same filesystem: the device test cannot tell
        assert is_mount(d)
        unmount(d)
        assert not is_mount(d)
    finally:
        subprocess.run(["umount", str(d)], capture_output=True)
