"""Shared fixtures: a real pinnace API server in a subprocess on a free
loopback port, and helpers that drive it with the real kubectl and the
official Python client."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest

KUBECTL = shutil.which("kubectl", path=os.path.dirname(sys.executable) + os.pathsep +
                       os.environ.get("PATH", "")) or "kubectl"


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
        env = dict(os.environ, KUBECONFIG=str(self.kubeconfig))
        env.pop("KUBERNETES_SERVICE_HOST", None)
        proc = subprocess.run([KUBECTL, *args], input=input, capture_output=True, text=True,
                              env=env, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({proc.returncode}):\n"
                                 f"stdout: {proc.stdout}\nstderr: {proc.stderr}")
        return proc

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def api_client(self):  # type: ignore[no-untyped-def]
        from kubernetes import client, config

        return config.new_client_from_config(str(self.kubeconfig))


def start_server(data_dir: Path, *extra: str, port: int = 0, timeout: float = 30) -> Server:
    data_dir.mkdir(parents=True, exist_ok=True)
    log = data_dir / f"server-{int(time.time() * 1000)}.log"
    logf = log.open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pinnace.cli.main", "apiserver", "--data-dir", str(data_dir),
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


@pytest.fixture
def sqlite_server(tmp_path: Path) -> Iterator[Server]:
    srv = start_server(tmp_path / "data")
    yield srv
    srv.stop()


_ns_counter = 0


@pytest.fixture
def namespace(server: Server, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace per test, so tests sharing a server never collide."""
    global _ns_counter
    _ns_counter += 1
    name = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:40].strip("-")
    name = f"{name}-{os.getpid() % 10000}-{_ns_counter}"
    server.kubectl("create", "-f", "-", input='{"apiVersion":"v1","kind":"Namespace",'
                   f'"metadata":{{"name":"{name}"}}}}')
    yield name
