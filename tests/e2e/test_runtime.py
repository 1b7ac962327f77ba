"""The OCI runtime the agent picks: crun where it works on this host (a
hybrid host's cgroup layout made fit for it first), else runc. Each is tried
for real with the probe container."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from pinnace.kubelet import cgroups, ocispec
from pinnace.kubelet.agent import agents_running
from pinnace.kubelet.images import ImageStore, image_root
from pinnace.kubelet.oci import CREATED, RUNNING, OCIRuntime, Record, choose_runtime, probe, unmount
from pinnace.kubelet.volumes import mounts_under


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


@pytest.mark.parametrize("name", ["crun", "runc"])
def test_a_container_runs_and_ends_under_either_runtime(node_packages, busybox_archive: Path,
                                                         tmp_path: Path, name: str) -> None:
    """The agent's whole container cycle on each runtime, as the agent runs
    it: crun from its read-only bind and started through its exec fifo,
    runc by its own commands. The suite's pods only run on the one chosen."""
    subprocess.run([sys.executable, "-m", "pinnace.cli.main", "image", "import", "--data-dir",
                    str(tmp_path), str(busybox_archive)], check=True, capture_output=True)
    image = ImageStore(image_root(tmp_path)).get("busybox:1.36")
    assert image is not None
    root = tmp_path / "runtime"
    on_v2 = cgroups.hybrid_v2_controllers()
    rt = OCIRuntime(root, name)
    rec = Record(id=uuid.uuid4().hex * 2, pod_uid=str(uuid.uuid4()), namespace="test",
                 pod_name="p", name="c")
    try:
        assert Path(rt.binary).name == name
        assert (rt.binary == str(root / "run" / "crun")) == (name == "crun")
        cfg = ocispec.config(args=["sleep", "300"], env=["PATH=/bin"], cwd="/", uid=1000,
                             gid=3000, groups=[3000, 4000], rootfs="", readonly_root=False,
                             hostname="c",
                             namespaces=[{"type": t} for t in ("mount", "pid", "ipc", "uts")],
                             cgroups_path=f"/kubepods/besteffort/pod{rec.pod_uid}/{rec.id}",
                             linux_resources={},
                             caps=ocispec.capabilities({}), privileged=False,
                             no_new_privileges=False, mounts=[])
        asyncio.run(rt.create(rec, cfg, rootfs_layers=image.layers))
        assert rt.state(rec).status == CREATED
        spawned: list[tuple[str, ...]] = []
        spawn = asyncio.create_subprocess_exec

        async def counting(*args, **kw):  # type: ignore[no-untyped-def]
            spawned.append(args)
            return await spawn(*args, **kw)

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(asyncio, "create_subprocess_exec", counting)
            asyncio.run(rt.start(rec))
        # crun's start is the agent's own write to its exec fifo; runc's its command.
        assert [a[3] for a in spawned] == ([] if name == "crun" else ["start"])
        st = rt.state(rec)
        assert st.status == RUNNING
        # Started: the runtime's init goes on to exec the process (as after
        # `crun start`, which does not wait for that either).
        cmdline = Path(f"/proc/{st.pid}/cmdline")
        deadline = time.monotonic() + 10
        while cmdline.read_bytes().split(b"\0")[0] != b"sleep" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert cmdline.read_bytes().split(b"\0")[0] == b"sleep"
        # The runtime agrees: started, not merely created.
        out = subprocess.run([rt.binary, "--root", str(rt.state_dir), "state", rec.id],
                             capture_output=True, text=True, check=True)
        assert json.loads(out.stdout)["status"] == "running"
        # An exec runs as the container's process does, under either runtime.
        out = subprocess.run(rt.exec_argv(rec, ["sh", "-c", "id -u; id -G"], False),
                             capture_output=True, text=True, timeout=30)
        assert out.stdout.split("\n")[:2] == ["1000", "3000 4000"], out.stderr
        assert asyncio.run(rt.stop(rec, 0)).exit_code == 137
        asyncio.run(rt.remove(rec))
        assert not rt.bundle(rec.id).exists()
    finally:
        if rt.bundle(rec.id).exists():  # a failure above: nothing may keep running
            asyncio.run(rt.stop(rec, 0))
            asyncio.run(rt.remove(rec))
        for m in mounts_under(tmp_path):
            unmount(m)
        cgroups.remove_pod_cgroups(rec.pod_uid)
        if not agents_running():  # as `agent --reset` would after the last agent
            cgroups.remove_node_cgroups()
            if on_v2:
                cgroups.release_v1_mounts()  # bound for crun here
    assert not mounts_under(tmp_path)
