"""The garbage collector through real kubectl: background, foreground and
orphan cascading deletion, dangling owners, custom resources."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from pinnace.controllers.garbagecollector import GarbageCollector
from tests.conftest import Server, wait_for
from tests.integration.controllers.batch_harness import Controllers, open_crd


@pytest.fixture
def gc(server: Server) -> Iterator[Controllers]:
    with Controllers(server, [GarbageCollector], options={"gc_discovery_seconds": 0.5}) as h:
        yield h


def create(server: Server, ns: str, obj: dict) -> dict:
    out = server.kubectl("-n", ns, "create", "-f", "-", "-o", "json", input=json.dumps(obj))
    return json.loads(out.stdout)


def cm(name: str, *owners: dict, block: bool = True) -> dict:
    refs = [{"apiVersion": o["apiVersion"], "kind": o["kind"], "name": o["metadata"]["name"],
             "uid": o["metadata"]["uid"], "blockOwnerDeletion": block} for o in owners]
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, **({"ownerReferences": refs} if refs else {})}}


def exists(server: Server, ns: str, kind: str, name: str) -> bool:
    return server.kubectl("-n", ns, "get", kind, name, check=False).returncode == 0


def owner_uids(server: Server, ns: str, name: str) -> list[str]:
    out = json.loads(server.kubectl("-n", ns, "get", "cm", name, "-o", "json").stdout)
    return [r["uid"] for r in out["metadata"].get("ownerReferences") or []]


def test_background_cascade(server: Server, namespace: str, gc: Controllers) -> None:
    ns = namespace
    owner = create(server, ns, cm("owner"))
    child = create(server, ns, cm("child", owner))
    create(server, ns, cm("grandchild", child))
    server.kubectl("-n", ns, "delete", "cm", "owner")
    wait_for(lambda: not exists(server, ns, "cm", "child") and
             not exists(server, ns, "cm", "grandchild"), what="dependents collected")


def test_dangling_owner_uid_mismatch(server: Server, namespace: str, gc: Controllers) -> None:
    ns = namespace
    owner = create(server, ns, cm("o2"))
    server.kubectl("-n", ns, "delete", "cm", "o2")
    create(server, ns, cm("o2"))  # same name, new uid
    create(server, ns, cm("stale-child", owner))
    wait_for(lambda: not exists(server, ns, "cm", "stale-child"), what="stale child deleted")
    # one owner gone, one alive: only the dangling reference is removed
    alive = create(server, ns, cm("alive"))
    gone = {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "ghost", "uid": "00000000-0000-0000-0000-000000000001"}}
    create(server, ns, cm("two-owners", alive, gone))
    wait_for(lambda: owner_uids(server, ns, "two-owners") == [alive["metadata"]["uid"]],
             what="dangling ref dropped")


def test_foreground_cascade(server: Server, namespace: str, gc: Controllers) -> None:
    ns = namespace
    owner = create(server, ns, cm("fg-owner"))
    child = create(server, ns, cm("fg-child", owner))
    create(server, ns, cm("fg-grandchild", child))
    create(server, ns, cm("fg-loose", owner, block=False))
    server.kubectl("-n", ns, "delete", "cm", "fg-owner", "--cascade=foreground", timeout=60)
    assert not exists(server, ns, "cm", "fg-owner")
    wait_for(lambda: not any(exists(server, ns, "cm", n)
                             for n in ("fg-child", "fg-grandchild", "fg-loose")),
             what="all dependents gone")


def test_orphan(server: Server, namespace: str, gc: Controllers) -> None:
    ns = namespace
    owner = create(server, ns, cm("or-owner"))
    other = create(server, ns, cm("or-other"))
    create(server, ns, cm("or-child", owner, other))
    server.kubectl("-n", ns, "delete", "cm", "or-owner", "--cascade=orphan", timeout=60)
    assert not exists(server, ns, "cm", "or-owner")
    assert owner_uids(server, ns, "or-child") == [other["metadata"]["uid"]]


def test_replicaset_pods_and_custom_resources(server: Server, namespace: str,
                                              gc: Controllers) -> None:
    ns = namespace
    crd = open_crd(f"{ns}.example.com", "widgets", "Widget")
    server.kubectl("create", "-f", "-", input=json.dumps(crd))
    try:
        widget = wait_for(lambda: (r := server.kubectl(
            "-n", ns, "create", "-f", "-", "-o", "json", check=False,
            input=json.dumps({"apiVersion": f"{ns}.example.com/v1", "kind": "Widget",
                              "metadata": {"name": "w"}}))).returncode == 0 and
            json.loads(r.stdout), what="a widget")
        create(server, ns, cm("owned-by-widget", widget))
        # the CR itself, owned by a configmap, is collected too
        holder = create(server, ns, cm("holder"))
        w2 = {"apiVersion": f"{ns}.example.com/v1", "kind": "Widget", "metadata": {
            "name": "w2", "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap",
                                               "name": "holder",
                                               "uid": holder["metadata"]["uid"]}]}}
        create(server, ns, w2)
        server.kubectl("-n", ns, "delete", "widget", "w", "--cascade=foreground", timeout=60)
        assert not exists(server, ns, "cm", "owned-by-widget")
        server.kubectl("-n", ns, "delete", "cm", "holder")
        wait_for(lambda: not exists(server, ns, "widget", "w2"), what="CR collected")
    finally:
        server.kubectl("delete", "crd", crd["metadata"]["name"], check=False)


def _pod(name: str, node: str | None = None) -> dict:
    spec: dict = {"containers": [{"name": "c", "image": "busybox"}]}
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def test_podgc_terminated_threshold_and_orphans(server: Server, namespace: str) -> None:
    from pinnace.controllers.podgc import PodGCController
    ns = namespace
    names = [f"done-{i}" for i in range(4)]
    for n in names:
        create(server, ns, _pod(n))
        server.kubectl("-n", ns, "patch", "pod", n, "--subresource=status", "--type=merge",
                       "-p", '{"status":{"phase":"Succeeded"}}')
    create(server, ns, _pod("lost", node="no-such-node"))
    with Controllers(server, [PodGCController], options={
            "terminated_pod_gc_threshold": 2, "podgc_period": 0.2, "podgc_quarantine": 0}):
        wait_for(lambda: not exists(server, ns, "pod", "lost"), what="orphaned pod deleted")
        wait_for(lambda: [n for n in names if exists(server, ns, "pod", n)] == names[2:],
                 what="oldest terminated pods deleted")
