"""The ServiceAccount admission plugin on pod create, through real kubectl:
the kube-api-access volume and its mounts, automountServiceAccountToken on
the pod and on the account, mounts the user already made, a missing
account, the account's imagePullSecrets, mirror pods."""

from __future__ import annotations

import json
import re
from typing import Any

from tests.conftest import Server

MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"

TOKEN_VOLUME_SOURCE = {
    "defaultMode": 420,
    "sources": [
        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
        {"configMap": {"name": "kube-root-ca.crt",
                       "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {
            "apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
    ],
}


def _pod(name: str, **spec: Any) -> dict[str, Any]:
    spec.setdefault("containers", [{"name": "c", "image": "busybox"}])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def _create(server: Server, ns: str, obj: dict[str, Any]) -> dict[str, Any]:
    server.kubectl("-n", ns, "create", "-f", "-", input=json.dumps(obj))
    kind = obj["kind"].lower()
    return json.loads(server.kubectl("-n", ns, "get", kind, obj["metadata"]["name"],
                                     "-o", "json").stdout)


def _token_volumes(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [v for v in pod["spec"].get("volumes", [])
            if v["name"].startswith("kube-api-access-")]


def test_pod_gets_kube_api_access_volume_and_mounts(server: Server, namespace: str) -> None:
    pod = _create(server, namespace, _pod(
        "p", initContainers=[{"name": "init", "image": "busybox"}],
        containers=[{"name": "a", "image": "busybox"},
                    {"name": "b", "image": "busybox",
                     "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}]}],
        volumes=[{"name": "scratch", "emptyDir": {}}]))
    vols = _token_volumes(pod)
    assert len(vols) == 1
    name = vols[0]["name"]
    assert re.fullmatch(r"kube-api-access-[bcdfghjklmnpqrstvwxz2456789]{5}", name)
    assert vols[0] == {"name": name, "projected": TOKEN_VOLUME_SOURCE}
    assert pod["spec"]["volumes"][0]["name"] == "scratch"  # the new volume comes last
    want = {"name": name, "readOnly": True, "mountPath": MOUNT_PATH}
    spec = pod["spec"]
    assert spec["initContainers"][0]["volumeMounts"] == [want]
    assert spec["containers"][0]["volumeMounts"] == [want]
    assert spec["containers"][1]["volumeMounts"] == [
        {"name": "scratch", "mountPath": "/scratch"}, want]
    assert spec["serviceAccountName"] == "default"
    # kubectl shows it as on a real cluster.
    out = server.kubectl("-n", namespace, "get", "pod", "p", "-o", "yaml").stdout
    assert f"- mountPath: {MOUNT_PATH}\n      name: {name}\n      readOnly: true" in out
    assert "expirationSeconds: 3607" in out

    # Only create mutates: a replace of the stored pod keeps exactly one volume.
    server.kubectl("-n", namespace, "label", "pod", "p", "x=y")
    again = json.loads(server.kubectl("-n", namespace, "get", "pod", "p", "-o", "json").stdout)
    assert _token_volumes(again) == vols


def test_automount_false_on_pod(server: Server, namespace: str) -> None:
    pod = _create(server, namespace, _pod("p", automountServiceAccountToken=False))
    assert not pod["spec"].get("volumes")
    assert not pod["spec"]["containers"][0].get("volumeMounts")


def test_automount_false_on_service_account(server: Server, namespace: str) -> None:
    server.kubectl("-n", namespace, "create", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "quiet"},
        "automountServiceAccountToken": False}))
    pod = _create(server, namespace, _pod("p", serviceAccountName="quiet"))
    assert not pod["spec"].get("volumes")
    assert not pod["spec"]["containers"][0].get("volumeMounts")
    # The pod's own choice wins over the account's.
    pod = _create(server, namespace, _pod("q", serviceAccountName="quiet",
                                          automountServiceAccountToken=True))
    assert len(_token_volumes(pod)) == 1
    assert pod["spec"]["containers"][0]["volumeMounts"][0]["mountPath"] == MOUNT_PATH


def test_existing_mount_at_the_path_is_kept(server: Server, namespace: str) -> None:
    own = {"name": "mine", "mountPath": MOUNT_PATH}
    pod = _create(server, namespace, _pod(
        "p", containers=[{"name": "c", "image": "busybox", "volumeMounts": [own]}],
        volumes=[{"name": "mine", "secret": {"secretName": "s"}}]))
    assert pod["spec"]["volumes"] == [{"name": "mine", "secret": {"secretName": "s",
                                                                  "defaultMode": 420}}]
    assert pod["spec"]["containers"][0]["volumeMounts"] == [own]
    # A container that mounts nothing there still gets the token.
    pod = _create(server, namespace, _pod(
        "q", containers=[{"name": "c", "image": "busybox", "volumeMounts": [own]},
                         {"name": "d", "image": "busybox"}],
        volumes=[{"name": "mine", "secret": {"secretName": "s"}}]))
    name = _token_volumes(pod)[0]["name"]
    assert pod["spec"]["containers"][0]["volumeMounts"] == [own]
    assert pod["spec"]["containers"][1]["volumeMounts"] == [
        {"name": name, "readOnly": True, "mountPath": MOUNT_PATH}]


def test_missing_service_account_is_refused(server: Server, namespace: str) -> None:
    proc = server.kubectl("-n", namespace, "create", "-f", "-", check=False,
                          input=json.dumps(_pod("p", serviceAccountName="ghost")))
    assert proc.returncode != 0
    assert (f'Error from server (Forbidden): error when creating "STDIN": pods "p" is '
            f"forbidden: error looking up service account {namespace}/ghost: "
            f'serviceaccount "ghost" not found') in proc.stderr
    # Dry run is refused the same way, and nothing was stored.
    proc = server.kubectl("-n", namespace, "create", "--dry-run=server", "-f", "-",
                          check=False, input=json.dumps(_pod("p", serviceAccountName="ghost")))
    assert "serviceaccount \"ghost\" not found" in proc.stderr
    assert server.kubectl("-n", namespace, "get", "pods", "-o", "name").stdout == ""


def test_image_pull_secrets_come_from_the_account(server: Server, namespace: str) -> None:
    server.kubectl("-n", namespace, "create", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "puller"},
        "imagePullSecrets": [{"name": "regcred"}]}))
    pod = _create(server, namespace, _pod("p", serviceAccountName="puller"))
    assert pod["spec"]["imagePullSecrets"] == [{"name": "regcred"}]
    pod = _create(server, namespace, _pod("q", serviceAccountName="puller",
                                          imagePullSecrets=[{"name": "mine"}]))
    assert pod["spec"]["imagePullSecrets"] == [{"name": "mine"}]


