"""The OCI runtime the agent picks: crun where it works on this host, else
runc. Each is tried for real with the probe container."""

from __future__ import annotations

import shutil
from pathlib import Path

from pinnace.kubelet.oci import choose_runtime, probe


def test_the_probe_container_runs_or_says_why(node_packages, tmp_path: Path) -> None:
    runc, crun = shutil.which("runc"), shutil.which("crun")
    assert runc and crun
    assert probe(runc, tmp_path) == ""
    why = probe(crun, tmp_path)
    # crun runs it, unless it refuses this host's cgroup layout (hybrid with
    # controllers on the v2 hierarchy, as on the CI machines).
    assert why == "" or "hybrid mode" in why, why
    assert Path(choose_runtime(tmp_path)).name == ("crun" if why == "" else "runc")
    assert Path(choose_runtime(tmp_path, "runc")).name == "runc"
    assert not any(tmp_path.iterdir())  # the probe's bundle is gone
