"""The image store: layers unpacked safely in overlayfs form, archives imported, images
found, untagged, removed and garbage collected, and a pull through token auth and a
manifest list against a fake registry served on loopback."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import stat
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from pinnace.kubelet.images import (
    HOST_PLATFORM,
    ImageError,
    ImageStore,
    choose_platform,
    credentials_for,
    image_root,
    parse_reference,
    unpack_layer,
)

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="whiteouts, opaque xattrs and ownership need root")


# --- building blocks -----------------------------------------------------------------------------------

def entry(name: str, kind: str = "file", data: bytes = b"", *, mode: int | None = None, link: str = "",
          uid: int = 0, gid: int = 0, pax: dict[str, str] | None = None) -> tuple[tarfile.TarInfo, bytes]:
    ti = tarfile.TarInfo(name)
    ti.type = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "sym": tarfile.SYMTYPE,
               "hard": tarfile.LNKTYPE, "fifo": tarfile.FIFOTYPE}[kind]
    ti.mode = mode if mode is not None else (0o755 if kind == "dir" else 0o644)
    ti.linkname, ti.uid, ti.gid, ti.mtime = link, uid, gid, 1_700_000_000
    ti.size = len(data) if kind == "file" else 0
    if pax:
        ti.pax_headers = pax
    return ti, data


def make_tar(*entries: tuple[tarfile.TarInfo, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for ti, data in entries:
            tar.addfile(ti, io.BytesIO(data) if ti.isreg() else None)
    return buf.getvalue()


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def unpack(tmp_path: Path, data: bytes, name: str = "layer") -> Path:
    dest = tmp_path / name
    dest.mkdir()
    assert unpack_layer(io.BytesIO(data), dest) == sha(gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data)
    return dest


# --- layers --------------------------------------------------------------------------------------------

def test_unpack_files_dirs_links_and_modes(tmp_path: Path) -> None:
    layer = make_tar(entry("bin/", "dir"), entry("bin/tool", data=b"#!/bin/sh\n", mode=0o4755),
                     entry("bin/sh", "sym", link="tool"), entry("bin/tool2", "hard", link="bin/tool"),
                     entry("etc/secret", data=b"x", mode=0o600, uid=65534, gid=65534),
                     entry("locked/", "dir", mode=0o500), entry("locked/inside", data=b"y"),
                     entry("run/fifo", "fifo"))
    root = unpack(tmp_path, layer)
    assert (root / "bin/tool").read_bytes() == b"#!/bin/sh\n"
    assert stat.S_IMODE((root / "bin/tool").stat().st_mode) == 0o4755
    assert os.readlink(root / "bin/sh") == "tool"
    assert (root / "bin/tool2").stat().st_ino == (root / "bin/tool").stat().st_ino
    assert stat.S_IMODE((root / "locked").stat().st_mode) == 0o500
    assert (root / "locked/inside").read_bytes() == b"y"
    assert stat.S_ISFIFO((root / "run/fifo").lstat().st_mode)
    assert (root / "etc").is_dir()  # implied parents are made
    assert (root / "bin").stat().st_mtime == 1_700_000_000
    if ROOT:
        st = (root / "etc/secret").stat()
        assert (st.st_uid, st.st_gid) == (65534, 65534)


def test_unpack_gzip_and_zstd(tmp_path: Path) -> None:
    layer = make_tar(entry("a", data=b"hello"))
    assert (unpack(tmp_path, gzip.compress(layer), "gz") / "a").read_bytes() == b"hello"
    zstandard = pytest.importorskip("zstandard")
    dest = tmp_path / "zst"
    dest.mkdir()
    assert unpack_layer(io.BytesIO(zstandard.ZstdCompressor().compress(layer)), dest) == sha(layer)
    assert (dest / "a").read_bytes() == b"hello"


@needs_root
def test_whiteouts_become_overlayfs_devices_and_opaque_dirs(tmp_path: Path) -> None:
    layer = make_tar(entry("etc/", "dir"), entry("etc/.wh.passwd"), entry("var/lib/", "dir"),
                     entry("var/lib/.wh..wh..opq"), entry("var/lib/new", data=b"n"),
                     entry("x/.wh..wh.plnk"))
    root = unpack(tmp_path, layer)
    st = (root / "etc/passwd").lstat()
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(0, 0)
    assert os.getxattr(root / "var/lib", "trusted.overlay.opaque") == b"y"
    assert (root / "var/lib/new").read_bytes() == b"n"
    assert not (root / "var/lib/.wh..wh..opq").exists()
    assert os.listdir(root / "x") == []


def test_paths_never_escape_the_layer(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    layer = make_tar(
        entry("../../escape1", data=b"1"),
        entry("/abs/escape2", data=b"2"),
        entry("toroot", "sym", link="/"),
        entry("toroot/escape3", data=b"3"),                       # through a symlink to "/"
        entry("up", "sym", link="../../../../../outside"),
        entry("up/escape4", data=b"4"),                           # through a symlink climbing out
        entry("abs", "sym", link=str(outside)),
        entry("abs/escape5", data=b"5"),                          # through an absolute host path
        entry("a/b/../../../escape6", data=b"6"),
    )
    root = unpack(tmp_path, layer)
    assert os.listdir(outside) == []
    assert not (tmp_path / "escape1").exists()
    assert (root / "escape1").read_bytes() == b"1"
    assert (root / "abs").is_symlink()  # the entry itself stays a symlink: never followed
    assert (root / "escape3").read_bytes() == b"3"
    assert (root / "outside/escape4").read_bytes() == b"4"
    assert (root / outside.relative_to("/") / "escape5").read_bytes() == b"5"
    assert (root / "escape6").read_bytes() == b"6"


def test_hardlink_outside_the_layer_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("host")
    layer = make_tar(entry("steal", "hard", link=f"../../../../{secret}"))
    dest = tmp_path / "layer"
    dest.mkdir()
    with pytest.raises(ImageError):
        unpack_layer(io.BytesIO(layer), dest)
    assert secret.stat().st_nlink == 1


def test_entries_replace_what_an_earlier_entry_made(tmp_path: Path) -> None:
    layer = make_tar(entry("d/", "dir"), entry("d/f", data=b"old"), entry("d", data=b"now a file"),
                     entry("l", "sym", link="/etc"), entry("l/", "dir"), entry("f", data=b"1"),
                     entry("f", data=b"2"))
    root = unpack(tmp_path, layer)
    assert (root / "d").read_bytes() == b"now a file"
    assert (root / "l").is_dir() and not (root / "l").is_symlink()
    assert (root / "f").read_bytes() == b"2"


def test_a_file_in_the_way_of_a_directory_is_an_error(tmp_path: Path) -> None:
    dest = tmp_path / "layer"
    dest.mkdir()
    with pytest.raises(ImageError, match="not a directory"):
        unpack_layer(io.BytesIO(make_tar(entry("f", data=b"x"), entry("f/g", data=b"y"))), dest)


def test_corrupt_layer_is_an_image_error(tmp_path: Path) -> None:
    dest = tmp_path / "layer"
    dest.mkdir()
    with pytest.raises(ImageError):
        unpack_layer(io.BytesIO(gzip.compress(make_tar(entry("a", data=os.urandom(5000))))[:3000]), dest)


# --- archives ------------------------------------------------------------------------------------------

def image_parts(files: dict[str, bytes], cmd: str = "sh") -> tuple[bytes, bytes, str]:
    """One layer holding `files`, its gzip blob and a config naming it."""
    layer = make_tar(*(entry(n, data=d) for n, d in files.items()))
    config = json.dumps({"architecture": HOST_PLATFORM[1], "os": "linux",
                         "config": {"Cmd": [cmd], "Env": ["PATH=/bin"]},
                         "rootfs": {"type": "layers", "diff_ids": [sha(layer)]}}).encode()
    return layer, config, sha(layer)


def docker_archive(path: Path, images: list[tuple[list[str], dict[str, bytes]]]) -> Path:
    """A `docker save` tarball: manifest.json, <id>.json configs, <n>/layer.tar."""
    manifest = []
    with tarfile.open(path, "w") as tar:
        def add(name: str, data: bytes) -> None:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tar.addfile(ti, io.BytesIO(data))

        for n, (tags, files) in enumerate(images):
            layer, config, _ = image_parts(files)
            add(f"{n}/layer.tar", layer)
            add(f"{sha(config)[7:]}.json", config)
            manifest.append({"Config": f"{sha(config)[7:]}.json", "RepoTags": tags, "Layers": [f"{n}/layer.tar"]})
        add("manifest.json", json.dumps(manifest).encode())
    return path


def oci_layout(dest: Path, files: dict[str, bytes], name: str, *, multi: bool = False) -> dict[str, Any]:
    """An OCI image layout directory; with `multi`, the image sits behind an index with another platform."""
    blobs = dest / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes) -> dict[str, Any]:
        (blobs / sha(data)[7:]).write_bytes(data)
        return {"digest": sha(data), "size": len(data)}

    layer, config, diff_id = image_parts(files)
    gz = gzip.compress(layer)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **put(config)},
                           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                                       **put(gz)}]}).encode()
    top = {"mediaType": "application/vnd.oci.image.manifest.v1+json", **put(manifest)}
    if multi:
        other = {"os": "linux", "architecture": "s390x" if HOST_PLATFORM[1] != "s390x" else "amd64"}
        index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                            "manifests": [{**top, "digest": sha(b"nope"), "platform": other},
                                          {**top, "platform": {"os": "linux", "architecture": HOST_PLATFORM[1]}},
                                          {**top, "platform": {"os": "unknown", "architecture": "unknown"}}]}
                           ).encode()
        top = {"mediaType": "application/vnd.oci.image.index.v1+json", **put(index)}
    (dest / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (dest / "index.json").write_text(json.dumps(
        {"schemaVersion": 2, "manifests": [{**top, "annotations": {"org.opencontainers.image.ref.name": name}}]}))
    return {"top": top["digest"], "config": sha(config), "diff_id": diff_id, "layer": sha(gz)}


def tar_dir(src: Path, out: Path) -> Path:
    with tarfile.open(out, "w") as tar:
        for p in sorted(src.rglob("*")):
            tar.add(p, arcname="./" + str(p.relative_to(src)), recursive=False)
    return out


def test_import_docker_archive(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "store")
    events: list[tuple[int, int, str]] = []
    archive = docker_archive(tmp_path / "save.tar", [(["busybox:1", "example.com/team/app:2"], {"bin/sh": b"x"}),
                                                     (["other"], {"o": b"o"})])
    images = store.import_archive(archive, progress=lambda d, t, w: events.append((d, t, w)))
    assert [i.repo_tags for i in images] == [["docker.io/library/busybox:1", "example.com/team/app:2"],
                                             ["docker.io/library/other:latest"]]
    first = images[0]
    assert first.config == {"Cmd": ["sh"], "Env": ["PATH=/bin"]}
    assert (first.layers[0] / "bin/sh").read_bytes() == b"x"
    with tarfile.open(archive) as tar:
        assert first.size == tar.getmember("0/layer.tar").size
    assert sorted(d.partition("@")[0] for d in first.repo_digests) == ["docker.io/library/busybox",
                                                                         "example.com/team/app"]
    assert events[-1][2].endswith(" done") and events[-1][0] == events[-1][1]
    assert store.get("busybox:1") == first
    assert store.get("example.com/team/app:2") == first
    assert store.get(first.repo_digests[0]) == first
    assert store.get(first.id) == first and store.get(first.id[7:19]) == first
    assert store.get("busybox:2") is None
    # Importing again changes nothing.
    assert store.import_archive(archive)[0] == first
    assert len(store.list()) == 2


def test_import_oci_archive_and_layout_dir(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "store")
    info = oci_layout(tmp_path / "layout", {"hello": b"world"}, "localhost:5000/app:1", multi=True)
    [image] = store.import_archive(tar_dir(tmp_path / "layout", tmp_path / "oci.tar"))
    assert image.id == info["config"]
    assert image.repo_tags == ["localhost:5000/app:1"]
    assert image.repo_digests == [f"localhost:5000/app@{info['top']}"]
    assert image.layers[0].name == info["diff_id"][7:]
    assert (image.layers[0] / "hello").read_bytes() == b"world"
    other = ImageStore(tmp_path / "store2")
    [again] = other.import_archive(tmp_path / "layout")
    assert again.id == image.id and again.repo_tags == image.repo_tags


def test_oci_entry_named_by_a_bare_tag_stays_untagged(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "store")
    oci_layout(tmp_path / "layout", {"a": b"a"}, "latest")
    [image] = store.import_archive(tmp_path / "layout")
    assert image.repo_tags == [] and store.get(image.id) == image


def test_import_checks_digests(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "store")
    info = oci_layout(tmp_path / "layout", {"a": b"a"}, "x:1")
    blob = next(p for p in (tmp_path / "layout/blobs/sha256").iterdir() if p.read_bytes()[:2] == b"\x1f\x8b")
    blob.write_bytes(gzip.compress(make_tar(entry("a", data=b"evil"))))
    with pytest.raises(ImageError, match="does not match"):
        store.import_archive(tmp_path / "layout")
    assert store.list() == [] and not (store.layers / info["diff_id"][7:]).exists()
    assert list(store.tmp.iterdir()) == []


def test_import_rejects_what_is_not_an_image(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageError, match="neither"):
        ImageStore(tmp_path / "store").import_archive(tmp_path / "empty")


# --- the store -----------------------------------------------------------------------------------------

def test_tags_move_and_remove_untags_before_deleting(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "store")
    shared = {"shared": b"s"}
    [old] = store.import_archive(docker_archive(tmp_path / "a.tar", [(["app:1", "app:stable"], shared)]))
    [new] = store.import_archive(docker_archive(tmp_path / "b.tar", [(["app:1"], {**shared, "n": b"n"})]))
    assert store.get("app:1") == new
    assert store.get(old.id).repo_tags == ["docker.io/library/app:stable"]  # type: ignore[union-attr]

    assert store.remove("app:stable")  # its last tag: the image goes, its layer too
    assert store.get(old.id) is None and not old.layers[0].exists()
    assert new.layers[0].exists()
    assert not store.remove("app:stable")

    [both] = store.import_archive(docker_archive(tmp_path / "c.tar", [(["app:1", "app:2"], {**shared, "n": b"n"})]))
    assert both.id == new.id and store.remove("app:2")
    assert store.get("app:1") is not None and store.get("app:2") is None
    assert store.remove(new.id[7:19])
    assert store.list() == []
    assert list(store.layers.iterdir()) == [] and list(store.blobs.iterdir()) == []


def test_index_survives_a_new_store_and_image_root(tmp_path: Path) -> None:
    root = image_root(tmp_path)
    assert root == tmp_path / "agent" / "images"
    [image] = ImageStore(root).import_archive(docker_archive(tmp_path / "a.tar", [(["x:1"], {"f": b"f"})]))
    (root / "tmp" / "999999999.stale").mkdir()  # left by a process that died
    again = ImageStore(root)
    assert again.get("x:1") == image
    assert list(again.tmp.iterdir()) == []


def test_get_ignores_an_image_whose_layers_are_gone(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "store")
    [image] = store.import_archive(docker_archive(tmp_path / "a.tar", [(["x:1"], {"f": b"f"})]))
    os.rename(image.layers[0], tmp_path / "moved")
    assert store.get("x:1") is None


def test_garbage_collection_removes_least_recently_used_unused_images(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    store = ImageStore(tmp_path / "store")
    archive = docker_archive(tmp_path / "a.tar", [([f"img:{n}"], {"f": str(n).encode()}) for n in range(6)])
    images = {i.repo_tags[0].rpartition(":")[2]: i for i in store.import_archive(archive)}
    index = json.loads((store.root / "index.json").read_text())
    for n, i in images.items():
        index["images"][i.id]["last_used"] = 1000 + int(n) + (10 if n == "5" else 0)
    (store.root / "index.json").write_text(json.dumps(index))

    usage = {"used": 70}
    monkeypatch.setattr(store, "_fs_usage", lambda: (usage["used"], 100))
    assert store.collect_garbage(set()) == []  # below the high threshold

    real_remove = store.remove

    def remove(ref: str) -> bool:
        usage["used"] -= 5
        return real_remove(ref)

    monkeypatch.setattr(store, "remove", remove)
    usage["used"] = 92
    removed = store.collect_garbage({"img:0", images["2"].id})
    # 0 and 2 are in use; the others go least recently used first until use is below 80%.
    assert removed == [images["1"].id, images["3"].id, images["4"].id]
    assert usage["used"] == 77
    assert {i.repo_tags[0] for i in store.list()} == {f"docker.io/library/img:{n}" for n in (0, 2, 5)}


def test_disk_usage_counts_the_store(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "store")
    before = store.disk_usage()
    store.import_archive(docker_archive(tmp_path / "a.tar", [(["x:1"], {"big": b"x" * 200_000})]))
    assert store.disk_usage() - before >= 200_000


def test_parse_reference() -> None:
    r = parse_reference("busybox")
    assert (r.registry, r.repository, r.tag, r.digest) == ("docker.io", "library/busybox", "latest", None)
    r = parse_reference("localhost:5000/a/b:1")
    assert (r.registry, r.repository, r.tag) == ("localhost:5000", "a/b", "1")
    d = "sha256:" + "a" * 64
    assert str(parse_reference(f"127.0.0.1:5000/x:1@{d}")) == f"127.0.0.1:5000/x@{d}"
    for bad in ("", "UPPER/case", "a:b:c", "x@sha256:short"):
        with pytest.raises(ImageError) as e:
            parse_reference(bad)
        assert e.value.reason == "InvalidImageName"


def test_choose_platform() -> None:
    m = [{"digest": "amd", "platform": {"os": "linux", "architecture": "amd64"}},
         {"digest": "v6", "platform": {"os": "linux", "architecture": "arm", "variant": "v6"}},
         {"digest": "v7", "platform": {"os": "linux", "architecture": "arm", "variant": "v7"}},
         {"digest": "a64", "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
         {"digest": "att", "platform": {"os": "unknown", "architecture": "unknown"}}]
    pick = lambda *p: (choose_platform(m, p) or {}).get("digest")  # noqa: E731
    assert pick("linux", "amd64") == "amd"
    assert pick("linux", "arm", "v7") == "v7"
    assert pick("linux", "arm", "v6") == "v6"
    assert pick("linux", "arm64") == "a64"
    assert pick("linux", "s390x") is None
    assert pick("windows", "amd64") is None


def test_credentials_for() -> None:
    b64 = base64.b64encode(b"bob:secret").decode()
    configs = [{"auths": {"https://registry.example.com/v1/": {"auth": b64},
                          "registry.example.com/team": {"username": "team", "password": "t"},
                          "*.corp.example": {"username": "w", "password": "w"}}},
               {"localhost:5000": {"username": "old", "password": "style"}}]
    assert credentials_for("registry.example.com/app:1", configs) == {"auth": b64, "username": "bob",
                                                                      "password": "secret"}
    assert credentials_for("registry.example.com/team/app", configs)["username"] == "team"  # type: ignore[index]
    assert credentials_for("r.corp.example/x", configs)["username"] == "w"  # type: ignore[index]
    assert credentials_for("localhost:5000/x", configs)["username"] == "old"  # type: ignore[index]
    assert credentials_for("busybox", configs) is None
    assert credentials_for("localhost:5001/x", configs) is None


# --- pull against a fake registry ------------------------------------------------------------------------

class FakeRegistry:
    """Serves one repository behind Bearer token auth (the token costs basic credentials)."""

    def __init__(self, tmp_path: Path) -> None:
        self.layout = oci_layout(tmp_path / "layout", {"bin/app": b"app"}, "unused", multi=True)
        self.blobs = {"sha256:" + p.name: p.read_bytes() for p in (tmp_path / "layout/blobs/sha256").iterdir()}
        self.tags = {"1": self.layout["top"]}
        self.requests: list[str] = []
        self.port = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/token", self.token)
        app.router.add_get("/v2/{repo:.+}/manifests/{ref}", self.manifest)
        app.router.add_get("/v2/{repo:.+}/blobs/{digest}", self.blob)
        return app

    def _challenge(self, req: web.Request) -> web.Response | None:
        self.requests.append(req.path)
        if req.headers.get("Authorization") == "Bearer good-token":
            return None
        realm = f"http://127.0.0.1:{self.port}/token"
        return web.json_response(
            {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]}, status=401,
            headers={"WWW-Authenticate": f'Bearer realm="{realm}",service="fake",scope="repository:team/app:pull"'})

    async def token(self, req: web.Request) -> web.Response:
        want = "Basic " + base64.b64encode(b"bob:secret").decode()
        if req.query.get("service") != "fake" or req.headers.get("Authorization") != want:
            return web.json_response({"details": "bad credentials"}, status=401)
        return web.json_response({"token": "good-token"})

    async def manifest(self, req: web.Request) -> web.Response:
        if (denied := self._challenge(req)) is not None:
            return denied
        ref = req.match_info["ref"]
        digest = self.tags.get(ref, ref)
        if req.match_info["repo"] != "team/app" or digest not in self.blobs:
            return web.json_response({"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown",
                                                  "detail": {"Tag": ref}}]}, status=404)
        data = self.blobs[digest]
        return web.Response(body=data, content_type=json.loads(data)["mediaType"])

    async def blob(self, req: web.Request) -> web.Response:
        if (denied := self._challenge(req)) is not None:
            return denied
        data = self.blobs.get(req.match_info["digest"])
        if data is None:
            return web.json_response({"errors": [{"code": "BLOB_UNKNOWN", "message": "blob unknown"}]}, status=404)
        return web.Response(body=data, content_type="application/octet-stream")


@pytest.fixture
async def fake_registry(tmp_path: Path) -> AsyncIterator[FakeRegistry]:
    fake = FakeRegistry(tmp_path)
    runner = web.AppRunner(fake.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    fake.port = runner.addresses[0][1]
    try:
        yield fake
    finally:
        await runner.cleanup()


async def test_pull_with_token_auth_and_a_manifest_list(tmp_path: Path, fake_registry: FakeRegistry) -> None:
    store = ImageStore(tmp_path / "store")
    ref = f"127.0.0.1:{fake_registry.port}/team/app:1"
    events: list[str] = []
    image = await store.pull(ref, auth={"auth": base64.b64encode(b"bob:secret").decode()},
                             progress=lambda d, t, w: events.append(w))
    assert image.id == fake_registry.layout["config"]
    assert image.repo_tags == [ref]
    assert image.repo_digests == [f"127.0.0.1:{fake_registry.port}/team/app@{fake_registry.layout['top']}"]
    assert (image.layers[0] / "bin/app").read_bytes() == b"app"
    assert image.config["Cmd"] == ["sh"]
    assert any(w.endswith(" done") for w in events)
    assert store.get(ref) == image

    # By digest, when present, nothing is fetched.
    n = len(fake_registry.requests)
    assert await store.pull(image.repo_digests[0]) == image
    assert len(fake_registry.requests) == n
    # Again by tag: the manifest is fetched, the layer is not.
    again = await store.pull(ref, auth={"username": "bob", "password": "secret"})
    assert again == image
    assert fake_registry.requests.count(f"/v2/team/app/blobs/{fake_registry.layout['layer']}") == 1


async def test_pull_errors_read_as_containerd_words_them(tmp_path: Path, fake_registry: FakeRegistry) -> None:
    store = ImageStore(tmp_path / "store")
    base = f"127.0.0.1:{fake_registry.port}/team/app"
    with pytest.raises(ImageError) as e:
        await store.pull(f"{base}:1")
    assert str(e.value).startswith(f'failed to pull and unpack image "{base}:1": ')
    assert "pull access denied" in str(e.value) and "401" in str(e.value)

    with pytest.raises(ImageError) as e:
        await store.pull(f"{base}:2", auth={"username": "bob", "password": "secret"})
    assert str(e.value) == (f'failed to pull and unpack image "{base}:2": failed to resolve reference '
                            f'"{base}:2": {base}:2: not found: manifest unknown')

    with pytest.raises(ImageError) as e:
        await store.pull(f"{base}:1", auth={"username": "bob", "password": "secret"}, platform=("linux", "mips"))
    assert "no match for platform linux/mips" in str(e.value)

    with pytest.raises(ImageError, match="InvalidImageName|invalid reference format"):
        await store.pull("Not A Ref")
    assert store.list() == [] and list(store.tmp.iterdir()) == []


async def test_concurrent_pulls_of_one_reference_share_the_work(tmp_path: Path,
                                                               fake_registry: FakeRegistry) -> None:
    import asyncio

    store = ImageStore(tmp_path / "store")
    ref = f"127.0.0.1:{fake_registry.port}/team/app:1"
    auth = {"username": "bob", "password": "secret"}
    a, b = await asyncio.gather(store.pull(ref, auth=auth), store.pull(ref, auth=auth))
    assert a == b
    assert fake_registry.requests.count("/v2/team/app/manifests/1") == 2  # 401, then with the token
    assert fake_registry.requests.count(f"/v2/team/app/blobs/{fake_registry.layout['layer']}") == 1


def test_an_image_named_twice_in_an_archive_is_loaded_once_with_both_names(tmp_path: Path) -> None:
    oci_layout(tmp_path / "layout", {"a": b"a"}, "busybox:latest")
    index = json.loads((tmp_path / "layout/index.json").read_text())
    second = json.loads(json.dumps(index["manifests"][0]))
    second["annotations"] = {"io.containerd.image.name": "docker.io/library/busybox:1.36",
                             "org.opencontainers.image.ref.name": "1.36"}
    index["manifests"].append(second)
    (tmp_path / "layout/index.json").write_text(json.dumps(index))
    [image] = ImageStore(tmp_path / "store").import_archive(tmp_path / "layout")
    assert image.repo_tags == ["docker.io/library/busybox:latest", "docker.io/library/busybox:1.36"]
