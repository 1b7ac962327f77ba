"""Pod volumes: the kubelet's layout, atomic ..data updates, downward API
format, tokens, hostPath types, PVCs, container mounts and teardown."""

from __future__ import annotations

import asyncio
import base64
import copy
import os
import socket
import stat
from pathlib import Path
from typing import Any

import pytest

from pinnace.client.rest import ApiError
from pinnace.kubelet.volumes import MountError, VolumeManager, container_mounts, write_atomic

Obj = dict[str, Any]

ROOT = os.geteuid() == 0


class FakeResource:
    def __init__(self, client: "FakeClient", resource: str):
        self.client, self.resource = client, resource

    async def get(self, name: str, namespace: str | None = None, subresource: str = "") -> Obj:
        self.client.gets.append((self.resource, name))
        if self.client.latency:
            await asyncio.sleep(self.client.latency)  # a request in flight
        obj = self.client.objects.get((self.resource, namespace or "", name))
        if obj is None:
            raise ApiError(404, {"kind": "Status", "reason": "NotFound", "code": 404,
                                 "message": f'{self.resource} "{name}" not found'})
        return copy.deepcopy(obj)

    async def create_subresource(self, name: str, subresource: str, body: Obj,
                                 namespace: str | None = None) -> Obj:
        assert (self.resource, subresource) == ("serviceaccounts", "token")
        self.client.token_requests.append((namespace, name, body))
        n = len(self.client.token_requests)
        seconds = body["spec"]["expirationSeconds"]
        return {"kind": "TokenRequest", "spec": {**body["spec"], "expirationSeconds": seconds},
                "status": {"token": f"token-{n}", "expirationTimestamp":
                           _ts(self.client.now() + seconds)}}


def _ts(t: float) -> str:
    import datetime as dt
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeClient:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], Obj] = {}
        self.gets: list[tuple[str, str]] = []
        self.token_requests: list[tuple[str | None, str, Obj]] = []
        self.clock = 1_700_000_000.0
        self.latency = 0.0

    def now(self) -> float:
        return self.clock

    def resource(self, api_version: str, resource: str, namespaced: bool | None = None
                 ) -> FakeResource:
        return FakeResource(self, resource)

    def config_map(self, name: str, data: dict[str, str], ns: str = "default", **extra: Any
                   ) -> None:
        self.objects[("configmaps", ns, name)] = {"metadata": {"name": name, "namespace": ns},
                                                  "data": data, **extra}

    def secret(self, name: str, data: dict[str, bytes], ns: str = "default") -> None:
        self.objects[("secrets", ns, name)] = {
            "metadata": {"name": name, "namespace": ns},
            "data": {k: base64.b64encode(v).decode() for k, v in data.items()}}


def make_pod(volumes: list[Obj], uid: str = "uid-1", **spec: Any) -> Obj:
    return {"metadata": {"name": "web-0", "namespace": "default", "uid": uid,
                         "labels": {"app": "web", "tier": "front"},
                         "annotations": {"note": 'say "hi"', "a.b/c": "x\ny"}},
            "spec": {"nodeName": "node-a", "serviceAccountName": "default",
                     "containers": [{"name": "app", "resources": {"limits": {"memory": "64Mi"}}}],
                     "volumes": volumes, **spec}}


@pytest.fixture
def client() -> FakeClient:
    return FakeClient()


@pytest.fixture
async def vm(client: FakeClient, tmp_path: Path) -> Any:
    # fresh_for=0: every read goes to the API, as these tests change objects between calls.
    m = VolumeManager(client, tmp_path / "pods", node_name="node-a", memory_backed=False,
                      clock=client.now, node_allocatable={"cpu": "4", "memory": "8Gi"},
                      fresh_for=0)
    yield m
    for uid in list(m._pods):
        await m.teardown(uid)


def mode(p: Path) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


def listing(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir())


# -- configMap and secret ------------------------------------------------------------

def caching_manager(client: FakeClient, tmp_path: Path, fresh_for: float) -> VolumeManager:
    """A manager whose reads of an object serve every pod for ``fresh_for`` seconds."""
    return VolumeManager(client, tmp_path / "pods", node_name="node-a", memory_backed=False,
                         clock=client.now, fresh_for=fresh_for)


