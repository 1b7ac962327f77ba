"""Secrets encrypted at rest, seen from outside: what kubectl and the
official client get back, and what the SQLite file holds when opened
directly (docs/security.md)."""

from __future__ import annotations

import base64
import os
import re
import sqlite3
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import Server, start_server

ENC_HEADER = {"apiVersion": "apiserver.config.k8s.io/v1", "kind": "EncryptionConfiguration"}


def secret_rows(data_dir: Path, ns: str, name: str) -> list[bytes]:
    """Every stored version of a Secret, oldest first, straight from the file."""
    db = sqlite3.connect(f"file:{data_dir / 'state.db'}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT value FROM kv WHERE name = ? ORDER BY id",
                          (f"/registry/core/secrets/{ns}/{name}",)).fetchall()
    finally:
        db.close()
    return [bytes(r[0]) for r in rows]


def file_bytes(data_dir: Path) -> bytes:
    """The database as it lies on disk, write-ahead log included."""
    return b"".join(p.read_bytes() for p in (data_dir / "state.db", data_dir / "state.db-wal")
                    if p.exists())


def enc_config(path: Path, *providers: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump({**ENC_HEADER, "resources": [
        {"resources": ["secrets"], "providers": list(providers)}]}))
    return path


def default_key(data_dir: Path) -> dict[str, Any]:
    doc = yaml.safe_load((data_dir / "encryption-config.yaml").read_text())
    return doc["resources"][0]["providers"][0]  # type: ignore[no-any-return]


def new_key(kind: str, name: str) -> dict[str, Any]:
    return {kind: {"keys": [{"name": name,
                             "secret": base64.b64encode(os.urandom(32)).decode()}]}}


