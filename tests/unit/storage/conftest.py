"""Fixtures: one `store` per backend (memory, sqlite, etcd) for the contract suite.

etcd runs as a real server, once per test session, on free loopback ports
with its data in a temporary directory; each test's EtcdStore gets its own
key namespace so tests do not see each other's keys.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from pinnace.storage.interface import Store

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


@pytest.fixture(params=["memory", "sqlite", "etcd"])
async def store(request: pytest.FixtureRequest, tmp_path: object) -> AsyncIterator[Store]:
    """A started, empty Store of each backend."""
    s: Store
    if request.param == "memory":
        from pinnace.storage.memory import MemoryStore

        s = MemoryStore()
    elif request.param == "sqlite":
        from pinnace.storage.sqlite import SQLiteStore

        s = SQLiteStore(os.path.join(str(tmp_path), "state.db"), compact_interval=0)
    else:
        from pinnace.storage.etcd import EtcdStore

        endpoint = request.getfixturevalue("etcd_endpoint")
        s = EtcdStore([endpoint], namespace=f"/test-{uuid.uuid4().hex}")
    await s.start()
    try:
        yield s
    finally:
        await s.close()