def shared_config_pod(uid: str) -> Obj:
    return make_pod([{"name": "cfg", "configMap": {"name": "shared"}}], uid=uid)


async def test_a_pod_waiting_on_a_cancelled_read_reads_for_itself(client: FakeClient,
                                                                   tmp_path: Path) -> None:
    client.config_map("shared", {"k": "1"})
    client.latency = 0.05
    vm = caching_manager(client, tmp_path, fresh_for=5)
    first = asyncio.create_task(vm.setup(shared_config_pod("uid-a")))
    await asyncio.sleep(0.01)  # its read is under way
    second = asyncio.create_task(vm.setup(shared_config_pod("uid-b")))
    await asyncio.sleep(0.01)
    first.cancel()
    paths = await second
    assert (paths["cfg"] / "k").read_text() == "1"
    assert client.gets == [("configmaps", "shared")] * 2
    with pytest.raises(asyncio.CancelledError):
        await first
    for uid in ("uid-a", "uid-b"):
        await vm.teardown(uid)


async def test_pods_starting_together_share_one_read_of_an_object(client: FakeClient,
                                                                  tmp_path: Path) -> None:
    client.config_map("shared", {"k": "1"})
    client.latency = 0.01
    vm = caching_manager(client, tmp_path, fresh_for=0.2)
    pods = [shared_config_pod(f"uid-{i}") for i in range(10)]
    paths = await asyncio.gather(*(vm.setup(p) for p in pods))
    assert client.gets == [("configmaps", "shared")]
    assert all((p["cfg"] / "k").read_text() == "1" for p in paths)
    # A change shows once the read is older than fresh_for.
    client.config_map("shared", {"k": "2"})
    assert await vm.refresh(pods[0]) is False
    await asyncio.sleep(0.3)
    assert await vm.refresh(pods[0]) is True
    assert (paths[0]["cfg"] / "k").read_text() == "2"
    # So does its deletion.
    del client.objects[("configmaps", "default", "shared")]
    await asyncio.sleep(0.3)
    pod = shared_config_pod("uid-new")
    with pytest.raises(MountError, match='configmap "shared" not found'):
        await vm.setup(pod)
    for p in [*pods, pod]:
        await vm.teardown(p["metadata"]["uid"])

async def test_config_map_layout_items_and_modes(client: FakeClient, vm: VolumeManager,
                                                 tmp_path: Path) -> None:
    client.config_map("app-config", {"app.conf": "a=1\n", "log.conf": "level=debug"},
                      binaryData={"blob": base64.b64encode(b"\x00\x01").decode()})
    pod = make_pod([
        {"name": "all", "configMap": {"name": "app-config"}},
        {"name": "some", "configMap": {"name": "app-config", "defaultMode": 0o600, "items": [
            {"key": "app.conf", "path": "conf/app.conf"},
            {"key": "log.conf", "path": "log", "mode": 0o400}]}}])
    paths = await vm.setup(pod)
    d = paths["all"]
    assert d == tmp_path / "pods/uid-1/volumes/kubernetes.io~configmap/all"
    names = listing(d)
    ts = [n for n in names if n.startswith("..20")]
    assert len(ts) == 1 and names == sorted(["..data", ts[0], "app.conf", "blob", "log.conf"])
    assert os.readlink(d / "..data") == ts[0]
    assert os.readlink(d / "app.conf") == "..data/app.conf"
    assert (d / "app.conf").read_text() == "a=1\n" and (d / "blob").read_bytes() == b"\x00\x01"
    assert mode(d / ts[0] / "app.conf") == 0o644
    some = paths["some"]
    assert os.readlink(some / "conf") == "..data/conf"
    assert (some / "conf/app.conf").read_text() == "a=1\n"
    assert mode(some / "..data/conf/app.conf") == 0o600
    assert mode(some / "..data/log") == 0o400
    assert not (some / "blob").exists()