def test_enforce_mountable_secrets(server: Server, namespace: str) -> None:
    server.kubectl("-n", namespace, "create", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": "strict",
                     "annotations": {"kubernetes.io/enforce-mountable-secrets": "true"}},
        "secrets": [{"name": "allowed"}]}))
    ok = _pod("p", serviceAccountName="strict",
              volumes=[{"name": "v", "secret": {"secretName": "allowed"}}])
    assert _create(server, namespace, ok)["metadata"]["name"] == "p"
    bad = _pod("q", serviceAccountName="strict",
               volumes=[{"name": "v", "secret": {"secretName": "other"}}])
    proc = server.kubectl("-n", namespace, "create", "-f", "-", check=False,
                          input=json.dumps(bad))
    assert ('pods "q" is forbidden: volume with secret.secretName="other" is not allowed '
            "because service account strict does not reference that secret") in proc.stderr


def test_mirror_pods_are_not_mutated(server: Server, namespace: str) -> None:
    mirror = _pod("m")
    mirror["metadata"]["annotations"] = {"kubernetes.io/config.mirror": "abc"}
    pod = _create(server, namespace, mirror)
    assert not pod["spec"].get("volumes")
    assert not pod["spec"]["containers"][0].get("volumeMounts")
    assert not pod["spec"].get("serviceAccountName")
    mirror = _pod("n", serviceAccountName="default")
    mirror["metadata"]["annotations"] = {"kubernetes.io/config.mirror": "abc"}
    proc = server.kubectl("-n", namespace, "create", "-f", "-", check=False,
                          input=json.dumps(mirror))
    assert 'pods "n" is forbidden: a mirror pod may not reference service accounts' in \
        proc.stderr


def test_new_namespace_on_a_cluster(cluster: Server, cluster_ns: str) -> None:
    """With a controller manager running, a pod made right after its
    namespace waits for the default account instead of failing."""
    cluster.kubectl("-n", cluster_ns, "run", "p", "--image=busybox", "--restart=Never")
    pod = json.loads(cluster.kubectl("-n", cluster_ns, "get", "pod", "p", "-o",
                                     "json").stdout)
    assert len(_token_volumes(pod)) == 1
    proc = cluster.kubectl("-n", cluster_ns, "run", "q", "--image=busybox",
                           "--overrides", json.dumps({"spec": {"serviceAccountName": "nope"}}),
                           check=False)
    assert (f"error looking up service account {cluster_ns}/nope: "
            f'serviceaccount "nope" not found') in proc.stderr
