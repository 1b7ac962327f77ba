"""The ServiceAccount admission plugin's pieces: the mount rules and the
account lookup (waiting for "default" only while a controller manager runs)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from pinnace.apiserver import codec
from pinnace.apiserver.admission import serviceaccount as sa_admission
from pinnace.apiserver.status import APIError, forbidden
from pinnace.storage.memory import MemoryStore

MOUNT = {"name": "kube-api-access-abcde", "readOnly": True,
         "mountPath": sa_admission.MOUNT_PATH}


def _name() -> str:
    return "kube-api-access-abcde"


def test_mount_token_reuses_a_kube_api_access_volume() -> None:
    vol = {"name": "kube-api-access-zzzzz", "projected": {"sources": []}}
    spec: dict[str, Any] = {"volumes": [vol], "containers": [{"name": "c"}]}
    sa_admission.mount_token(spec, _name)
    assert spec["volumes"] == [vol]
    assert spec["containers"][0]["volumeMounts"][0]["name"] == "kube-api-access-zzzzz"


def test_mount_token_leaves_ephemeral_containers_alone() -> None:
    spec: dict[str, Any] = {"containers": [{"name": "c"}], "initContainers": [{"name": "i"}],
                            "ephemeralContainers": [{"name": "e"}]}
    sa_admission.mount_token(spec, _name)
    assert spec["containers"][0]["volumeMounts"] == [MOUNT]
    assert spec["initContainers"][0]["volumeMounts"] == [MOUNT]
    assert "volumeMounts" not in spec["ephemeralContainers"][0]
    assert spec["volumes"] == [{"name": "kube-api-access-abcde",
                                "projected": sa_admission.token_volume_source()}]


def test_no_volume_when_every_container_mounts_the_path() -> None:
    own = {"name": "x", "mountPath": sa_admission.MOUNT_PATH}
    spec: dict[str, Any] = {"containers": [{"name": "c", "volumeMounts": [own]}]}
    sa_admission.mount_token(spec, _name)
    assert "volumes" not in spec and spec["containers"][0]["volumeMounts"] == [own]


@pytest.mark.parametrize("pod, sa, want", [
    (None, None, True), (False, None, False), (None, False, False), (True, False, True),
    (False, True, False),
])
def test_should_automount(pod: bool | None, sa: bool | None, want: bool) -> None:
    p: dict[str, Any] = {"spec": {} if pod is None else {"automountServiceAccountToken": pod}}
    a = {} if sa is None else {"automountServiceAccountToken": sa}
    assert sa_admission.should_automount(a, p) is want


async def _lease(store: MemoryStore, age: float) -> None:
    renewed = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=age)
    await store.create(sa_admission._MANAGER_LEASE, codec.encode_for_storage({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "kube-controller-manager", "namespace": "kube-system"},
        "spec": {"holderIdentity": "me", "leaseDurationSeconds": 15,
                 "renewTime": renewed.strftime("%Y-%m-%dT%H:%M:%S.%fZ")}}))


def _refuse(why: str) -> APIError:
    return forbidden(why, "pods")


async def test_missing_default_without_controller_manager_is_admitted() -> None:
    store = MemoryStore()
    await _lease(store, age=600)  # a manager that stopped long ago
    pod = {"metadata": {"name": "p", "namespace": "ns"}, "spec": {"containers": [{"name": "c"}]}}
    await sa_admission.admit_pod(store, pod, _refuse)
    assert pod["spec"]["serviceAccountName"] == "default"
    assert pod["spec"]["volumes"][0]["name"].startswith("kube-api-access-")


async def test_missing_default_is_waited_for_then_refused(
        monkeypatch: pytest.MonkeyPatch) -> None:
    store = MemoryStore()
    await _lease(store, age=1)
    monkeypatch.setattr(sa_admission, "DEFAULT_ATTEMPTS", 3)
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(sa_admission, "_sleep", sleep)
    pod = {"metadata": {"name": "p", "namespace": "ns"}, "spec": {"containers": [{"name": "c"}]}}
    with pytest.raises(APIError) as e:
        await sa_admission.admit_pod(store, pod, _refuse)
    assert e.value.message == ('error looking up service account ns/default: '
                               'serviceaccount "default" not found')
    assert len(slept) == 2 and 0.1 <= slept[0] <= 0.2


async def test_default_made_while_waiting_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    store = MemoryStore()
    await _lease(store, age=1)
    async def sleep(seconds: float) -> None:
        if await store.get("/registry/core/serviceaccounts/ns/default") is None:
            await store.create("/registry/core/serviceaccounts/ns/default",
                               codec.encode_for_storage({
                                   "apiVersion": "v1", "kind": "ServiceAccount",
                                   "metadata": {"name": "default", "namespace": "ns"},
                                   "automountServiceAccountToken": False}))

    monkeypatch.setattr(sa_admission, "_sleep", sleep)
    pod = {"metadata": {"name": "p", "namespace": "ns"}, "spec": {"containers": [{"name": "c"}]}}
    await sa_admission.admit_pod(store, pod, _refuse)
    assert "volumes" not in pod["spec"]  # the account's automount: false was seen
