"""Shared fixtures: a real pinnace API server in a subprocess on a free
loopback port, and helpers that drive it with the real kubectl and the
official Python client."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pinnace.testing.cluster import KUBECTL as KUBECTL  # re-exported for the tests
from pinnace.testing.cluster import run_kubectl

# pinnace.testing's own tests run a user's project through pytester.
pytest_plugins = ("pytester",)


@dataclass
class Server:
    proc: subprocess.Popen[str]
    data_dir: Path
    url: str
    kubeconfig: Path
    log: Path
    extra_args: list[str] = field(default_factory=list)

    def kubectl(self, *args: str, input: str | None = None, check: bool = True,
                timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return run_kubectl(self.kubeconfig, *args, input=input, check=check, timeout=timeout)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def http(self) -> "HTTP":
        return HTTP(self)

    def api_client(self):  # type: ignore[no-untyped-def]
        from kubernetes import config

        return config.new_client_from_config(str(self.kubeconfig))


class HTTP:
    """A tiny admin client over urllib (the test's own, so failures are ours to read)."""

    def __init__(self, server: "Server"):
        tls = server.data_dir / "tls"
        self.ctx = ssl.create_default_context(cafile=str(tls / "ca.crt"))
        self.ctx.load_cert_chain(str(tls / "admin.crt"), str(tls / "admin.key"))
        self.base = server.url

    def call(self, method: str, path: str, body: Any = None, ctype: str = "application/json",
             accept: str = "application/json") -> tuple[int, Any]:
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": ctype, "Accept": accept})
        try:
            with urllib.request.urlopen(req, context=self.ctx, timeout=30) as resp:
                raw = resp.read()
                return resp.status, json.loads(raw) if raw[:1] in (b"{", b"[") else raw
        except urllib.error.HTTPError as e:
            raw = e.read()
            return e.code, json.loads(raw) if raw[:1] == b"{" else raw

    def stream(self, path: str, max_events: int) -> list[dict[str, Any]]:
        req = urllib.request.Request(self.base + path)
        out = []
        with urllib.request.urlopen(req, context=self.ctx, timeout=30) as resp:
            for line in resp:
                out.append(json.loads(line))
                if len(out) >= max_events:
                    break
        return out



def start_server(data_dir: Path, *extra: str, port: int = 0, timeout: float = 30,
                 command: str = "apiserver", agent: bool = False) -> Server:
    """``command`` "apiserver" runs the API server alone; "server" runs the
    whole supervised control plane (API server, controller manager, ...),
    without the node agent it would start as root unless ``agent``."""
    data_dir.mkdir(parents=True, exist_ok=True)
    if command == "server" and not agent:
        extra = (*extra, "--disable-agent")
    if command == "server":
        # Test servers run side by side: their cluster DNS takes any free port.
        extra = ("--cluster-dns-port", "0", *extra)
    log = data_dir / f"server-{int(time.time() * 1000)}.log"
    logf = log.open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pinnace.cli.main", command, "--data-dir", str(data_dir),
         "--listen", f"127.0.0.1:{port}", *extra],
        stdout=subprocess.PIPE, stderr=logf, text=True, start_new_session=True)
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    url = ""
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        m = re.search(r"API server on (https://\S+)", line)
        if m:
            url = m.group(1)
            break
    if not url:
        proc.kill()
        proc.wait()
        raise AssertionError(f"server did not start:\n{log.read_text()}")
    # Keep draining stdout so the server never blocks on a full pipe.
    import threading

    threading.Thread(target=proc.stdout.read, daemon=True).start()
    return Server(proc, data_dir, url, data_dir / "kubeconfig.yaml", log, list(extra))


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One shared server per test worker (memory store: fast, isolated by namespace)."""
    srv = start_server(tmp_path_factory.mktemp("pinnace"), "--datastore", "memory")
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One whole control plane per test worker (`pinnace server`, memory store)."""
    srv = start_server(tmp_path_factory.mktemp("cluster"), "--datastore", "memory",
                       command="server")
    yield srv
    srv.stop()


