"""How `pinnace server` lays its components out in processes: the
controller manager, scheduler and DNS run in the server's own process,
each restarted alone when it stops (unless --separate-components: a
process each, restarted by the supervisor)."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import dns.resolver

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


def _resolves(port: int) -> bool:
    r = dns.resolver.Resolver(configure=False)
    r.nameservers, r.port, r.lifetime = ["127.0.0.1"], port, 1.0
    try:
        return str(r.resolve("kubernetes.default.svc.cluster.local", "A")[0]) == "10.96.0.1"
    except dns.exception.DNSException:
        return False


def test_a_component_that_cannot_start_is_retried_alone(tmp_path: Path) -> None:
    """The DNS's port is taken when the server starts: the controllers and
    the scheduler work all the same, in the server's own process (its only
    child is the API server), and the DNS answers once the port is free."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    taken = [socket.socket(socket.AF_INET, kind) for kind in (socket.SOCK_DGRAM,
                                                              socket.SOCK_STREAM)]
    for s in taken:
        s.bind(("127.0.0.1", port))
    srv = start_server(tmp_path / "data", "--datastore", "memory", "--cluster-dns-port",
                       str(port), command="server")
    try:
        wait_for(lambda: "dns failed" in srv.log.read_text(), what="the DNS to fail to bind")
        assert [argv[0] for argv in _children(srv.proc.pid).values()] == ["apiserver"]
        srv.kubectl("apply", "-f", "-", input=_deployment("web"))
        wait_for(lambda: _has_replicaset(srv, "web"), what="the deployment controller at work")
        # Nothing has asked for a certificate or a legacy token yet: the
        # crypto library (~10 MB) is not loaded (pinnace/certfiles.py).
        assert "cryptography" not in Path(f"/proc/{srv.proc.pid}/maps").read_text()
        for s in taken:
            s.close()
        wait_for(lambda: _resolves(port), timeout=45, what="the DNS once its port is free")
        assert "restarting in" in srv.log.read_text()
    finally:
        for s in taken:
            s.close()
        srv.stop()


def test_separate_components_run_a_process_each_restarted_when_it_dies(tmp_path: Path) -> None:
    srv = start_server(tmp_path / "data", "--datastore", "memory", "--separate-components",
                       command="server")
    try:
        kids = wait_for(lambda: (k := _children(srv.proc.pid)) and len(k) == 4 and k,
                        what="four component processes")
        assert sorted(a[0] for a in kids.values()) == \
            ["apiserver", "controller-manager", "dns", "scheduler"]
        cm = next(pid for pid, argv in kids.items() if argv[0] == "controller-manager")
        os.kill(cm, 9)
        wait_for(lambda: any(a[0] == "controller-manager" and pid != cm
                             for pid, a in _children(srv.proc.pid).items()),
                 what="the supervisor to start the controller manager again")
        srv.kubectl("apply", "-f", "-", input=_deployment("after"))
        wait_for(lambda: _has_replicaset(srv, "after"), timeout=60,
                 what="the deployment controller at work again")
    finally:
        srv.stop()


def test_the_components_come_back_by_the_socket_when_the_api_server_is_killed(
        tmp_path: Path) -> None:
    """kill -9 leaves the API server's Unix socket file behind: the API
    server started again takes the path over, and the controllers, which
    reach it by that socket, carry on."""
    srv = start_server(tmp_path / "data", command="server")
    try:
        sock = srv.data_dir / "apiserver.sock"
        assert sock.is_socket()
        api = next(pid for pid, argv in _children(srv.proc.pid).items() if argv[0] == "apiserver")
        os.kill(api, 9)
        wait_for(lambda: any(a[0] == "apiserver" and pid != api
                             for pid, a in _children(srv.proc.pid).items()),
                 what="the supervisor to start the API server again")
        wait_for(lambda: srv.kubectl("apply", "-f", "-", input=_deployment("after"),
                                     check=False).returncode == 0, what="the API back")
        wait_for(lambda: _has_replicaset(srv, "after"), timeout=60,
                 what="the deployment controller at work again")
    finally:
        srv.stop()
    assert not sock.exists()  # a clean stop takes the socket file away
