"""Deleting a namespace empties it, reports progress in its conditions and
finalizes it, so `kubectl delete namespace` returns."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from pinnace.controllers.namespace import NamespaceController
from tests.conftest import Server, wait_for
from tests.integration.controllers.batch_harness import Controllers, open_crd


@pytest.fixture
def ctrl(server: Server) -> Iterator[Controllers]:
    with Controllers(server, [NamespaceController],
                     options={"namespace_recheck_seconds": 0.2}) as h:
        yield h


def create(server: Server, ns: str, obj: dict) -> None:
    server.kubectl("-n", ns, "create", "-f", "-", input=json.dumps(obj))


def conditions(server: Server, ns: str) -> dict[str, dict]:
    out = server.kubectl("get", "namespace", ns, "-o", "json", check=False)
    if out.returncode != 0:
        return {}
    return {c["type"]: c for c in json.loads(out.stdout).get("status", {}).get("conditions")
            or []}


def test_delete_namespace_removes_everything(server: Server, namespace: str,
                                             ctrl: Controllers) -> None:
    ns = namespace
    crd = open_crd(f"{ns}.example.com", "gadgets", "Gadget")
    server.kubectl("create", "-f", "-", input=json.dumps(crd))
    try:
        create(server, ns, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}})
        create(server, ns, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}})
        create(server, ns, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                            "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
        create(server, ns, {"apiVersion": "apps/v1", "kind": "Deployment",
                            "metadata": {"name": "d"},
                            "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {
                                "metadata": {"labels": {"a": "b"}}, "spec": {"containers": [
                                    {"name": "c", "image": "busybox"}]}}}})
        wait_for(lambda: server.kubectl("-n", ns, "create", "-f", "-", check=False, input=json.dumps(
            {"apiVersion": f"{ns}.example.com/v1", "kind": "Gadget",
             "metadata": {"name": "g"}})).returncode == 0, what="a gadget")
        server.kubectl("delete", "namespace", ns, timeout=60)
        assert server.kubectl("get", "namespace", ns, check=False).returncode != 0
    finally:
        server.kubectl("delete", "crd", crd["metadata"]["name"], check=False)


def test_finalizers_remaining_conditions(server: Server, namespace: str,
                                         ctrl: Controllers) -> None:
    ns = namespace
    create(server, ns, {"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": "held", "finalizers": ["example.com/hold"]}})
    server.kubectl("delete", "namespace", ns, "--wait=false")
    conds = wait_for(lambda: (c := conditions(server, ns)).get(
        "NamespaceFinalizersRemaining", {}).get("status") == "True" and c,
        what="finalizers remaining condition")
    assert conds["NamespaceContentRemaining"]["reason"] == "SomeResourcesRemain"
    assert conds["NamespaceContentRemaining"]["message"] == \
        "Some resources are remaining: configmaps. has 1 resource instances"
    assert conds["NamespaceFinalizersRemaining"]["message"] == \
        "Some content in the namespace has finalizers remaining: example.com/hold in 1 " \
        "resource instances"
    assert conds["NamespaceDeletionDiscoveryFailure"]["status"] == "False"
    assert conds["NamespaceDeletionDiscoveryFailure"]["reason"] == "ResourcesDiscovered"
    ns_obj = json.loads(server.kubectl("get", "namespace", ns, "-o", "json").stdout)
    assert ns_obj["status"]["phase"] == "Terminating"
    server.kubectl("-n", ns, "patch", "cm", "held", "--type=merge",
                   "-p", '{"metadata":{"finalizers":null}}')
    wait_for(lambda: server.kubectl("get", "namespace", ns, check=False).returncode != 0,
             what="namespace gone")


def test_nothing_new_in_a_terminating_namespace(server: Server, namespace: str) -> None:
    """No namespace controller runs here, so a finalizer keeps the namespace
    Terminating: creates in it are refused as upstream refuses them."""
    ns = namespace
    server.kubectl("delete", "namespace", ns, "--wait=false")
    wait_for(lambda: json.loads(server.kubectl("get", "namespace", ns, "-o", "json").stdout)
             ["status"].get("phase") == "Terminating", what="the namespace Terminating")
    out = server.kubectl("-n", ns, "create", "configmap", "late", check=False)
    assert out.returncode != 0
    assert ('configmaps "late" is forbidden: unable to create new content in namespace '
            f"{ns} because it is being terminated") in out.stderr
    code, body = server.http().call("POST", f"/api/v1/namespaces/{ns}/configmaps", {
        "metadata": {"name": "late"}})
    assert code == 403 and body["reason"] == "Forbidden"
    assert body["details"]["causes"] == [{"reason": "NamespaceTerminating",
                                          "field": "metadata.namespace",
                                          "message": f"namespace {ns} is being terminated"}]