async def test_secret_volume(client: FakeClient, vm: VolumeManager, tmp_path: Path) -> None:
    client.secret("creds", {"password": b"s3cr3t", "user": b"admin"})
    pod = make_pod([{"name": "s", "secret": {"secretName": "creds", "items": [
        {"key": "password", "path": "pw", "mode": 0o400}]}},
        {"name": "all", "secret": {"secretName": "creds"}}])
    paths = await vm.setup(pod)
    assert paths["s"] == tmp_path / "pods/uid-1/volumes/kubernetes.io~secret/s"
    assert (paths["s"] / "pw").read_bytes() == b"s3cr3t"
    assert mode(paths["s"] / "..data/pw") == 0o400
    assert listing(paths["s"])[-1] == "pw" and not (paths["s"] / "user").exists()
    assert mode(paths["all"] / "..data/user") == 0o644
    st = os.stat(paths["all"] / "..data/user")
    assert st.st_uid == os.geteuid()


async def test_missing_sources_fail_with_kubelet_words(client: FakeClient,
                                                       vm: VolumeManager) -> None:
    client.config_map("app-config", {"a": "1"})
    client.secret("creds", {"u": b"x"})
    cases = [
        ({"name": "cfg", "configMap": {"name": "x"}},
         'MountVolume.SetUp failed for volume "cfg" : configmap "x" not found'),
        ({"name": "s", "secret": {"secretName": "x"}},
         'MountVolume.SetUp failed for volume "s" : secret "x" not found'),
        ({"name": "cfg", "configMap": {"name": "app-config", "items": [{"key": "b", "path": "b"}]}},
         'MountVolume.SetUp failed for volume "cfg" : configmap references non-existent '
         'config key: b'),
        ({"name": "s", "secret": {"secretName": "creds", "items": [{"key": "p", "path": "p"}]}},
         'MountVolume.SetUp failed for volume "s" : references non-existent secret key: p'),
    ]
    for i, (vol, message) in enumerate(cases):
        with pytest.raises(MountError) as err:
            await vm.setup(make_pod([vol], uid=f"u{i}"))
        assert str(err.value) == message
        assert err.value.volume == vol["name"]


async def test_optional_missing_config_map_is_an_empty_volume(client: FakeClient,
                                                              vm: VolumeManager) -> None:
    pod = make_pod([{"name": "cfg", "configMap": {"name": "later", "optional": True}},
                    {"name": "keys", "configMap": {"name": "later", "optional": True,
                                                   "items": [{"key": "k", "path": "k"}]}}])
    paths = await vm.setup(pod)
    assert [n for n in listing(paths["cfg"]) if not n.startswith("..")] == []
    assert os.path.islink(paths["cfg"] / "..data")
    # it appears later: refresh projects it
    client.config_map("later", {"k": "v"})
    assert await vm.refresh(pod) is True
    assert (paths["cfg"] / "k").read_text() == "v" and (paths["keys"] / "k").read_text() == "v"


async def test_setup_is_idempotent_and_keeps_going_after_a_failure(client: FakeClient,
                                                                   vm: VolumeManager) -> None:
    client.config_map("good", {"a": "1"})
    pod = make_pod([{"name": "bad", "configMap": {"name": "nope"}},
                    {"name": "ok", "configMap": {"name": "good"}}])
    with pytest.raises(MountError, match='volume "bad"'):
        await vm.setup(pod)
    client.config_map("nope", {"b": "2"})
    client.gets.clear()
    paths = await vm.setup(pod)
    assert set(paths) == {"bad", "ok"}
    assert client.gets == [("configmaps", "nope")]      # "ok" was done already
    client.gets.clear()
    assert await vm.setup(pod) == paths and client.gets == []


# -- atomic updates --------------------------------------------------------------------

