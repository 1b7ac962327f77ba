"""The garbage collector through real kubectl: background, foreground and
orphan cascading deletion, dangling owners, custom resources."""

from __future__ import annotations

import json
import time
import uuid
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


# -- owners of a kind the collector has not discovered yet (issue 11, item 4) ----------


@pytest.fixture
def gc_default(server: Server) -> Iterator[Controllers]:
    """The collector with its production discovery period (30 s), so nothing
    but its own reaction to an unknown kind can find a new CRD in time."""
    with Controllers(server, [GarbageCollector]) as h:
        yield h


def _new_crd_with_widget(server: Server, ns: str, suffix: str) -> tuple[dict, dict]:
    crd = open_crd(f"{ns}-{suffix}.example.com", "gadgets", "Gadget")
    server.kubectl("create", "-f", "-", input=json.dumps(crd))
    widget = wait_for(lambda: (r := server.kubectl(
        "-n", ns, "create", "-f", "-", "-o", "json", check=False,
        input=json.dumps({"apiVersion": f"{ns}-{suffix}.example.com/v1", "kind": "Gadget",
                          "metadata": {"name": "g"}}))).returncode == 0 and
        json.loads(r.stdout), what="a gadget")
    return crd, widget


def test_owner_of_a_new_crd_kind_is_retried_until_discovered(
        server: Server, namespace: str, gc_default: Controllers) -> None:
    """An operator installs its CRD, creates an object and its children at
    once, then deletes the object: the children must go (upstream retries an
    item whose owner's kind is not known yet, and re-runs discovery)."""
    ns = namespace
    crd, gadget = _new_crd_with_widget(server, ns, "bg")
    try:
        create(server, ns, cm("gadget-child", gadget))
        create(server, ns, cm("gadget-grandchild", create(server, ns, cm("gadget-mid", gadget))))
        server.kubectl("-n", ns, "delete", "gadget", "g")
        wait_for(lambda: not any(exists(server, ns, "cm", n) for n in
                                 ("gadget-child", "gadget-mid", "gadget-grandchild")),
                 timeout=20, what="children of a deleted custom resource collected")
    finally:
        server.kubectl("delete", "crd", crd["metadata"]["name"], check=False)
    # The CRD is gone: so is the collector's monitor of its resource.
    collector = gc_default.get(GarbageCollector)
    gr = (crd["spec"]["group"], "gadgets")
    wait_for(lambda: gc_default.call(lambda: gr not in collector._watched), timeout=20,
             what="the custom resource's monitor stopped")


def test_foreground_deletion_of_a_new_crd_kind(server: Server, namespace: str,
                                               gc_default: Controllers) -> None:
    """Foreground deletion of a custom resource whose CRD was just created
    completes promptly: the collector re-runs discovery when CRDs change."""
    ns = namespace
    crd, gadget = _new_crd_with_widget(server, ns, "fg")
    try:
        create(server, ns, cm("fg-gadget-child", gadget))
        server.kubectl("-n", ns, "delete", "gadget", "g", "--cascade=foreground",
                       "--timeout=20s", timeout=30)
        assert not exists(server, ns, "gadget", "g")
        assert not exists(server, ns, "cm", "fg-gadget-child")
    finally:
        server.kubectl("delete", "crd", crd["metadata"]["name"], check=False)


def test_cluster_scoped_dependent_of_a_namespaced_owner_kind_is_kept(
        server: Server, gc: Controllers) -> None:
    """Upstream leaves a cluster-scoped object whose owner reference names a
    namespaced kind alone (the reference cannot be resolved); one whose
    cluster-scoped owner is gone is collected."""
    name = f"gc-scope-{uuid.uuid4().hex[:6]}"

    def role(suffix: str, owner: dict) -> dict:
        return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "metadata": {"name": f"{name}-{suffix}", "ownerReferences": [owner]},
                "rules": []}

    gone_ns = {"apiVersion": "v1", "kind": "Namespace", "name": f"{name}-nowhere",
               "uid": str(uuid.uuid4())}
    cm_owner = {"apiVersion": "v1", "kind": "ConfigMap", "name": "somewhere",
                "uid": str(uuid.uuid4())}
    server.kubectl("create", "-f", "-", input=json.dumps(
        {"apiVersion": "v1", "kind": "List",
         "items": [role("control", gone_ns), role("odd", cm_owner)]}))
    try:
        wait_for(lambda: server.kubectl("get", "clusterrole", f"{name}-control",
                                        check=False).returncode != 0,
                 what="the role whose owner is gone collected")
        time.sleep(1)
        assert server.kubectl("get", "clusterrole", f"{name}-odd", check=False).returncode == 0
    finally:
        server.kubectl("delete", "clusterrole", f"{name}-odd", f"{name}-control",
                       "--ignore-not-found", check=False)
