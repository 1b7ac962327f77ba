"""The kubelet API (pinnace.kubelet.server) behind a real API server, driven
by the real kubectl: `kubectl logs` (with --tail, --timestamps, -f),
`kubectl exec` (output, exit codes, stdin), `kubectl attach` and `kubectl
port-forward` reach a kubelet that serves a fake runtime: its log is a CRI
file the test writes, its exec runs the command on this host, its attach
socket is a fake conmon the test drives, and its pods use the host's network
(a small HTTP server on a loopback port stands for the pod's).

The kubelet runs in its own thread and event loop, so the synchronous
kubectl calls of the test never stall it.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import http.server
import json
import os
import queue
import re
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from pinnace.apiserver.certs import PKI, issue_client_cert
from pinnace.kubelet.server import KubeletServer
from tests.conftest import KUBECTL, Server

T = "2024-05-01T10:00:0{}.000000001Z"


class FakeRuntime:
    """One pod's container "c": a log file and commands run on the host."""

    def __init__(self, log: Path):
        self.log = log
        self.running = True
        self.asked = 0  # how often a follower asked whether the container runs
        self.conmon: FakeConmon | None = None  # None: the attach socket is gone

    def is_running(self) -> bool:
        self.asked += 1
        return self.running

    def log_path(self, namespace: str, pod: str, container: str,
                 previous: bool) -> tuple[Path, Callable[[], bool]]:
        if container != "c":
            raise KeyError(f'container "{container}" in pod "{pod}" not found')
        if previous:
            raise LookupError(f'previous terminated container "{container}" in pod "{pod}" '
                              "not found")
        return self.log, self.is_running

    def exec_argv(self, namespace: str, pod: str, container: str, command: list[str],
                  tty: bool) -> list[str]:
        if container != "c":
            raise KeyError(f'container "{container}" in pod "{pod}" not found')
        return list(command)

    def attach_socket(self, namespace: str, pod: str, container: str
                      ) -> tuple[Path, Path | None]:
        if container != "c":
            raise KeyError(f'container "{container}" in pod "{pod}" not found')
        if self.conmon is None:
            return self.log.parent / "gone" / "attach", None
        return self.conmon.path, self.conmon.ctl

    def netns_path(self, namespace: str, pod: str) -> str:
        if pod == "ghost":
            raise KeyError(f'pod "{pod}" not found')
        return ""  # the host's network, as a hostNetwork pod

    def stats_summary(self) -> dict[str, Any]:
        return {"node": {"nodeName": "test"}, "pods": []}

    def write(self, *lines: str) -> None:
        with open(self.log, "a") as f:
            for i, line in enumerate(lines):
                f.write(f"{T.format(i % 10)} stdout F {line}\n")


STDOUT_PIPE, STDERR_PIPE = 2, 3  # conmon's stdpipe_t (src/utils.h)