async def test_refresh_swaps_data_atomically(client: FakeClient, vm: VolumeManager) -> None:
    client.config_map("app-config", {"a": "1", "b": "2"})
    pod = make_pod([{"name": "cfg", "configMap": {"name": "app-config"}}])
    d = (await vm.setup(pod))["cfg"]
    first = os.readlink(d / "..data")
    assert await vm.refresh(pod) is False                # nothing changed
    assert os.readlink(d / "..data") == first
    client.config_map("app-config", {"a": "10", "c": "3"})
    assert await vm.refresh(pod) is True
    second = os.readlink(d / "..data")
    assert second != first and not (d / first).exists()   # old data removed
    assert (d / "a").read_text() == "10" and (d / "c").read_text() == "3"
    assert not os.path.lexists(d / "b")                  # its link is gone too
    assert sorted(n for n in listing(d)) == sorted(["..data", second, "a", "c"])
    assert await vm.refresh(pod) is False


def test_write_atomic_nested_paths_and_refusals(tmp_path: Path) -> None:
    d = tmp_path / "v"
    assert write_atomic(d, {"x/y/z": (b"1", 0o644), "top": (b"2", 0o644)}) is True
    assert os.readlink(d / "x") == "..data/x" and (d / "x/y/z").read_bytes() == b"1"
    assert mode(d / "..data/x/y") == 0o755
    assert write_atomic(d, {"top": (b"2", 0o644)}) is True   # x/y/z removed
    assert not os.path.lexists(d / "x") and (d / "top").read_bytes() == b"2"
    for bad in ("/abs", "../up", "a/../b", "..hidden", ""):
        with pytest.raises(ValueError, match="invalid path"):
            write_atomic(d, {bad: (b"", 0o644)})


async def test_immutable_objects_are_not_fetched_again(client: FakeClient,
                                                       vm: VolumeManager) -> None:
    client.config_map("frozen", {"a": "1"}, immutable=True)
    pod = make_pod([{"name": "cfg", "configMap": {"name": "frozen"}}])
    await vm.setup(pod)
    client.gets.clear()
    assert await vm.refresh(pod) is False
    assert client.gets == []


async def test_refresh_keeps_contents_when_the_source_fails(client: FakeClient,
                                                            vm: VolumeManager) -> None:
    client.config_map("app-config", {"a": "1"})
    pod = make_pod([{"name": "cfg", "configMap": {"name": "app-config"}}])
    d = (await vm.setup(pod))["cfg"]
    del client.objects[("configmaps", "default", "app-config")]
    assert await vm.refresh(pod) is False
    assert (d / "a").read_text() == "1"


# -- downward API ---------------------------------------------------------------------

async def test_downward_api_format(client: FakeClient, vm: VolumeManager) -> None:
    pod = make_pod([{"name": "info", "downwardAPI": {"items": [
        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
        {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}},
        {"path": "app", "fieldRef": {"fieldPath": "metadata.labels['app']"}},
        {"path": "meta/name", "fieldRef": {"fieldPath": "metadata.name"}, "mode": 0o600},
        {"path": "meta/uid", "fieldRef": {"fieldPath": "metadata.uid"}},
        {"path": "mem", "resourceFieldRef": {"containerName": "app",
                                             "resource": "limits.memory", "divisor": "1Mi"}},
        {"path": "cpu", "resourceFieldRef": {"containerName": "app", "resource": "limits.cpu",
                                             "divisor": "1m"}}]}}])
    d = (await vm.setup(pod))["info"]
    assert d.parent.name == "kubernetes.io~downward-api"
    assert (d / "labels").read_text() == 'app="web"\ntier="front"'
    assert (d / "annotations").read_text() == 'a.b/c="x\\ny"\nnote="say \\"hi\\""'
    assert (d / "app").read_text() == "web"
    assert (d / "meta/name").read_text() == "web-0" and mode(d / "..data/meta/name") == 0o600
    assert (d / "meta/uid").read_text() == "uid-1"
    assert (d / "mem").read_text() == "64"
    assert (d / "cpu").read_text() == "4000"          # no limit: node allocatable
    pod["metadata"]["labels"]["tier"] = "back"
    assert await vm.refresh(pod) is True
    assert (d / "labels").read_text() == 'app="web"\ntier="back"'
    assert await vm.refresh(pod) is False


