"""The host's cgroup hierarchies as the agent sees them, on a stand-in tree
(the real one needs root and is exercised by the e2e suite's reset)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pinnace.kubelet import cgroups


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cgroup"
    root.mkdir()
    monkeypatch.setattr(cgroups, "ROOT", root)
    monkeypatch.setattr(cgroups, "UNIFIED", root / "unified")
    monkeypatch.setattr(cgroups, "RECORD", tmp_path / "run" / "cgroup-v1-mounts")
    return root


def _sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def test_a_reset_kills_what_still_runs_in_the_pods_cgroups_and_nothing_else(tree: Path):
    # A container whose runtime state was lost: only its cgroup knows it.
    lost, other = _sleeper(), _sleeper()
    try:
        for pod, proc in (("podA", lost), ("podB", other)):
            d = tree / "memory" / "kubepods" / "besteffort" / pod / "c1"
            d.mkdir(parents=True)
            (d / "cgroup.procs").write_text(f"{proc.pid}\n")
        assert cgroups.kill_pod_processes("A", wait=0.2) == 1
        assert lost.wait(timeout=5) == -9
        assert other.poll() is None
        assert cgroups.kill_pod_processes("C", wait=0.2) == 0  # no such pod
    finally:
        for proc in (lost, other):
            proc.kill()
            proc.wait()


def test_only_a_hybrid_host_with_controllers_left_on_v2_needs_its_layout_changed(
        tree: Path, monkeypatch: pytest.MonkeyPatch):
    (tree / "unified").mkdir()
    (tree / "unified" / "cgroup.controllers").write_text("hugetlb misc\n")
    mounts = {str(tree): "tmpfs", str(tree / "unified"): "cgroup2"}
    monkeypatch.setattr(cgroups, "_mount_types", lambda: mounts)
    assert cgroups.hybrid_v2_controllers() == ["hugetlb", "misc"]
    (tree / "unified" / "cgroup.controllers").write_text("\n")  # systemd's hybrid mode
    assert cgroups.hybrid_v2_controllers() == []
    mounts[str(tree)] = "cgroup2"  # cgroup v2 only: crun's own ground
    assert cgroups.hybrid_v2_controllers() == []


def test_a_controller_in_use_on_v2_is_left_where_it_is(tree: Path,
                                                       monkeypatch: pytest.MonkeyPatch):
    (tree / "unified").mkdir()
    (tree / "unified" / "cgroup.controllers").write_text("hugetlb\n")
    (tree / "unified" / "cgroup.subtree_control").write_text("hugetlb\n")
    monkeypatch.setattr(cgroups, "_mount_types",
                        lambda: {str(tree): "tmpfs", str(tree / "unified"): "cgroup2"})
    with pytest.raises(cgroups.CgroupError, match="uses hugetlb"):
        cgroups.bind_hybrid_controllers_to_v1()
    assert not (tree / "hugetlb").exists()
    assert not cgroups.RECORD.exists()


def test_the_reset_keeps_a_hierarchy_that_still_holds_cgroups(tree: Path):
    cgroups.RECORD.parent.mkdir(parents=True)
    cgroups.RECORD.write_text("hugetlb\n")
    (tree / "hugetlb" / "someone-else").mkdir(parents=True)
    assert cgroups.release_v1_mounts() == []
    assert cgroups.RECORD.read_text() == "hugetlb\n"
    assert (tree / "hugetlb").is_dir()


def test_remove_pod_cgroups_takes_the_containers_dirs_and_the_pods(tree: Path):
    pod = tree / "pids" / "kubepods" / "burstable" / "podU"
    (pod / "c1").mkdir(parents=True)
    (pod / "c2").mkdir()
    cgroups.remove_pod_cgroups("U")
    assert not pod.exists()
    cgroups.remove_node_cgroups()
    assert not (tree / "pids" / "kubepods").exists()


def test_unused_pod_cgroups_go_and_those_in_use_stay(tree: Path):
    # A pod whose teardown a stopped agent left halfway, and a running one
    # (a file stands for what makes the kernel refuse: a process inside).
    left = tree / "memory" / "kubepods" / "besteffort" / "podL"
    (left / "c1").mkdir(parents=True)
    running = tree / "memory" / "kubepods" / "podR" / "c1"
    running.mkdir(parents=True)
    (running / "cgroup.procs").write_text("1\n")
    cgroups.remove_unused_pod_cgroups()
    assert not left.exists()
    assert (running / "cgroup.procs").exists()
