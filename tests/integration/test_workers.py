"""`pinnace apiserver --workers 2`: two API server processes on one port and
one SQLite file behave as one API server to kubectl and to raw clients.

Every HTTP call here opens its own connection, so calls land on both workers
(the kernel spreads connections over them by their source port)."""

from __future__ import annotations

import json
import os
import signal
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Server, start_server, unix_request, wait_for


@pytest.fixture
def workers_server(tmp_path: Path) -> Iterator[Server]:
    srv = start_server(tmp_path / "data", "--workers", "2")
    yield srv
    srv.stop()


def worker_pids(server: Server) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except (OSError, ValueError):
            continue
        if ppid == server.proc.pid and b"--worker-index" in argv:
            out.append(int(entry))
    return sorted(out)


def configmap(ns: str, name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns},
            "data": {"k": name}}


def test_kubectl_sees_one_server(workers_server: Server) -> None:
    srv = workers_server
    assert len(worker_pids(srv)) == 2
    srv.kubectl("create", "namespace", "w")
    for i in range(10):
        srv.kubectl("create", "configmap", f"c{i}", "-n", "w", "--from-literal=a=b")
    names = srv.kubectl("get", "configmaps", "-n", "w", "-o", "name").stdout.split()
    assert [n for n in names if n.startswith("configmap/c")] == [f"configmap/c{i}" for i in
                                                                  range(10)]
    # Conflicts are detected whichever worker holds the newer version.
    cm = json.loads(srv.kubectl("get", "configmap", "c0", "-n", "w", "-o", "json").stdout)
    srv.kubectl("label", "configmap", "c0", "-n", "w", "x=1")
    stale = srv.kubectl("replace", "-f", "-", input=json.dumps(cm), check=False)
    assert stale.returncode != 0 and "the object has been modified" in stale.stderr
    # Both workers answered some of those requests (each records its metrics in a
    # file of its own, named by its pid)...
    served = {f.name for f in (srv.data_dir / "run" / "metrics").glob("counter_*.db")}
    assert {f"counter_{pid}.db" for pid in worker_pids(srv)} <= served
    # ...and /metrics counts the requests of both.
    text = srv.kubectl("get", "--raw", "/metrics").stdout
    posts = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                if line.startswith("apiserver_request_total{") and 'verb="POST"' in line
                and 'resource="configmaps"' in line and 'code="201"' in line)
    assert posts == 10


def test_a_watch_sees_writes_made_through_every_worker(workers_server: Server) -> None:
    http = workers_server.http()
    assert http.call("POST", "/api/v1/namespaces", {"metadata": {"name": "ww"}})[0] == 201
    code, listed = http.call("GET", "/api/v1/namespaces/ww/configmaps")
    rv = listed["metadata"]["resourceVersion"]
    # Several watchers on their own connections (so on both workers).
    results: list[list[dict[str, Any]]] = [[] for _ in range(6)]

    def watch(i: int) -> None:
        results[i] = http.stream(f"/api/v1/namespaces/ww/configmaps?watch=1&resourceVersion={rv}"
                                 "&timeoutSeconds=30", 40)

    threads = [threading.Thread(target=watch, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    written = []
    for i in range(20):
        code, obj = http.call("POST", "/api/v1/namespaces/ww/configmaps", configmap("ww", f"m{i}"))
        assert code == 201, obj
        code, obj = http.call("DELETE", f"/api/v1/namespaces/ww/configmaps/m{i}")
        assert code == 200, obj
        written.append(f"m{i}")
    for t in threads:
        t.join(40)
    expected = [(t, n) for n in written for t in ("ADDED", "DELETED")]
    for events in results:
        seen = [(e["type"], e["object"]["metadata"]["name"]) for e in events]
        assert seen == expected
        revs = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
        assert revs == sorted(revs)


CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "gadgets.example.com"},
    "spec": {"group": "example.com", "scope": "Namespaced",
             "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
             "versions": [{"name": "v1", "served": True, "storage": True,
                           "schema": {"openAPIV3Schema": {
                               "type": "object",
                               "x-kubernetes-preserve-unknown-fields": True}}}]}}


def test_a_new_crd_is_served_at_once_by_every_worker(workers_server: Server) -> None:
    http = workers_server.http()
    assert http.call("POST", "/api/v1/namespaces", {"metadata": {"name": "wc"}})[0] == 201
    code, obj = http.call("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", CRD)
    assert code == 201, obj
    # Right away, on fresh connections: whichever worker answers knows the resource.
    for i in range(10):
        code, obj = http.call("POST", "/apis/example.com/v1/namespaces/wc/gadgets", {
            "apiVersion": "example.com/v1", "kind": "Gadget",
            "metadata": {"name": f"g{i}"}})
        assert code == 201, obj
    code, listed = http.call("GET", "/apis/example.com/v1/namespaces/wc/gadgets")
    assert len(listed["items"]) == 10


def test_a_killed_worker_comes_back_and_nothing_is_lost(workers_server: Server) -> None:
    srv = workers_server
    http = srv.http()
    assert http.call("POST", "/api/v1/namespaces", {"metadata": {"name": "wk"}})[0] == 201
    before = worker_pids(srv)
    acked = []
    outcomes: list[str] = []  # what each POST got, for the message of a failure
    for i, victim in enumerate(before):
        for j in range(10):
            name = f"k{i}-{j}"
            try:
                code, answer = http.call("POST", "/api/v1/namespaces/wk/configmaps",
                                         configmap("wk", name))
            except OSError as e:  # a connection the dying worker had accepted
                outcomes.append(f"{name}: {e!r}")
                continue
            outcomes.append(f"{name}: {code}" + ("" if code == 201 else f" {answer}"))
            if code == 201:
                acked.append(name)
            if j == 5:
                os.kill(victim, signal.SIGKILL)
        wait_for(lambda v=victim: len(worker_pids(srv)) == 2 and v not in worker_pids(srv),
                 timeout=60, what="the killed worker to be restarted")

    def all_there() -> bool:
        try:
            code, listed = http.call("GET", "/api/v1/namespaces/wk/configmaps")
        except OSError:
            return False
        return code == 200 and {o["metadata"]["name"] for o in listed["items"]} >= set(acked)

    wait_for(all_there, timeout=30, what="every acknowledged configmap")
    assert len(acked) >= 10, outcomes
    # The restarted owner (worker 0) still keeps the datastore: the server serves on.
    assert http.call("GET", "/readyz")[1] == b"ok"
    # Kubeconfig and URL are unchanged by restarts.
    with urllib.request.urlopen(srv.url + "/version", context=http.ctx, timeout=10) as resp:
        assert json.loads(resp.read())["major"] == "1"


def test_every_worker_takes_connections_from_the_components_socket(
        workers_server: Server) -> None:
    """The components' socket is one listening socket shared by the workers:
    with either worker stopped, a component's request over it is answered."""
    srv = workers_server
    sock = srv.data_dir / "apiserver.sock"
    token = (srv.data_dir / "tls" / "scheduler.token").read_text().strip()
    review = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
    for pid in worker_pids(srv):
        os.kill(pid, signal.SIGSTOP)
        try:
            code, out = unix_request(sock, "POST",
                                     "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                                     token, review, timeout=5)
        finally:
            os.kill(pid, signal.SIGCONT)
        assert code == 201, out
        assert out["status"]["userInfo"]["username"] == "system:kube-scheduler"
    srv.stop()
    assert not sock.exists()  # the parent made it, the parent removes it