async def test_downward_api_bad_field(vm: VolumeManager) -> None:
    pod = make_pod([{"name": "info", "downwardAPI": {"items": [
        {"path": "x", "fieldRef": {"fieldPath": "spec.nodeName"}}]}}])
    with pytest.raises(MountError, match="unsupported fieldPath: spec.nodeName"):
        await vm.setup(pod)


# -- projected and tokens ----------------------------------------------------------------

def kube_api_access() -> Obj:
    return {"name": "kube-api-access-abcde", "projected": {"defaultMode": 0o644, "sources": [
        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace",
                                    "fieldRef": {"apiVersion": "v1",
                                                 "fieldPath": "metadata.namespace"}}]}}]}}


async def test_projected_service_account_volume(client: FakeClient, vm: VolumeManager) -> None:
    client.config_map("kube-root-ca.crt", {"ca.crt": "-----BEGIN CERTIFICATE-----\n"})
    pod = make_pod([kube_api_access()], serviceAccountName="builder")
    d = (await vm.setup(pod))["kube-api-access-abcde"]
    assert d.parent.name == "kubernetes.io~projected"
    assert sorted(n for n in listing(d) if not n.startswith("..")) == \
        ["ca.crt", "namespace", "token"]
    assert (d / "token").read_text() == "token-1"
    assert (d / "namespace").read_text() == "default"
    assert (d / "ca.crt").read_text().startswith("-----BEGIN")
    ns, sa, body = client.token_requests[0]
    assert (ns, sa) == ("default", "builder")
    assert body["spec"] == {"audiences": [], "expirationSeconds": 3607,
                            "boundObjectRef": {"apiVersion": "v1", "kind": "Pod",
                                               "name": "web-0", "uid": "uid-1"}}


async def test_token_renewed_at_80_percent(client: FakeClient, vm: VolumeManager) -> None:
    client.config_map("kube-root-ca.crt", {"ca.crt": "CA"})
    vol = kube_api_access()
    vol["projected"]["sources"][0]["serviceAccountToken"].update(
        audience="vault", expirationSeconds=1000)
    pod = make_pod([vol])
    d = (await vm.setup(pod))["kube-api-access-abcde"]
    assert client.token_requests[0][2]["spec"]["audiences"] == ["vault"]
    client.clock += 790
    assert await vm.refresh(pod) is False and len(client.token_requests) == 1
    client.clock += 20
    assert await vm.refresh(pod) is True and len(client.token_requests) == 2
    assert (d / "token").read_text() == "token-2"
    assert await vm.refresh(pod) is False


