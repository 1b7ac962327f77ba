"""Pulling from a real registry: Debian's docker-registry on loopback, holding the
busybox image scripts/test-image.sh builds, pulled through ImageStore and through
`pinnace image pull`, plain and behind htpasswd basic auth."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from pinnace.kubelet.images import HOST_PLATFORM, ImageError, ImageStore, credentials_for, image_root
from tests.e2e.registry import REGISTRY_BIN, Registry, push_manifest, push_oci_archive, run_registry

pytestmark = pytest.mark.xdist_group("node")

REPO = Path(__file__).resolve().parents[2]


def _require() -> None:
    why = ""
    if os.geteuid() != 0:
        why = "needs root (layers keep their owners and overlayfs whiteouts are devices)"
    elif not REGISTRY_BIN:
        why = "needs docker-registry (apt-get install docker-registry)"
    elif not shutil.which("umoci"):
        why = "needs umoci to build the test image (apt-get install umoci)"
    if why:
        if os.environ.get("CI") == "true":
            pytest.fail(why + " (required in CI)")
        pytest.skip(why)


@pytest.fixture(scope="module")
def image_archive() -> Path:
    _require()
    out = subprocess.run(["bash", str(REPO / "scripts/test-image.sh")], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    return Path(out.stdout.strip().splitlines()[-1])


@pytest.fixture
def registry(tmp_path: Path, image_archive: Path) -> Iterator[Registry]:
    with run_registry(tmp_path / "registry") as reg:
        push_oci_archive(reg, image_archive, "busybox", "1")
        yield reg


def _htpasswd(user: str, password: str) -> str | None:
    """A bcrypt htpasswd line (the only hash docker-registry accepts), if this Python can make one."""
    try:
        import bcrypt  # type: ignore[import-not-found]

        return f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt()).decode()}"
    except ImportError:
        pass
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt

            hashed = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH))
    except (ImportError, AttributeError):
        return None
    return f"{user}:{hashed}" if hashed and hashed.startswith("$2") else None


def pinnace_image(*args: str) -> subprocess.CompletedProcess[str]:
    """`pinnace image ...` as a user runs it (through the module, if main does not know `image` yet)."""
    from pinnace.cli.main import build_parser

    try:
        build_parser().parse_args(["image", "ls"])
        cmd = [sys.executable, "-m", "pinnace.cli.main", "image", *args]
    except SystemExit:
        cmd = [sys.executable, "-m", "pinnace.cli.image", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


async def test_pull_by_tag_and_digest(tmp_path: Path, registry: Registry) -> None:
    store = ImageStore(tmp_path / "store")
    ref = f"{registry.host}/busybox:1"
    image = await store.pull(ref)
    assert image.repo_tags == [ref]
    assert image.config["Cmd"] == ["sh"]
    assert "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" in image.config["Env"]
    [layer] = image.layers
    assert (layer / "bin/busybox").is_file() and os.access(layer / "bin/busybox", os.X_OK)
    assert os.readlink(layer / "bin/sh") == "busybox"
    assert (layer / "tmp").stat().st_mode & 0o1777 == 0o1777
    assert "nobody:x:65534:65534" in (layer / "etc/passwd").read_text()
    assert store.get("127.0.0.1:" + registry.host.split(":")[1] + "/busybox:1") == image

    [digest_ref] = image.repo_digests
    assert digest_ref.startswith(f"{registry.host}/busybox@sha256:")
    other = ImageStore(tmp_path / "other")
    by_digest = await other.pull(digest_ref)
    assert by_digest.id == image.id and by_digest.repo_tags == [] and by_digest.repo_digests == [digest_ref]


async def test_pull_missing_tag_and_repository(tmp_path: Path, registry: Registry) -> None:
    store = ImageStore(tmp_path / "store")
    for ref in (f"{registry.host}/busybox:nope", f"{registry.host}/nothere:1"):
        with pytest.raises(ImageError) as e:
            await store.pull(ref)
        assert f'failed to pull and unpack image "{ref}"' in str(e.value)
        assert "not found" in str(e.value)
    assert store.list() == []


async def test_pull_picks_the_platform_from_an_index(tmp_path: Path, registry: Registry) -> None:
    store = ImageStore(tmp_path / "store")
    plain = await store.pull(f"{registry.host}/busybox:1")
    [digest_ref] = plain.repo_digests
    manifest_digest = digest_ref.partition("@")[2]
    desc = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_digest,
            "size": len((store.blobs / manifest_digest[7:]).read_bytes())}
    other_arch = "s390x" if HOST_PLATFORM[1] != "s390x" else "amd64"
    index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                        "manifests": [{**desc, "platform": {"os": "linux", "architecture": other_arch}},
                                      {**desc, "platform": {"os": "linux", "architecture": HOST_PLATFORM[1]}}]
                        }).encode()
    push_manifest(registry, "busybox", "multi", index, "application/vnd.oci.image.index.v1+json")
    multi = await store.pull(f"{registry.host}/busybox:multi")
    assert multi.id == plain.id
    assert f"{registry.host}/busybox@sha256:{hashlib.sha256(index).hexdigest()}" in multi.repo_digests
    with pytest.raises(ImageError, match="no match for platform"):
        await store.pull(f"{registry.host}/busybox:multi", platform=("linux", "mips64le"))


def test_cli_pull_ls_rm(tmp_path: Path, registry: Registry) -> None:
    data = tmp_path / "data"
    ref = f"{registry.host}/busybox:1"
    out = pinnace_image("pull", "--data-dir", str(data), ref)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("Image is up to date for sha256:")
    assert " done" in out.stderr  # not a terminal: one line per layer
    image = ImageStore(image_root(data)).get(ref)
    assert image is not None and (image.layers[0] / "bin/busybox").is_file()

    out = pinnace_image("ls", "--data-dir", str(data))
    assert out.returncode == 0, out.stderr
    header, row = out.stdout.splitlines()
    assert header.split() == ["IMAGE", "TAG", "IMAGE", "ID", "SIZE"]
    assert row.split()[:3] == [f"{registry.host}/busybox", "1", image.id[7:19]]

    out = pinnace_image("pull", "--data-dir", str(data), f"{registry.host}/busybox:nope")
    assert out.returncode == 1 and "not found" in out.stderr and f"{registry.host}/busybox:nope" in out.stderr

    out = pinnace_image("rm", "--data-dir", str(data), ref)
    assert out.returncode == 0, out.stderr
    assert pinnace_image("ls", "--data-dir", str(data)).stdout.splitlines()[1:] == []


async def test_pull_with_basic_auth(tmp_path: Path, image_archive: Path) -> None:
    line = _htpasswd("bob", "s3cret")
    if line is None:
        pytest.skip("no bcrypt for an htpasswd file (pip install bcrypt)")
    with run_registry(tmp_path / "registry", htpasswd_line=line, auth=("bob", "s3cret")) as reg:
        push_oci_archive(reg, image_archive, "private/busybox", "1")
        store = ImageStore(tmp_path / "store")
        ref = f"{reg.host}/private/busybox:1"
        with pytest.raises(ImageError) as e:
            await store.pull(ref)
        assert "pull access denied" in str(e.value) and ref in str(e.value)
        with pytest.raises(ImageError, match="pull access denied"):
            await store.pull(ref, auth={"username": "bob", "password": "wrong"})

        secret = {"auths": {reg.host: {"username": "bob", "password": "s3cret"}}}
        image = await store.pull(ref, auth=credentials_for(ref, [secret]))
        assert (image.layers[0] / "bin/busybox").is_file()

