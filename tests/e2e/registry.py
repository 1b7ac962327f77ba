"""A throwaway OCI registry for tests: Debian's `docker-registry` (distribution 2.8) on a
free loopback port, storing in a temp dir, optionally behind htpasswd basic auth, and a
small pusher that uploads an OCI layout's blobs and manifests into it (monolithic
uploads: POST, then PUT ?digest=)."""

from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REGISTRY_BIN = shutil.which("docker-registry")


@dataclass
class Registry:
    host: str                      # "127.0.0.1:PORT", as image references name it
    auth: tuple[str, str] | None   # basic credentials, when started with them
    log: Path

    @property
    def url(self) -> str:
        return f"http://{self.host}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def run_registry(workdir: Path, htpasswd_line: str | None = None,
                 auth: tuple[str, str] | None = None) -> Iterator[Registry]:
    """Start a registry; it is always killed when the block ends."""
    assert REGISTRY_BIN, "docker-registry not installed"
    workdir.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    config = [
        "version: 0.1",
        "log: {level: warn}",
        f"storage: {{filesystem: {{rootdirectory: {workdir / 'data'}}}, delete: {{enabled: true}}}}",
        f"http: {{addr: '127.0.0.1:{port}', secret: pinnace-test}}",
    ]
    if htpasswd_line:
        (workdir / "htpasswd").write_text(htpasswd_line + "\n")
        config.append(f"auth: {{htpasswd: {{realm: pinnace-test, path: {workdir / 'htpasswd'}}}}}")
    (workdir / "config.yml").write_text("\n".join(config) + "\n")
    log = workdir / "registry.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([REGISTRY_BIN, "serve", str(workdir / "config.yml")], stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        reg = Registry(f"127.0.0.1:{port}", auth, log)
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"{reg.url}/v2/", timeout=2).close()
                break
            except urllib.error.HTTPError as e:
                if e.code == 401:
                    break
                raise
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"docker-registry did not start:\n{log.read_text()}") from None
                time.sleep(0.05)
        yield reg
    finally:
        proc.kill()
        proc.wait()


def _request(reg: Registry, method: str, url: str, data: bytes | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url if url.startswith("http") else reg.url + url, data=data,
                                 method=method, headers=dict(headers or {}))
    if reg.auth:
        token = base64.b64encode(f"{reg.auth[0]}:{reg.auth[1]}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def push_blob(reg: Registry, repo: str, digest: str, data: bytes) -> None:
    status, _, _ = _request(reg, "HEAD", f"/v2/{repo}/blobs/{digest}")
    if status == 200:
        return
    status, headers, body = _request(reg, "POST", f"/v2/{repo}/blobs/uploads/")
    assert status == 202, (status, body)
    location = headers["Location"]
    sep = "&" if "?" in location else "?"
    status, _, body = _request(reg, "PUT", f"{location}{sep}digest={digest}", data,
                               {"Content-Type": "application/octet-stream"})
    assert status == 201, (status, body)


def push_manifest(reg: Registry, repo: str, ref: str, data: bytes, media_type: str) -> None:
    status, _, body = _request(reg, "PUT", f"/v2/{repo}/manifests/{ref}", data, {"Content-Type": media_type})
    assert status == 201, (status, body)


def push_oci_archive(reg: Registry, archive: Path, repo: str, tag: str) -> str:
    """Push the (single-platform) image of an oci-archive as repo:tag; returns the manifest digest."""
    with tarfile.open(archive) as tar:
        def read(name: str) -> bytes:
            f = tar.extractfile(name.lstrip("/")) or tar.extractfile("./" + name)
            assert f is not None
            return f.read()

        index = json.loads(read("index.json"))
        desc = index["manifests"][0]
        manifest = read("blobs/sha256/" + desc["digest"][7:])
        doc = json.loads(manifest)
        for blob in [doc["config"], *doc["layers"]]:
            push_blob(reg, repo, blob["digest"], read("blobs/sha256/" + blob["digest"][7:]))
    push_manifest(reg, repo, tag, manifest, desc.get("mediaType") or doc["mediaType"])
    return str(desc["digest"])