async def test_projected_root_ca_falls_back_to_ca_file(client: FakeClient,
                                                       tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("FROM-FILE")
    vm = VolumeManager(client, tmp_path / "pods", node_name="n", ca_file=ca, memory_backed=False,
                       clock=client.now)
    d = (await vm.setup(make_pod([kube_api_access()])))["kube-api-access-abcde"]
    assert (d / "ca.crt").read_text() == "FROM-FILE"
    await vm.teardown("uid-1")


async def test_projected_errors_are_aggregated(client: FakeClient, vm: VolumeManager) -> None:
    pod = make_pod([{"name": "p", "projected": {"sources": [
        {"configMap": {"name": "a"}}, {"secret": {"name": "b"}},
        {"secret": {"name": "c", "optional": True}}]}}])
    with pytest.raises(MountError) as err:
        await vm.setup(pod)
    assert str(err.value) == ('MountVolume.SetUp failed for volume "p" : '
                              '[configmap "a" not found, secret "b" not found]')


async def test_fs_group_ownership(client: FakeClient, vm: VolumeManager) -> None:
    client.config_map("kube-root-ca.crt", {"ca.crt": "CA"})
    client.secret("creds", {"k": b"v"})
    pod = make_pod([kube_api_access(),
                    {"name": "s", "secret": {"secretName": "creds", "defaultMode": 0o600}},
                    {"name": "scratch", "emptyDir": {}}],
                   securityContext={"fsGroup": 2000})
    paths = await vm.setup(pod)
    tok = paths["kube-api-access-abcde"] / "..data/token"
    assert mode(tok) == 0o640                           # 0600 plus group read
    assert mode(paths["s"] / "..data/k") == 0o640
    if ROOT:
        assert os.stat(tok).st_gid == 2000
        assert os.stat(paths["scratch"]).st_gid == 2000
        assert mode(paths["scratch"]) & stat.S_ISGID


# -- emptyDir, hostPath, PVC -----------------------------------------------------------------

async def test_empty_dir(vm: VolumeManager, tmp_path: Path) -> None:
    d = (await vm.setup(make_pod([{"name": "scratch", "emptyDir": {}}])))["scratch"]
    assert d == tmp_path / "pods/uid-1/volumes/kubernetes.io~empty-dir/scratch"
    assert d.is_dir() and mode(d) == 0o777


async def test_host_path_types(vm: VolumeManager, tmp_path: Path) -> None:
    h = tmp_path / "host"
    h.mkdir()
    (h / "file").write_text("x")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(h / "sock"))
    try:
        ok = {"new-dir": ("DirectoryOrCreate", h / "made/deep"),
              "dir": ("Directory", h),
              "new-file": ("FileOrCreate", h / "made.txt"),
              "file": ("File", h / "file"),
              "sock": ("Socket", h / "sock"),
              "chr": ("CharDevice", Path("/dev/null")),
              "any": ("", h / "whatever")}
        vols = [{"name": n, "hostPath": {"path": str(p), "type": t}} for n, (t, p) in ok.items()]
        paths = await vm.setup(make_pod(vols))
        assert paths == {n: p for n, (_, p) in ok.items()}
        assert (h / "made/deep").is_dir() and mode(h / "made/deep") == 0o755
        assert (h / "made.txt").is_file() and mode(h / "made.txt") == 0o644
        assert not (h / "whatever").exists()
        bad = [("Directory", h / "file", "is not a directory"),
               ("Directory", h / "missing", "is not a directory"),
               ("File", h, "is not a file"),
               ("Socket", h / "file", "is not a socket file"),
               ("CharDevice", h / "file", "is not a character device"),
               ("BlockDevice", Path("/dev/null"), "is not a block device")]
        for i, (t, p, what) in enumerate(bad):
            with pytest.raises(MountError) as err:
                await vm.setup(make_pod([{"name": "h", "hostPath": {"path": str(p), "type": t}}],
                                        uid=f"bad-{i}"))
            assert str(err.value) == (f'MountVolume.SetUp failed for volume "h" : '
                                      f"hostPath type check failed: {p} {what}")
        with pytest.raises(MountError, match="Weird is an invalid volume type"):
            await vm.setup(make_pod([{"name": "h", "hostPath": {"path": "/", "type": "Weird"}}],
                                    uid="weird"))
        with pytest.raises(MountError, match="must not contain '..'"):
            await vm.setup(make_pod([{"name": "h", "hostPath": {"path": "/a/../etc"}}],
                                    uid="dots"))
    finally:
        sock.close()


async def test_persistent_volume_claims(client: FakeClient, vm: VolumeManager,
                                        tmp_path: Path) -> None:
    data = tmp_path / "pv-data"
    data.mkdir()
    client.objects[("persistentvolumeclaims", "default", "data")] = {
        "metadata": {"name": "data", "uid": "pvc-uid"}, "spec": {"volumeName": "pv-1"},
        "status": {"phase": "Bound"}}
    client.objects[("persistentvolumes", "", "pv-1")] = {
        "metadata": {"name": "pv-1"},
        "spec": {"hostPath": {"path": str(data), "type": ""}, "claimRef": {"uid": "pvc-uid"}}}
    client.objects[("persistentvolumeclaims", "default", "pending")] = {
        "metadata": {"name": "pending", "uid": "u2"}, "spec": {}, "status": {"phase": "Pending"}}
    client.objects[("persistentvolumeclaims", "default", "nfs")] = {
        "metadata": {"name": "nfs", "uid": "u3"}, "spec": {"volumeName": "pv-nfs"},
        "status": {"phase": "Bound"}}
    client.objects[("persistentvolumes", "", "pv-nfs")] = {
        "metadata": {"name": "pv-nfs"},
        "spec": {"nfs": {"server": "x", "path": "/"}, "claimRef": {"uid": "u3"}}}
    paths = await vm.setup(make_pod([{"name": "d", "persistentVolumeClaim":
                                      {"claimName": "data"}}]))
    assert paths["d"] == data
    cases = [("missing", 'persistentvolumeclaim "missing" not found'),
             ("pending", 'PVC default/pending has non-bound phase ("Pending") or empty '
                         'pvc.Spec.VolumeName ("")'),
             ("nfs", "not supported")]
    for claim, message in cases:
        with pytest.raises(MountError) as err:
            await vm.setup(make_pod([{"name": "d", "persistentVolumeClaim":
                                      {"claimName": claim}}], uid=claim))
        assert message in str(err.value)
        assert str(err.value).startswith('MountVolume.SetUp failed for volume "d" : ')