class FakeConmon:
    """What conmon offers a container's attach (conmon/src/conn_sock.c,
    ctrl.c): a SOCK_SEQPACKET socket whose packets out are a pipe byte (2
    stdout, 3 stderr) and output, whose packets in are stdin; and with a
    terminal the ctl fifo, read for "1 HEIGHT WIDTH" lines. It lives in a
    directory too deep for a socket address, as conmon's bundles can be."""

    def __init__(self, directory: Path, terminal: bool):
        directory.mkdir(parents=True)
        assert len(str(directory / "attach")) > 108
        self.path = directory / "attach"
        self.ctl = directory / "ctl" if terminal else None
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        fd = os.open(directory, os.O_PATH)
        try:
            self.listener.bind(f"/proc/self/fd/{fd}/attach")
        finally:
            os.close(fd)
        self.listener.listen(4)
        self.conns: list[socket.socket] = []
        self.stdin: queue.Queue[bytes | None] = queue.Queue()  # None: the client's stdin ended
        self.ctl_lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._accept, daemon=True).start()
        self._ctl_fd = -1
        if self.ctl is not None:
            os.mkfifo(self.ctl)
            self._ctl_fd = os.open(self.ctl, os.O_RDWR)  # conmon keeps both ends open
            threading.Thread(target=self._read_ctl, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        while True:
            try:
                data = conn.recv(32768)
            except OSError:
                data = b""
            self.stdin.put(data or None)
            if not data:
                return

    def _read_ctl(self) -> None:
        # As conmon: what one read gives is taken as one message.
        while (data := os.read(self._ctl_fd, 200).decode()) != "stop\n":
            self.ctl_lines.put(data)
        os.close(self._ctl_fd)

    def connected(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while not self.conns:
            assert time.monotonic() < deadline, "nobody attached"
            time.sleep(0.02)

    def send(self, pipe: int, data: bytes) -> None:
        for conn in self.conns:
            conn.send(bytes((pipe,)) + data)

    def stdin_until_closed(self, timeout: float = 20) -> bytes:
        got = b""
        while (data := self.stdin.get(timeout=timeout)) is not None:
            got += data
        return got

    def hang_up(self) -> None:
        """The container ended: conmon closes every attached connection."""
        for conn in self.conns:
            with contextlib.suppress(OSError):  # wakes the reader thread, which holds it open
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()
        self.conns.clear()

    def close(self) -> None:
        self.hang_up()
        self.listener.close()
        if self.ctl is not None:
            with contextlib.suppress(OSError):
                with open(self.ctl, "w") as f:
                    f.write("stop\n")


@pytest.fixture
def conmon(runtime: FakeRuntime, tmp_path: Path) -> Iterator[Callable[[bool], FakeConmon]]:
    made: list[FakeConmon] = []

    def make(terminal: bool) -> FakeConmon:
        deep = tmp_path.joinpath(*["bundle-directory-of-a-container"] * 4, str(len(made)))
        made.append(FakeConmon(deep, terminal))
        runtime.conmon = made[-1]
        return made[-1]

    yield make
    for c in made:
        c.close()


class KubeletThread:
    def __init__(self, server: Server, runtime: FakeRuntime, tls_dir: Path):
        self.loop = asyncio.new_event_loop()
        self.kubelet = KubeletServer(runtime, host="127.0.0.1", port=0, tls_dir=tls_dir,
                                     client_ca=server.data_dir / "tls" / "ca.crt",
                                     node_name="test-node")
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.kubelet.start(), self.loop).result(30)

    def run(self, coro: Any, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.run(self.kubelet.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def runtime(tmp_path: Path) -> FakeRuntime:
    return FakeRuntime(tmp_path / "c.log")


@pytest.fixture
def kubelet(server: Server, runtime: FakeRuntime, tmp_path: Path) -> Iterator[KubeletThread]:
    k = KubeletThread(server, runtime, tmp_path / "kubelet-tls")
    yield k
    k.stop()


def make_node(server: Server, name: str, port: int, address: str = "127.0.0.1",
              runtime_version: str = "fake://1") -> None:
    http = server.http()
    code, body = http.call("POST", "/api/v1/nodes", {
        "apiVersion": "v1", "kind": "Node", "metadata": {"name": name}})
    assert code == 201, body
    body["status"] = {"addresses": [{"type": "InternalIP", "address": address},
                                    {"type": "Hostname", "address": name}],
                      "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
                      "nodeInfo": {"containerRuntimeVersion": runtime_version}}
    code, body = http.call("PUT", f"/api/v1/nodes/{name}/status", body)
    assert code == 200, body


def make_pod(server: Server, ns: str, name: str, node: str | None) -> None:
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": "busybox"}]}
    if node:
        spec["nodeName"] = node
    code, body = server.http().call("POST", f"/api/v1/namespaces/{ns}/pods", {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec})
    assert code == 201, body


def _admin_tls(server: Server) -> ssl.SSLContext:
    """A client with the admin's certificate, not checking the kubelet's own."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    tls = server.data_dir / "tls"
    ctx.load_cert_chain(tls / "admin.crt", tls / "admin.key")
    return ctx


async def _stream_failure(server: Server, kubelet: KubeletThread, path: str) -> dict[str, Any]:
    """The Status on v4's error channel a stream request to the kubelet ends with."""
    error = b""
    async with aiohttp.ClientSession() as s, \
            s.ws_connect(f"https://127.0.0.1:{kubelet.kubelet.port}{path}",
                         ssl=_admin_tls(server), protocols=["v4.channel.k8s.io"]) as ws:
        async for msg in ws:
            if msg.data[0] == 3:
                error += msg.data[1:]
    return json.loads(error)


@pytest.fixture
def pod(server: Server, namespace: str, kubelet: KubeletThread) -> str:
    """Pod "p" in ``namespace`` on a node whose kubelet is the test's."""
    node = f"kl-{namespace}"[:60]
    make_node(server, node, kubelet.kubelet.port)
    make_pod(server, namespace, "p", node)
    return "p"


def test_logs(server: Server, namespace: str, pod: str, runtime: FakeRuntime) -> None:
    runtime.write("one", "two", "three")
    k = server.kubectl
    assert k("-n", namespace, "logs", pod).stdout == "one\ntwo\nthree\n"
    assert k("-n", namespace, "logs", pod, "--tail=1").stdout == "three\n"
    assert k("-n", namespace, "logs", pod, "-c", "c", "--limit-bytes=6").stdout == "one\ntw"
    assert k("-n", namespace, "logs", pod, "--tail=1", "--timestamps").stdout == \
        "2024-05-01T10:00:02.000000001Z three\n"
    assert k("-n", namespace, "logs", pod, "--since-time=2024-05-01T10:00:01Z").stdout == \
        "two\nthree\n"
    bad = k("-n", namespace, "logs", pod, "-c", "nope", check=False)
    assert bad.returncode == 1
    assert "container nope is not valid for pod p" in bad.stderr
    prev = k("-n", namespace, "logs", pod, "--previous", check=False)
    assert prev.returncode == 1
    assert 'previous terminated container "c" in pod "p" not found' in prev.stderr
    missing = k("-n", namespace, "logs", "nosuch", check=False)
    assert 'pods "nosuch" not found' in missing.stderr


def test_logs_follow(server: Server, namespace: str, pod: str, runtime: FakeRuntime) -> None:
    runtime.write("first")
    env = {"KUBECONFIG": str(server.kubeconfig), "PATH": "/usr/bin:/bin"}
    proc = subprocess.Popen([KUBECTL, "-n", namespace, "logs", "-f", pod],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "first\n"
        runtime.write("second")
        assert proc.stdout.readline() == "second\n"
        runtime.write("third")
        runtime.running = False
        out, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err
        assert out == "third\n"
    finally:
        proc.kill()
        proc.wait()


def test_logs_follow_ends_when_the_client_goes(server: Server, namespace: str, pod: str,
                                               runtime: FakeRuntime) -> None:
    runtime.write("only")
    env = {"KUBECONFIG": str(server.kubeconfig), "PATH": "/usr/bin:/bin"}
    proc = subprocess.Popen([KUBECTL, "-n", namespace, "logs", "-f", pod],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    assert proc.stdout.readline() == "only\n"
    proc.kill()
    proc.wait()
    # The API server notices within a second and hangs up; the kubelet stops following.
    deadline = time.monotonic() + 10
    while True:
        before = runtime.asked
        time.sleep(0.5)
        if runtime.asked == before:
            break
        assert time.monotonic() < deadline, "the kubelet still follows the log"


def test_exec(server: Server, namespace: str, pod: str) -> None:
    k = server.kubectl
    assert k("-n", namespace, "exec", pod, "--", "echo", "hi").stdout == "hi\n"
    failed = k("-n", namespace, "exec", pod, "--", "sh", "-c", "echo out; echo err >&2; exit 3",
               check=False)
    assert failed.returncode == 3, failed.stderr
    assert failed.stdout == "out\n"
    assert "err\n" in failed.stderr
    assert k("-n", namespace, "exec", "-i", pod, "--", "cat",
             input="hello\nworld\n").stdout == "hello\nworld\n"
    big = "x" * 200_000 + "\n"
    assert k("-n", namespace, "exec", "-i", pod, "--", "wc", "-c", input=big).stdout.strip() \
        == str(len(big))
    bad = k("-n", namespace, "exec", pod, "-c", "nope", "--", "true", check=False)
    assert bad.returncode == 1
    assert "container nope is not valid for pod p" in bad.stderr


def test_exec_tty_and_resize(server: Server, namespace: str, pod: str,
                             kubelet: KubeletThread) -> None:
    """A terminal session straight against the kubelet (kubectl needs a terminal for -t)."""

    async def session() -> tuple[bytes, dict[str, Any]]:
        ctx = _admin_tls(server)
        url = (f"https://127.0.0.1:{kubelet.kubelet.port}/exec/{namespace}/{pod}/c"
               "?command=sh&stdin=1&stdout=1&tty=1")
        out, error = b"", b""
        async with aiohttp.ClientSession() as s, \
                s.ws_connect(url, ssl=ctx, protocols=["v5.channel.k8s.io"]) as ws:
            assert ws.protocol == "v5.channel.k8s.io"
            await ws.send_bytes(b"\x04" + json.dumps({"Width": 100, "Height": 40}).encode())
            await ws.send_bytes(b"\x00test -t 0 && echo is-a-tty; stty size; exit 7\n")
            async for msg in ws:
                if msg.data[0] == 1:
                    out += msg.data[1:]
                elif msg.data[0] == 3:
                    error += msg.data[1:]
        return out, json.loads(error)

    out, status = kubelet.run(session())
    assert b"is-a-tty" in out and b"40 100" in out
    assert status["reason"] == "NonZeroExitCode"
    assert status["details"]["causes"] == [{"reason": "ExitCode", "message": "7"}]

    status = kubelet.run(_stream_failure(
        server, kubelet, f"/exec/{namespace}/{pod}/other?command=true&stdout=1"))
    assert status["status"] == "Failure" and status["code"] == 404
    assert status["message"] == 'container "other" in pod "p" not found'


def test_a_websocket_through_nodes_proxy(server: Server, namespace: str, pod: str,
                                        kubelet: KubeletThread) -> None:
    """The kubelet's own WebSocket API (an exec here) reached through the API
    server's nodes/NAME/proxy, as upstream relays an upgrade there: the
    subprotocol the kubelet chose, the command's output and its status."""
    tls = server.data_dir / "tls"
    node = f"kl-{namespace}"[:60]

    async def session() -> tuple[str, bytes, dict[str, Any]]:
        ctx = ssl.create_default_context(cafile=str(tls / "ca.crt"))
        ctx.load_cert_chain(tls / "admin.crt", tls / "admin.key")
        url = (f"{server.url}/api/v1/nodes/{node}/proxy/exec/{namespace}/{pod}/c"
               "?command=sh&command=-c&command=echo+via-proxy%3B+exit+5&stdout=1")
        out, error = b"", b""
        async with aiohttp.ClientSession() as s, \
                s.ws_connect(url, ssl=ctx, protocols=["v5.channel.k8s.io"]) as ws:
            async for msg in ws:
                if msg.data[0] == 1:
                    out += msg.data[1:]
                elif msg.data[0] == 3:
                    error += msg.data[1:]
            return ws.protocol or "", out, json.loads(error)

    protocol, out, status = kubelet.run(session())
    assert protocol == "v5.channel.k8s.io"
    assert out == b"via-proxy\n"
    assert status["details"]["causes"] == [{"reason": "ExitCode", "message": "5"}]


def test_get_on_nodes_proxy_does_not_run_commands(server: Server, namespace: str, pod: str,
                                                  kubelet: KubeletThread, tmp_path: Path) -> None:
    """A monitoring account's `get nodes/proxy` reads the kubelet's stats,
    but a WebSocket to its exec asks for create, as a pod's exec does
    (upstream lets get through there, and warns about it)."""
    http = server.http()
    node = f"kl-{namespace}"[:60]
    role = f"proxy-reader-{namespace}"
    code, body = http.call("POST", "/apis/rbac.authorization.k8s.io/v1/clusterroles", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": role},
        "rules": [{"apiGroups": [""], "resources": ["nodes/proxy"], "verbs": ["get"]}]})
    assert code == 201, body
    code, body = http.call("POST", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": role},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [{"kind": "User", "name": "prometheus", "apiGroup": "rbac.authorization.k8s.io"}]})
    assert code == 201, body
    cert, key = issue_client_cert(PKI(server.data_dir / "tls"), "prometheus", [])
    (tmp_path / "p.crt").write_bytes(cert)
    (tmp_path / "p.key").write_bytes(key)
    ctx = ssl.create_default_context(cafile=str(server.data_dir / "tls" / "ca.crt"))
    ctx.load_cert_chain(tmp_path / "p.crt", tmp_path / "p.key")
    base = f"{server.url}/api/v1/nodes/{node}/proxy"

    async def attempt() -> tuple[str, int]:
        async with aiohttp.ClientSession() as s:
            async with s.get(f"{base}/healthz", ssl=ctx) as r:
                health = await r.text()
            with pytest.raises(aiohttp.WSServerHandshakeError) as e:
                await s.ws_connect(f"{base}/exec/{namespace}/{pod}/c?command=true&stdout=1",
                                   ssl=ctx, protocols=["v5.channel.k8s.io"])
            return health, e.value.status

    assert kubelet.run(attempt()) == ("ok", 403)


# -- attach ------------------------------------------------------------------------


def _kubectl_attach(server: Server, *args: str) -> subprocess.Popen[bytes]:
    env = {"KUBECONFIG": str(server.kubeconfig), "PATH": "/usr/bin:/bin"}
    return subprocess.Popen([KUBECTL, "attach", *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


def test_attach_stdin_and_output(server: Server, namespace: str, pod: str,
                                 conmon: Callable[[bool], FakeConmon]) -> None:
    running(server, namespace, pod)
    c = conmon(False)
    proc = _kubectl_attach(server, "-n", namespace, "-i", pod, "-c", "c")
    try:
        assert proc.stdin is not None
        c.connected()
        big = b"y" * 100_000  # many packets, none longer than conmon reads
        proc.stdin.write(b"hello\n" + big)
        proc.stdin.close()  # v5 tells the kubelet, which shuts its half down
        assert c.stdin_until_closed() == b"hello\n" + big
        c.send(STDOUT_PIPE, b"to stdout\n")
        c.send(STDERR_PIPE, b"to stderr\n")
        c.send(STDOUT_PIPE, b"more\n")
        time.sleep(0.2)
        c.hang_up()  # the container ended
        assert proc.stdout is not None and proc.stderr is not None
        watchdog = threading.Timer(20, proc.kill)
        watchdog.start()
        out, err = proc.stdout.read(), proc.stderr.read()
        watchdog.cancel()
        proc.wait(20)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, err
    assert out == b"to stdout\nmore\n"
    assert b"to stderr\n" in err


def test_attach_streams_output(server: Server, namespace: str, pod: str,
                               conmon: Callable[[bool], FakeConmon]) -> None:
    running(server, namespace, pod)
    c = conmon(False)
    proc = _kubectl_attach(server, "-n", namespace, pod)
    try:
        assert proc.stdout is not None
        c.connected()
        for i in range(3):
            c.send(STDOUT_PIPE, f"line {i}\n".encode())
            assert proc.stdout.readline() == f"line {i}\n".encode()
        proc.terminate()  # the user leaves; the container goes on
        assert c.stdin.get(timeout=20) is None
    finally:
        proc.kill()
        proc.wait()


def test_attach_terminal_and_resize(server: Server, namespace: str, pod: str,
                                    kubelet: KubeletThread,
                                    conmon: Callable[[bool], FakeConmon]) -> None:
    """A terminal session straight against the kubelet (kubectl needs a terminal for -t)."""
    c = conmon(True)

    async def session(query: str, protocol: str, leave: bool) -> tuple[bytes, bytes, bytes]:
        ctx = _admin_tls(server)
        url = f"https://127.0.0.1:{kubelet.kubelet.port}/attach/{namespace}/{pod}/c?{query}"
        out, err, error = b"", b"", b""
        async with aiohttp.ClientSession() as s, \
                s.ws_connect(url, ssl=ctx, protocols=[protocol]) as ws:
            assert ws.protocol == protocol
            # As kubectl attach: one cell larger first, so that the program redraws.
            await ws.send_bytes(b"\x04" + json.dumps({"Width": 101, "Height": 41}).encode())
            await ws.send_bytes(b"\x04" + json.dumps({"Width": 100, "Height": 40}).encode())
            await ws.send_bytes(b"\x00ls\r")
            async for msg in ws:
                channel, data = msg.data[0], msg.data[1:]
                out += data if channel == 1 else b""
                err += data if channel == 2 else b""
                error += data if channel == 3 else b""
                if leave and b"ls" in out:
                    break
        return out, err, error

    def conmon_side(leave: bool) -> None:
        c.connected()
        # One line per read: conmon 2.1 acts on the first line of a read only.
        assert c.ctl_lines.get(timeout=20) == "1 41 101\n"
        assert c.ctl_lines.get(timeout=20) == "1 40 100\n"
        assert c.stdin.get(timeout=20) == b"ls\r"
        c.send(STDERR_PIPE, b"what runc said before the terminal\n")
        c.send(STDOUT_PIPE, b"ls\r\nbin etc\r\n")
        if not leave:
            time.sleep(0.2)
            c.hang_up()

    # The container ends: the session ends with Success; a terminal has no stderr.
    helper = threading.Thread(target=conmon_side, args=(False,))
    helper.start()
    out, err, error = kubelet.run(session("stdin=1&stdout=1&stderr=1&tty=1",
                                          "v5.channel.k8s.io", leave=False))
    helper.join(20)
    assert out == b"ls\r\nbin etc\r\n" and err == b""
    assert json.loads(error) == {"metadata": {}, "status": "Success"}
    assert c.stdin.get(timeout=20) is None  # the fake's reader saw its own hang-up

    # The client leaves: conmon sees the connection end, the container goes on.
    helper = threading.Thread(target=conmon_side, args=(True,))
    helper.start()
    out, _, _ = kubelet.run(session("stdin=1&stdout=1&tty=1", "v4.channel.k8s.io", leave=True))
    helper.join(20)
    assert b"bin etc" in out
    assert c.stdin.get(timeout=20) is None


def test_attach_failures(server: Server, namespace: str, pod: str,
                         kubelet: KubeletThread) -> None:
    def status(container: str) -> dict[str, Any]:
        return kubelet.run(_stream_failure(
            server, kubelet, f"/attach/{namespace}/{pod}/{container}?stdout=1"))

    st = status("other")
    assert st["code"] == 404 and st["message"] == 'container "other" in pod "p" not found'
    st = status("c")  # no conmon listens
    assert st["code"] == 500 and st["reason"] == "InternalError"
    assert st["message"].startswith("Internal error occurred: error attaching to container: ")
    running(server, namespace, pod)
    k = server.kubectl
    gone = k("-n", namespace, "attach", pod, check=False, timeout=30)
    assert gone.returncode == 1 and "error attaching to container" in gone.stderr, gone.stderr


def test_unscheduled_pod(server: Server, namespace: str) -> None:
    make_pod(server, namespace, "q", None)
    k = server.kubectl
    assert k("-n", namespace, "logs", "q").stdout == ""  # as upstream: nothing yet
    bad = k("-n", namespace, "exec", "q", "--", "true", check=False)
    assert bad.returncode == 1
    assert "pod q does not have a host assigned" in bad.stderr


def test_simulated_and_unreachable_nodes(server: Server, namespace: str) -> None:
    make_node(server, f"sim-{namespace}"[:60], 10250, address="10.255.255.1",
              runtime_version="sim://1.0")
    make_pod(server, namespace, "s", f"sim-{namespace}"[:60])
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    make_node(server, f"gone-{namespace}"[:60], closed)
    make_pod(server, namespace, "g", f"gone-{namespace}"[:60])
    k = server.kubectl
    start = time.monotonic()
    logs = k("-n", namespace, "logs", "s", check=False)
    assert logs.returncode == 1
    assert "Error from server" in logs.stderr and "runs no kubelet" in logs.stderr
    ex = k("-n", namespace, "exec", "s", "--", "true", check=False)
    assert ex.returncode == 1 and "runs no kubelet" in ex.stderr
    assert time.monotonic() - start < 10
    logs = k("-n", namespace, "logs", "g", check=False)
    assert logs.returncode == 1
    assert f"dial tcp 127.0.0.1:{closed}: connect: connection refused" in logs.stderr
    ex = k("-n", namespace, "exec", "g", "--", "true", check=False)
    assert ex.returncode == 1 and "connection refused" in ex.stderr
    # nodes/NAME/proxy: upstream's proxy words for a backend it cannot reach.
    gone, sim = f"gone-{namespace}"[:60], f"sim-{namespace}"[:60]
    px = k("get", "--raw", f"/api/v1/nodes/{gone}/proxy/healthz", check=False)
    assert "Error from server (ServiceUnavailable): error trying to reach service: dial tcp " \
        f"127.0.0.1:{closed}: connect: connection refused" in px.stderr, px.stderr
    px = k("get", "--raw", f"/api/v1/nodes/{sim}/proxy/healthz", check=False)
    assert "(ServiceUnavailable)" in px.stderr and "runs no kubelet" in px.stderr, px.stderr


def test_kubelet_wants_a_client_certificate(server: Server, namespace: str, pod: str,
                                            kubelet: KubeletThread, tmp_path: Path) -> None:
    base = f"https://127.0.0.1:{kubelet.kubelet.port}"

    def get(path: str, cert: tuple[Path, Path] | None = None) -> tuple[int, str]:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        if cert:
            ctx.load_cert_chain(*cert)
        try:
            with urllib.request.urlopen(base + path, context=ctx, timeout=10) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    logs = f"/containerLogs/{namespace}/{pod}/c"
    assert get("/healthz") == (200, "ok")
    assert get(logs)[0] == 401
    bob = issue_client_cert(PKI(server.data_dir / "tls"), "bob", ["developers"])
    (tmp_path / "bob.crt").write_bytes(bob[0])
    (tmp_path / "bob.key").write_bytes(bob[1])
    code, text = get(logs, (tmp_path / "bob.crt", tmp_path / "bob.key"))
    assert code == 403 and "user=bob" in text
    tls = server.data_dir / "tls"
    assert get(logs, (tls / "admin.crt", tls / "admin.key")) == (200, "")
    client = (tls / "apiserver-kubelet-client.crt", tls / "apiserver-kubelet-client.key")
    if client[0].exists():  # made by the API server on its first call to a kubelet
        assert get("/stats/summary", client)[0] == 200


# -- port-forward ------------------------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        if self.path.startswith("/slow"):
            time.sleep(1.0)
        self._answer(f"hello from {self.path}".encode())

    def do_POST(self) -> None:
        self._answer(self.rfile.read(int(self.headers["Content-Length"])))

    def _answer(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def pod_server() -> Iterator[int]:
    """The pod's HTTP server: its port on 127.0.0.1."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1]
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)


def running(server: Server, ns: str, name: str) -> None:
    """kubectl port-forward wants the pod Running."""
    http_ = server.http()
    code, body = http_.call("GET", f"/api/v1/namespaces/{ns}/pods/{name}")
    assert code == 200, body
    body["status"] = {"phase": "Running", "podIP": "127.0.0.1"}
    code, body = http_.call("PUT", f"/api/v1/namespaces/{ns}/pods/{name}/status", body)
    assert code == 200, body


class PortForward:
    """`kubectl port-forward pod/NAME :PORT` in the background; ``local`` is the
    port kubectl listens on. Killed by ``close`` whatever happened."""

    def __init__(self, server: Server, ns: str, pod: str, port: int):
        env = {"KUBECONFIG": str(server.kubeconfig), "PATH": "/usr/bin:/bin"}
        self.proc = subprocess.Popen([KUBECTL, "-n", ns, "port-forward", f"pod/{pod}",
                                      f":{port}"], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env)
        self.lines: queue.Queue[str] = queue.Queue()
        self.stderr: list[str] = []
        assert self.proc.stdout is not None and self.proc.stderr is not None
        threading.Thread(target=self._read, args=(self.proc.stdout, self.lines.put),
                         daemon=True).start()
        self._stderr_reader = threading.Thread(
            target=self._read, args=(self.proc.stderr, self.stderr.append), daemon=True)
        self._stderr_reader.start()
        self.local = 0

    @staticmethod
    def _read(stream: Any, put: Callable[[str], None]) -> None:
        for line in stream:
            put(line)

    def ready(self, timeout: float = 30) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            m = re.match(r"Forwarding from 127\.0\.0\.1:(\d+) ->", line)
            if m:
                self.local = int(m.group(1))
                return self.local
        raise AssertionError(f"kubectl port-forward did not start: {''.join(self.stderr)}")

    def wait(self, timeout: float = 20) -> int:
        """kubectl's exit code, once all it wrote to stderr has been read: the
        process can be gone before the reader thread has taken the last lines."""
        rc = self.proc.wait(timeout)
        self._stderr_reader.join(timeout)
        return rc

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


def fetch(port: int, path: str, body: bytes | None = None, timeout: float = 20) -> bytes:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body,
                                 method="POST" if body is not None else "GET")
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return bytes(resp.read())


def test_port_forward(server: Server, namespace: str, pod: str, pod_server: int) -> None:
    running(server, namespace, pod)
    pf = PortForward(server, namespace, pod, pod_server)
    try:
        local = pf.ready()
        assert fetch(local, "/one") == b"hello from /one"
        assert fetch(local, "/two") == b"hello from /two"
        big = os.urandom(3 << 20)  # both ways, in many frames
        assert fetch(local, "/echo", big) == big
        # Two connections at once, each waiting a second for its answer.
        results: dict[str, bytes] = {}
        start = time.monotonic()
        threads = [threading.Thread(target=lambda p=p: results.__setitem__(p, fetch(local, p)))
                   for p in ("/slow/a", "/slow/b")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
        assert results == {"/slow/a": b"hello from /slow/a", "/slow/b": b"hello from /slow/b"}
        assert time.monotonic() - start < 1.9
        assert pf.proc.poll() is None, "".join(pf.stderr)
    finally:
        pf.close()


def test_port_forward_refused(server: Server, namespace: str, pod: str) -> None:
    running(server, namespace, pod)
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    pf = PortForward(server, namespace, pod, closed)
    try:
        local = pf.ready()
        with pytest.raises((urllib.error.URLError, ConnectionError, http.client.HTTPException)):
            fetch(local, "/")
        # kubectl reports the kubelet's words and gives the session up.
        assert pf.wait() == 1
        err = "".join(pf.stderr)
        assert f"error forwarding port {closed} to pod p, uid : failed to connect to " \
               f"localhost:{closed} inside namespace" in err, err
        assert f"IPv4: dial tcp4 127.0.0.1:{closed}: connect: connection refused" in err, err
        assert "lost connection to pod" in err, err
    finally:
        pf.close()


def test_port_forward_failures(server: Server, namespace: str, kubelet: KubeletThread) -> None:
    node = f"kl-{namespace}"[:60]
    make_node(server, node, kubelet.kubelet.port)
    make_pod(server, namespace, "ghost", node)  # the kubelet does not know it
    running(server, namespace, "ghost")
    sim = f"sim-{namespace}"[:60]
    make_node(server, sim, 10250, address="10.255.255.1", runtime_version="sim://1.0")
    make_pod(server, namespace, "s", sim)
    running(server, namespace, "s")
    k = server.kubectl
    ghost = k("-n", namespace, "port-forward", "pod/ghost", ":80", check=False, timeout=30)
    assert ghost.returncode == 1
    assert "ghost" in ghost.stderr and "not found" in ghost.stderr, ghost.stderr
    s = k("-n", namespace, "port-forward", "pod/s", ":80", check=False, timeout=30)
    assert s.returncode == 1 and "runs no kubelet" in s.stderr, s.stderr