def pinnace(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    return subprocess.run([sys.executable, "-m", "pinnace.cli.main", *args], env=env,
                          capture_output=True, text=True, timeout=120)


def reveal(srv: Server, ns: str, name: str, field: str) -> str:
    out = srv.kubectl("get", "secret", name, "-n", ns, "-o", f"jsonpath={{.data.{field}}}")
    return base64.b64decode(out.stdout).decode()


def test_a_secret_is_encrypted_in_the_file_and_plain_to_every_client(tmp_path: Path) -> None:
    from kubernetes import client, watch

    data = tmp_path / "data"
    srv = start_server(data)
    try:
        password = f"correct-horse-{uuid.uuid4().hex}"
        srv.kubectl("create", "namespace", "enc")
        srv.kubectl("create", "secret", "generic", "db", "-n", "enc",
                    f"--from-literal=password={password}")
        # A ConfigMap is stored as it is: the scan below does see what is in clear.
        canary = f"canary-{uuid.uuid4().hex}"
        srv.kubectl("create", "configmap", "plain", "-n", "enc", f"--from-literal=p={canary}",
                    f"--from-literal=b={base64.b64encode(canary.encode()).decode()}")

        assert (data / "encryption-config.yaml").stat().st_mode & 0o777 == 0o600
        rows = secret_rows(data, "enc", "db")
        assert rows and all(r.startswith(b"k8s:enc:aescbc:v1:key1:") for r in rows)
        on_disk = file_bytes(data)
        assert canary.encode() in on_disk and base64.b64encode(canary.encode()) in on_disk
        for clear in (password.encode(), base64.b64encode(password.encode())):
            assert not any(clear in r for r in rows)
            assert clear not in on_disk

        v1: Any = client.CoreV1Api(srv.api_client())  # its models type every field Optional
        got = v1.read_namespaced_secret("db", "enc")
        assert base64.b64decode(got.data["password"]).decode() == password
        listed = v1.list_namespaced_secret("enc")
        assert [base64.b64decode(s.data["password"]).decode() for s in listed.items
                if s.metadata.name == "db"] == [password]
        assert reveal(srv, "enc", "db", "password") == password

        # A watch from the list's revision sees a new Secret as it is written.
        seen: list[Any] = []

        def follow() -> None:
            w = watch.Watch()
            for ev in w.stream(v1.list_namespaced_secret, "enc",
                               resource_version=listed.metadata.resource_version,
                               timeout_seconds=20):
                seen.append(ev)
                w.stop()

        t = threading.Thread(target=follow)
        t.start()
        srv.kubectl("create", "secret", "generic", "later", "-n", "enc",
                    f"--from-literal=token={password}-2")
        t.join(30)
        assert [(e["type"], e["object"].metadata.name) for e in seen] == [("ADDED", "later")]
        assert base64.b64decode(seen[0]["object"].data["token"]).decode() == f"{password}-2"
        assert secret_rows(data, "enc", "later")[0].startswith(b"k8s:enc:aescbc:v1:key1:")
    finally:
        srv.stop()


def test_rotation_then_reencrypt_moves_every_secret_to_the_new_key(tmp_path: Path) -> None:
    data = tmp_path / "data"
    srv = start_server(data)
    try:
        srv.kubectl("create", "namespace", "rot")
        for i in range(5):
            srv.kubectl("create", "secret", "generic", f"s{i}", "-n", "rot",
                        f"--from-literal=v=value-{i}")
    finally:
        srv.stop()
    old = default_key(data)
    rotated = enc_config(tmp_path / "rotated.yaml", new_key("aesgcm", "key2"), old,
                         {"identity": {}})
    srv = start_server(data, "--encryption-provider-config", str(rotated))
    try:
        assert reveal(srv, "rot", "s3", "v") == "value-3"  # old key still reads
        srv.kubectl("create", "secret", "generic", "fresh", "-n", "rot", "--from-literal=v=new")
        assert secret_rows(data, "rot", "fresh")[-1].startswith(b"k8s:enc:aesgcm:v1:key2:")
        assert secret_rows(data, "rot", "s3")[-1].startswith(b"k8s:enc:aescbc:v1:key1:")

        first = pinnace("secrets", "reencrypt", "--data-dir", str(data))
        assert first.returncode == 0, first.stderr
        m = re.search(r"^(\d+) secrets: (\d+) re-encrypted, (\d+) already under the current "
                      r"key, 0 deleted meanwhile, 0 failed", first.stdout, re.M)
        assert m, first.stdout
        total, rewritten, current = map(int, m.groups())
        assert total >= 6 and rewritten >= 5 and rewritten + current == total
        assert "re-encrypting secrets:" in first.stderr  # the progress display
        for i in range(5):
            assert secret_rows(data, "rot", f"s{i}")[-1].startswith(b"k8s:enc:aesgcm:v1:key2:")
            assert reveal(srv, "rot", f"s{i}", "v") == f"value-{i}"
        again = pinnace("secrets", "reencrypt", "--kubeconfig", str(srv.kubeconfig))
        assert again.returncode == 0 and " 0 re-encrypted" in again.stdout, again.stdout
    finally:
        srv.stop()
    # The old key and identity can go now: nothing needs them any more.
    only_new = enc_config(tmp_path / "only-new.yaml",
                          yaml.safe_load(rotated.read_text())["resources"][0]["providers"][0])
    srv = start_server(data, "--encryption-provider-config", str(only_new))
    try:
        names = srv.kubectl("get", "secrets", "-A", "-o", "name").stdout.split()
        assert {f"secret/s{i}" for i in range(5)} | {"secret/fresh"} <= set(names)
        assert reveal(srv, "rot", "s0", "v") == "value-0"
    finally:
        srv.stop()


def test_plain_secrets_from_before_encryption_stay_readable(tmp_path: Path) -> None:
    data = tmp_path / "data"
    # A data dir from before encryption: everything stored as it is.
    plain = enc_config(tmp_path / "identity.yaml", {"identity": {}})
    srv = start_server(data, "--encryption-provider-config", str(plain))
    try:
        srv.kubectl("create", "namespace", "old")
        srv.kubectl("create", "secret", "generic", "legacy", "-n", "old",
                    "--from-literal=v=stored-in-clear")
    finally:
        srv.stop()
    assert secret_rows(data, "old", "legacy")[-1].startswith(b"{")
    assert not (data / "encryption-config.yaml").exists()

    # Without identity in the list, plain data is refused, and the error says why.
    strict = enc_config(tmp_path / "strict.yaml", new_key("aescbc", "k"))
    srv = start_server(data, "--encryption-provider-config", str(strict))
    try:
        got = srv.kubectl("get", "secret", "legacy", "-n", "old", check=False)
        assert got.returncode != 0
        assert "no matching prefix found" in got.stderr and "identity" in got.stderr
    finally:
        srv.stop()

    # The default config (written now) encrypts new Secrets and still reads the old one.
    srv = start_server(data)
    try:
        assert (data / "encryption-config.yaml").exists()
        assert reveal(srv, "old", "legacy", "v") == "stored-in-clear"
        srv.kubectl("create", "secret", "generic", "new", "-n", "old", "--from-literal=v=x")
        assert secret_rows(data, "old", "new")[-1].startswith(b"k8s:enc:aescbc:v1:key1:")
        done = pinnace("secrets", "reencrypt", "--data-dir", str(data))
        assert done.returncode == 0, done.stderr
        assert secret_rows(data, "old", "legacy")[-1].startswith(b"k8s:enc:aescbc:v1:key1:")
        assert reveal(srv, "old", "legacy", "v") == "stored-in-clear"
    finally:
        srv.stop()


def test_workers_share_the_data_dirs_key(tmp_path: Path) -> None:
    data = tmp_path / "data"
    srv = start_server(data, "--workers", "2")
    try:
        srv.kubectl("create", "namespace", "w")
        for i in range(6):  # separate connections: both workers write some
            srv.kubectl("create", "secret", "generic", f"s{i}", "-n", "w",
                        f"--from-literal=v=secret-{i}")
        for i in range(6):
            assert secret_rows(data, "w", f"s{i}")[-1].startswith(b"k8s:enc:aescbc:v1:key1:")
            assert reveal(srv, "w", f"s{i}", "v") == f"secret-{i}"
    finally:
        srv.stop()


@pytest.mark.parametrize("command", ["apiserver", "server"])
def test_a_bad_config_stops_the_start_with_one_line(tmp_path: Path, command: str) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**ENC_HEADER, "resources": [{
        "resources": ["secrets"],
        "providers": [{"aescbc": {"keys": [{"name": "k", "secret":
                                            base64.b64encode(b"short").decode()}]}},
                      {"rot13": {}}]}]}))
    out = pinnace(command, "--data-dir", str(tmp_path / "data"), "--listen", "127.0.0.1:0",
                  "--encryption-provider-config", str(bad))
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert "secret is not of the expected length, got 5" in out.stderr
    assert "unknown provider 'rot13'" in out.stderr
    assert str(bad) in out.stderr