# -- container mounts -----------------------------------------------------------------

async def test_container_mounts(client: FakeClient, vm: VolumeManager, tmp_path: Path) -> None:
    client.config_map("app-config", {"app.conf": "x"})
    pod = make_pod([{"name": "cfg", "configMap": {"name": "app-config"}},
                    {"name": "scratch", "emptyDir": {}},
                    {"name": "host", "hostPath": {"path": str(tmp_path)}}])
    paths = await vm.setup(pod)
    c = {"name": "app", "volumeMounts": [
        {"name": "cfg", "mountPath": "/etc/app"},
        {"name": "cfg", "mountPath": "/etc/app.conf", "subPath": "app.conf"},
        {"name": "scratch", "mountPath": "/scratch"},
        {"name": "scratch", "mountPath": "/logs", "subPath": "logs/app"},
        {"name": "scratch", "mountPath": "/by-pod", "subPathExpr": "$(POD_NAME)"},
        {"name": "host", "mountPath": "/host", "readOnly": True,
         "mountPropagation": "HostToContainer"}]}
    mounts = container_mounts(pod, c, paths, env=["POD_NAME=web-0"])
    scratch = paths["scratch"]
    ts = os.readlink(paths["cfg"] / "..data")
    assert mounts == [
        {"destination": "/etc/app", "type": "bind", "source": str(paths["cfg"]),
         "options": ["rbind", "rprivate", "ro"]},
        {"destination": "/etc/app.conf", "type": "bind",
         "source": str(paths["cfg"] / ts / "app.conf"), "options": ["rbind", "rprivate", "ro"]},
        {"destination": "/scratch", "type": "bind", "source": str(scratch),
         "options": ["rbind", "rprivate", "rw"]},
        {"destination": "/logs", "type": "bind", "source": str(scratch / "logs/app"),
         "options": ["rbind", "rprivate", "rw"]},
        {"destination": "/by-pod", "type": "bind", "source": str(scratch / "web-0"),
         "options": ["rbind", "rprivate", "rw"]},
        {"destination": "/host", "type": "bind", "source": str(tmp_path),
         "options": ["rbind", "rslave", "ro"]},
    ]
    assert (scratch / "logs/app").is_dir() and mode(scratch / "logs/app") == 0o777


