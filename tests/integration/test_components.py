"""How `pinnace server` lays its components out in processes: the
controller manager, scheduler and DNS share one process (unless
--separate-components), and the supervisor restarts that process when it
dies, as it restarts a component running alone."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.conftest import start_server, wait_for


def _children(pid: int) -> dict[int, list[str]]:
    """The server's child processes: pid -> the `pinnace` arguments."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().decode().split("\0")
        except (OSError, ValueError):
            continue
        if ppid == pid and "pinnace.cli.main" in argv:
            out[int(entry)] = argv[argv.index("pinnace.cli.main") + 1:]
    return out


def _deployment(name: str) -> str:
    return json.dumps({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}})


def _has_replicaset(srv, name: str) -> bool:  # type: ignore[no-untyped-def]
    out = srv.kubectl("get", "rs", "-l", f"app={name}", "-o", "name").stdout
    return bool(out.strip())


def test_controllers_scheduler_and_dns_share_one_process_restarted_when_it_dies(
        tmp_path: Path) -> None:
    srv = start_server(tmp_path / "data", "--datastore", "memory", command="server")
    try:
        kids = wait_for(lambda: (k := _children(srv.proc.pid)) and len(k) == 2 and k,
                        what="the API server and one process for the other components")
        shared = [pid for pid, argv in kids.items() if argv[0] == "components"]
        assert len(shared) == 1, kids
        argv = kids[shared[0]]
        names = [argv[1], *(argv[i + 1] for i, w in enumerate(argv) if w == "--and")]
        assert names == ["controller-manager", "scheduler", "dns"], argv

        srv.kubectl("apply", "-f", "-", input=_deployment("before"))
        wait_for(lambda: _has_replicaset(srv, "before"), what="the deployment controller at work")
        # Nothing has asked for a certificate or a legacy token yet: the
        # crypto library (~10 MB) is not loaded (pinnace/certfiles.py).
        assert "cryptography" not in Path(f"/proc/{shared[0]}/maps").read_text()

        os.kill(shared[0], signal.SIGKILL)
        wait_for(lambda: any(argv[0] == "components" and pid != shared[0]
                             for pid, argv in _children(srv.proc.pid).items()),
                 what="the supervisor to start the shared process again")
        srv.kubectl("apply", "-f", "-", input=_deployment("after"))
        wait_for(lambda: _has_replicaset(srv, "after"), timeout=60,
                 what="the deployment controller at work again")
    finally:
        srv.stop()


def test_separate_components_run_a_process_each(tmp_path: Path) -> None:
    srv = start_server(tmp_path / "data", "--datastore", "memory", "--separate-components",
                       command="server")
    try:
        names = wait_for(lambda: (n := sorted(a[0] for a in _children(srv.proc.pid).values()))
                         and len(n) == 4 and n, what="four component processes")
        assert names == ["apiserver", "controller-manager", "dns", "scheduler"]
    finally:
        srv.stop()


def test_when_one_shared_component_fails_the_process_exits_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "missing.kubeconfig"
    run = subprocess.run(
        [sys.executable, "-m", "pinnace.cli.main", "components",
         "scheduler", "--kubeconfig", str(missing), "--leader-elect", "false",
         "--and", "dns", "--kubeconfig", str(missing), "--listen", "127.0.0.1:0"],
        capture_output=True, text=True, timeout=60)
    assert run.returncode == 1, run.stderr
    assert "stopping the components that share its process" in run.stderr
    assert str(missing) in run.stderr


def test_only_api_clients_share_a_process() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "pinnace.cli.main", "components", "scheduler", "--and",
         "agent"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert "agent cannot share a process" in run.stderr
