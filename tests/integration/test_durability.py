"""Crashes and restarts lose no acknowledged write; several servers share one etcd."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from tests.conftest import Server, start_server


def _ns(server: Server, name: str) -> None:
    code, _ = server.http().call("POST", "/api/v1/namespaces", {
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    assert code == 201


def test_kill9_under_write_load_loses_no_acknowledged_write(tmp_path: Path) -> None:
    data = tmp_path / "data"
    srv = start_server(data)
    _ns(srv, "load")
    acked: set[str] = set()
    stop, threads = _write_load(srv, "w", acked, writers=12, per_writer=400)
    deadline = time.monotonic() + 20
    while len(acked) < 300 and time.monotonic() < deadline:
        time.sleep(0.01)
    srv.proc.kill()  # SIGKILL mid-load
    srv.proc.wait()
    stop.set()
    for t in threads:
        t.join(30)
    answered = set(acked)
    assert len(answered) >= 300, "the load did not get going"
    again = start_server(data)
    try:
        code, listing = again.http().call("GET", "/api/v1/namespaces/load/configmaps")
        assert code == 200
        present = {i["metadata"]["name"] for i in listing["items"]}
        assert answered - present == set()
        # The reopened store keeps accepting writes.
        code, _ = again.http().call("POST", "/api/v1/namespaces/load/configmaps", {
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "after"}})
        assert code == 201
    finally:
        again.stop()


def test_two_servers_share_one_etcd(tmp_path: Path, etcd_endpoint: str) -> None:
    store = ["--datastore", f"etcd://{etcd_endpoint}"]
    a = start_server(tmp_path / "a", *store)
    b = start_server(tmp_path / "b", *store)
    try:
        a.kubectl("create", "-f", "-", input='{"apiVersion":"v1","kind":"Namespace",'
                                              '"metadata":{"name":"shared"}}')
        a.kubectl("-n", "shared", "create", "-f", "-", input='{"apiVersion":"v1","kind":'
                  '"ConfigMap","metadata":{"name":"from-a"},"data":{"x":"1"}}')
        assert b.kubectl("-n", "shared", "get", "cm", "from-a", "-o",
                         "jsonpath={.data.x}").stdout == "1"
        # A watch on one server sees a write made through the other.
        rv = b.kubectl("-n", "shared", "get", "cm", "from-a", "-o",
                       "jsonpath={.metadata.resourceVersion}").stdout
        got: list[dict] = []
        watcher = threading.Thread(target=lambda: got.extend(a.http().stream(
            f"/api/v1/namespaces/shared/configmaps?watch=true&resourceVersion={rv}"
            f"&timeoutSeconds=10", 1)))
        watcher.start()
        b.kubectl("-n", "shared", "create", "-f", "-", input='{"apiVersion":"v1","kind":'
                  '"ConfigMap","metadata":{"name":"from-b"}}')
        watcher.join(15)
        assert [(e["type"], e["object"]["metadata"]["name"]) for e in got] == [
            ("ADDED", "from-b")]
        # Service IPs are allocated through etcd: never the same one twice.
        ips = set()
        for srv, name in ((a, "s1"), (b, "s2"), (a, "s3"), (b, "s4")):
            srv.kubectl("-n", "shared", "create", "-f", "-", input='{"apiVersion":"v1",'
                        '"kind":"Service","metadata":{"name":"' + name + '"},"spec":'
                        '{"ports":[{"port":80}]}}')
            ips.add(srv.kubectl("-n", "shared", "get", "svc", name, "-o",
                                "jsonpath={.spec.clusterIP}").stdout)
        assert len(ips) == 4
        # A CRD created through one server is served by the other.
        from tests.integration.test_kubectl import CRD

        a.kubectl("apply", "-f", "-", input=CRD)
        deadline = time.monotonic() + 10
        while b.kubectl("get", "crontabs", check=False).returncode != 0:
            assert time.monotonic() < deadline, "server b never served the CRD"
            time.sleep(0.1)
        a.kubectl("delete", "crd", "crontabs.stable.example.com")
        while b.kubectl("get", "crontabs", check=False).returncode == 0:
            assert time.monotonic() < deadline, "server b kept serving a deleted CRD"
            time.sleep(0.1)
    finally:
        a.stop()
        b.stop()


def _write_load(srv: Server, prefix: str, acked: set[str], writers: int = 8,
                per_writer: int = 300) -> tuple[threading.Event, list[threading.Thread]]:
    """ConfigMap creates in namespace load from ``writers`` threads, each name
    added to ``acked`` once the server answered 201; set the event to stop."""
    lock = threading.Lock()
    stop = threading.Event()

    def writer(w: int) -> None:
        client = srv.http()
        for i in range(per_writer):  # bounded: the load stops by itself
            if stop.is_set():
                return
            name = f"{prefix}-w{w}-{i}"
            try:
                got, _ = client.call("POST", "/api/v1/namespaces/load/configmaps", {
                    "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
                    "data": {"i": str(i)}})
            except OSError:
                return
            if got == 201:
                with lock:
                    acked.add(name)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    return stop, threads


def test_repeated_kill9_of_the_whole_server_loses_no_acknowledged_write(tmp_path: Path) -> None:
    """`pinnace server` (supervisor, API server, controllers, scheduler) killed
    as a process group with SIGKILL in the middle of a write load, three
    times: every write it acknowledged is there after each restart, and the
    SQLite file passes its integrity check."""
    import os
    import signal
    import sqlite3

    data = tmp_path / "data"
    acked: set[str] = set()
    for round_ in range(3):
        srv = start_server(data, command="server", timeout=60)
        if round_ == 0:
            _ns(srv, "load")
        code, listing = srv.http().call("GET", "/api/v1/namespaces/load/configmaps")
        assert code == 200
        present = {i["metadata"]["name"] for i in listing["items"]}
        assert acked - present == set(), f"round {round_}: acknowledged writes lost"
        before = len(acked)
        stop, threads = _write_load(srv, f"r{round_}", acked)
        deadline = time.monotonic() + 20
        while len(acked) < before + 150 and time.monotonic() < deadline:
            time.sleep(0.01)
        os.killpg(srv.proc.pid, signal.SIGKILL)  # every process of the server at once
        srv.proc.wait()
        stop.set()
        for t in threads:
            t.join(30)
        assert len(acked) >= before + 150, "the load did not get going"
        with sqlite3.connect(data / "state.db") as db:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    last = start_server(data)
    try:
        code, listing = last.http().call("GET", "/api/v1/namespaces/load/configmaps")
        assert acked - {i["metadata"]["name"] for i in listing["items"]} == set()
    finally:
        last.stop()