async def test_sub_path_escapes_are_refused(vm: VolumeManager, tmp_path: Path) -> None:
    pod = make_pod([{"name": "scratch", "emptyDir": {}}])
    paths = await vm.setup(pod)
    outside = tmp_path / "secret-host-dir"
    outside.mkdir()
    os.symlink(outside, paths["scratch"] / "escape")
    os.symlink("/etc/passwd", paths["scratch"] / "passwd")

    def mount(**m: Any) -> list[Obj]:
        c = {"name": "app", "volumeMounts": [{"name": "scratch", "mountPath": "/x", **m}]}
        return container_mounts(pod, c, paths, env=["EMPTY=", "UP=.."])

    cases = [({"subPath": "../../etc"}, "unable to provision SubPath `../../etc`: must not "
                                        "contain '..'"),
             ({"subPath": "a/../../b"}, "must not contain '..'"),
             ({"subPath": "/etc"}, "error SubPath `/etc` must not be an absolute path"),
             ({"subPathExpr": "$(UP)/x"}, "must not contain '..'"),
             ({"subPathExpr": "$(EMPTY)$(NOPE)"}, "missing value for EMPTY, NOPE"),
             ({"subPath": "escape"}, 'failed to prepare subPath for volumeMount "scratch" '
                                     'of container "app"'),
             ({"subPath": "escape/new-dir"}, "failed to prepare subPath"),
             ({"subPath": "passwd"}, "failed to prepare subPath")]
    for m, message in cases:
        with pytest.raises(MountError) as err:
            mount(**m)
        assert message in str(err.value), m
    assert list(outside.iterdir()) == []
    with pytest.raises(MountError, match='cannot find volume "nope" to mount into container '
                                         '"app"'):
        container_mounts(pod, {"name": "app", "volumeMounts": [{"name": "nope",
                                                                "mountPath": "/n"}]}, paths)


# -- teardown ----------------------------------------------------------------------------

async def test_teardown_removes_volumes_and_is_idempotent(client: FakeClient,
                                                          vm: VolumeManager,
                                                          tmp_path: Path) -> None:
    client.config_map("app-config", {"a": "1"})
    host = tmp_path / "host-data"
    host.mkdir()
    (host / "keep").write_text("x")
    pod = make_pod([{"name": "cfg", "configMap": {"name": "app-config"}},
                    {"name": "scratch", "emptyDir": {}},
                    {"name": "host", "hostPath": {"path": str(host)}}])
    paths = await vm.setup(pod)
    (paths["scratch"] / "data").write_text("y")
    await vm.teardown("uid-1")
    assert not (tmp_path / "pods/uid-1/volumes").exists()
    assert (tmp_path / "pods/uid-1").exists()           # only the volumes go
    assert (host / "keep").read_text() == "x"           # host paths are left alone
    await vm.teardown("uid-1")
    await vm.teardown("never-seen")
    assert await vm.refresh(pod) is False


# -- tmpfs (root only) ----------------------------------------------------------------------

def _is_mount(p: Path) -> bool:
    return any(line.split(" ")[4] == str(p)
               for line in Path("/proc/self/mountinfo").read_text().splitlines())


@pytest.mark.skipif(not ROOT, reason="mounting tmpfs needs root")
async def test_memory_backed_volumes_on_tmpfs(client: FakeClient, tmp_path: Path) -> None:
    client.secret("creds", {"k": b"v"})
    vm = VolumeManager(client, tmp_path / "pods", node_name="n", memory_backed=True,
                       clock=client.now, node_allocatable={"memory": "8Gi"})
    pod = make_pod([{"name": "s", "secret": {"secretName": "creds"}},
                    {"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
                    {"name": "podlimit", "emptyDir": {"medium": "Memory"}},
                    {"name": "disk", "emptyDir": {}}])
    try:
        try:
            paths = await vm.setup(pod)
        except MountError as e:
            if "Operation not permitted" in str(e):
                pytest.skip("tmpfs mounts not permitted here")
            raise
        assert _is_mount(paths["s"]) and _is_mount(paths["mem"])
        assert not _is_mount(paths["disk"])
        assert (paths["s"] / "k").read_bytes() == b"v"
        sv = os.statvfs(paths["mem"])
        assert sv.f_blocks * sv.f_frsize == 16 * 2**20
        sv = os.statvfs(paths["podlimit"])                # the pod's 64Mi limit
        assert sv.f_blocks * sv.f_frsize == 64 * 2**20
        # a second setup (agent restart) does not mount twice
        vm2 = VolumeManager(client, tmp_path / "pods", node_name="n", memory_backed=True,
                            clock=client.now)
        await vm2.setup(pod)
        mounts = Path("/proc/self/mountinfo").read_text()
        assert mounts.count(str(paths["s"]) + " ") == 1
    finally:
        await vm.teardown("uid-1")
    assert not _is_mount(paths["s"]) and not _is_mount(paths["mem"])
    assert not (tmp_path / "pods/uid-1/volumes").exists()