def unix_request(path: Path, method: str, url: str, token: str | None = None,
                 body: dict | None = None, timeout: float = 10) -> tuple[int, dict]:
    """One HTTP/1.1 request over the Unix socket: (status, JSON body)."""
    data = json.dumps(body).encode() if body is not None else b""
    head = [f"{method} {url} HTTP/1.1", "Host: localhost", "Connection: close",
            "Accept: application/json", f"Content-Length: {len(data)}"]
    if body is not None:
        head.append("Content-Type: application/json")
    if token is not None:
        head.append(f"Authorization: Bearer {token}")
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(timeout)
        s.connect(str(path))
        s.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + data)
        raw = b""
        while chunk := s.recv(65536):
            raw += chunk
    headers, _, payload = raw.partition(b"\r\n\r\n")
    status = int(headers.split(b" ", 2)[1])
    if b"transfer-encoding: chunked" in headers.lower():
        decoded, rest = b"", payload
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line, 16)
            if size == 0:
                break
            decoded, rest = decoded + rest[:size], rest[size + 2:]
        payload = decoded
    return status, json.loads(payload) if payload.strip() else {}


def tcp_connections_to(port: int, pid: int | str = "self") -> int:
    """The established TCP connections process ``pid`` holds to ``port``."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    count = 0
    for table in (f"/proc/{pid}/net/tcp", f"/proc/{pid}/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if (fields[3] == "01" and int(fields[2].rsplit(":", 1)[1], 16) == port
                        and fields[9] in inodes):
                    count += 1
    return count


def wait_for(check: Any, timeout: float = 20, interval: float = 0.1, what: str = "") -> Any:
    """Poll ``check()`` until it returns something truthy (controllers are eventually
    consistent); fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or check}: last {last!r}")


@pytest.fixture
def sqlite_server(tmp_path: Path) -> Iterator[Server]:
    srv = start_server(tmp_path / "data")
    yield srv
    srv.stop()


_ns_counter = 0


def _new_namespace(server: Server, request: pytest.FixtureRequest) -> str:
    global _ns_counter
    _ns_counter += 1
    name = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:40].strip("-")
    name = f"{name}-{os.getpid() % 10000}-{_ns_counter}"
    server.kubectl("create", "namespace", name)
    return name


@pytest.fixture
def namespace(server: Server, request: pytest.FixtureRequest) -> str:
    """A fresh namespace per test, so tests sharing a server never collide."""
    return _new_namespace(server, request)


@pytest.fixture
def cluster_ns(cluster: Server, request: pytest.FixtureRequest) -> str:
    """A fresh namespace on the shared whole-cluster server."""
    return _new_namespace(cluster, request)


ETCD_BIN = "/usr/bin/etcd"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_listening(proc: subprocess.Popen[bytes], port: int, log_path: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            with open(log_path) as f:
                raise RuntimeError(f"etcd exited with {proc.returncode}:\n{f.read()[-4000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("etcd did not start listening within 30 s")


@pytest.fixture(scope="session")
def etcd_endpoint() -> Iterator[str]:
    """host:port of a single-member etcd started for this session."""
    if not os.path.exists(ETCD_BIN):
        message = f"{ETCD_BIN} is not installed"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (required in CI)")
        pytest.skip(message)
    workdir = tempfile.mkdtemp(prefix="pinnace-etcd-")
    client, peer = _free_port(), _free_port()
    log_path = os.path.join(workdir, "etcd.log")
    peer_url, client_url = f"http://127.0.0.1:{peer}", f"http://127.0.0.1:{client}"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                ETCD_BIN,
                "--name",
                "pinnace-test",
                "--data-dir",
                os.path.join(workdir, "data"),
                "--listen-client-urls",
                client_url,
                "--advertise-client-urls",
                client_url,
                "--listen-peer-urls",
                peer_url,
                "--initial-advertise-peer-urls",
                peer_url,
                "--initial-cluster",
                f"pinnace-test={peer_url}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_listening(proc, client, log_path)
        yield f"127.0.0.1:{client}"
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)
