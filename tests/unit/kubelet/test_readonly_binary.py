"""crun bound read-only for the agent's calls: crun skips copying itself to
a memfd at every call when its binary is on a read-only mount."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from pinnace.kubelet.oci import readonly_binary, unmount
from pinnace.kubelet.volumes import mounts_under

CRUN = shutil.which("crun")


@pytest.mark.skipif(os.geteuid() != 0 or not CRUN, reason="needs root to mount, and crun")
def test_crun_is_called_from_a_read_only_bind_made_once(tmp_path: Path) -> None:
    assert CRUN
    try:
        path = readonly_binary(tmp_path, CRUN)
        assert path == str(tmp_path / "crun")
        assert os.statvfs(path).f_flag & os.ST_RDONLY  # what crun checks
        assert os.stat(path).st_ino == os.stat(CRUN).st_ino
        with pytest.raises(OSError):
            open(path, "r+b").close()
        out = subprocess.run([path, "--version"], capture_output=True, text=True, check=True)
        assert "crun version" in out.stdout
        assert readonly_binary(tmp_path, CRUN) == path  # an agent restarted: the same mount
        assert mounts_under(tmp_path) == [tmp_path / "crun"]
    finally:
        unmount(tmp_path / "crun")
    assert mounts_under(tmp_path) == []


def test_runc_is_called_as_it_is(tmp_path: Path) -> None:
    # runc takes a read-only binary as safe only with an environment variable set.
    assert readonly_binary(tmp_path, "/usr/sbin/runc") == "/usr/sbin/runc"
    assert not (tmp_path / "crun").exists()
