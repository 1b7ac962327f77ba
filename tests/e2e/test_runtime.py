"""The OCI runtime the agent picks: crun where it works on this host (a
hybrid host's cgroup layout made fit for it first), else runc. Each is tried
for real with the probe container."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from pinnace.kubelet import cgroups
from pinnace.kubelet.agent import agents_running
from pinnace.kubelet.oci import choose_runtime, probe


def test_crun_is_chosen_and_a_hybrid_hosts_cgroups_made_fit_for_it(node_packages,
                                                                    tmp_path: Path) -> None:
    runc, crun = shutil.which("runc"), shutil.which("crun")
    assert runc and crun
    assert probe(runc, tmp_path) == ""
    on_v2 = cgroups.hybrid_v2_controllers()  # hugetlb on the CI machines
    why = probe(crun, tmp_path)
    # crun refuses exactly the hybrid host with controllers left on cgroup v2.
    assert (why == "") == (not on_v2), why
    assert not on_v2 or "hybrid mode" in why, why
    movable = not (cgroups.UNIFIED / "cgroup.subtree_control").exists() or \
        not (cgroups.UNIFIED / "cgroup.subtree_control").read_text().split()
    assert Path(choose_runtime(tmp_path)).name == ("crun" if movable or not on_v2 else "runc")
    if on_v2 and movable:
        # Bound to v1 hierarchies of their own, and recorded for the reset.
        assert cgroups.hybrid_v2_controllers() == []
        assert set(on_v2) <= set(cgroups.RECORD.read_text().split())
        assert all((cgroups.ROOT / name / "cgroup.procs").exists() for name in on_v2)
    assert probe(crun, tmp_path) == ""
    assert Path(choose_runtime(tmp_path, "runc")).name == "runc"
    assert not any(tmp_path.iterdir())  # the probe's bundle is gone
    # ... and its cgroup, parent included, under every hierarchy.
    assert not [h for h in cgroups.hierarchies() if (h / cgroups.PROBE_PARENT).exists()]
    if on_v2 and movable and not agents_running():
        # What `agent --reset` does when it was the last agent: the
        # controllers go back to v2 (the kernel frees the hierarchy lazily).
        assert set(on_v2) <= set(cgroups.release_v1_mounts())
        assert not cgroups.RECORD.exists()
        deadline = time.monotonic() + 10
        while set(cgroups.hybrid_v2_controllers()) != set(on_v2) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert set(cgroups.hybrid_v2_controllers()) == set(on_v2)
        assert not any((cgroups.ROOT / name).exists() for name in on_v2)
        # Asked for by name (`--runtime crun`), crun gets the same layout.
        assert Path(choose_runtime(tmp_path, "crun")).name == "crun"
        assert cgroups.hybrid_v2_controllers() == []
        assert probe(crun, tmp_path) == ""
        assert set(on_v2) <= set(cgroups.release_v1_mounts())
