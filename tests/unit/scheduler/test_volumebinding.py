"""VolumeBinding with WaitForFirstConsumer claims: the pod schedules, and the
claims to annotate with the chosen node are named."""

from __future__ import annotations

import random
from typing import Any

from conftest import make_node, make_pod

from pinnace.scheduler.cache import SchedulerCache
from pinnace.scheduler.framework import Profile
from pinnace.scheduler.plugins import VolumeBinding


def only(*filters: Any) -> Profile:
    return Profile("t", filters, [], preemption=False, rng=random.Random(0))


def with_claim(name: str) -> dict[str, Any]:
    return make_pod("p", volumes=[{"name": "v", "persistentVolumeClaim": {"claimName": name}}])


def test_volume_binding_waits_for_first_consumer(cache: SchedulerCache) -> None:
    cache.add_node(make_node("a"))
    pvcs = {("default", "late"): {"metadata": {"name": "late", "namespace": "default"},
                                  "spec": {"storageClassName": "local-path"}},
            ("default", "now"): {"metadata": {"name": "now", "namespace": "default"},
                                 "spec": {"storageClassName": "fast"}}}
    classes = {"local-path": {"volumeBindingMode": "WaitForFirstConsumer"},
               "fast": {"volumeBindingMode": "Immediate"}}
    pl = VolumeBinding(lambda ns, n: pvcs.get((ns, n)), lambda n: None, class_lookup=classes.get)
    assert only(pl).schedule(with_claim("late"), cache).node_name == "a"
    assert [c["metadata"]["name"] for c in pl.claims_to_provision(with_claim("late"))] == ["late"]
    r = only(pl).schedule(with_claim("now"), cache)
    assert r.message == "0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims."
    assert pl.claims_to_provision(with_claim("now")) == []
    # Without a class lookup every unbound claim counts as immediate (as before).
    assert only(VolumeBinding(lambda ns, n: pvcs.get((ns, n)))).schedule(
        with_claim("late"), cache).node_name is None


def test_generic_ephemeral_volumes_wait_for_their_claim(cache: SchedulerCache) -> None:
    cache.add_node(make_node("a"))
    pod = make_pod("p", volumes=[{"name": "scratch", "ephemeral": {
        "volumeClaimTemplate": {"spec": {"storageClassName": "local-path"}}}}])
    uid = pod["metadata"].setdefault("uid", "pod-uid")
    pvcs: dict[tuple[str, str], Any] = {}
    classes = {"local-path": {"volumeBindingMode": "WaitForFirstConsumer"}}
    pl = VolumeBinding(lambda ns, n: pvcs.get((ns, n)), lambda n: None, class_lookup=classes.get)
    r = only(pl).schedule(pod, cache)
    assert r.node_name is None and "waiting for ephemeral volume controller to create the " \
        'persistentvolumeclaim "p-scratch"' in r.message
    # Someone else's claim of that name is not the pod's.
    pvcs[("default", "p-scratch")] = {"metadata": {"name": "p-scratch", "namespace": "default"},
                                      "spec": {"storageClassName": "local-path"}}
    r = only(pl).schedule(pod, cache)
    assert "PVC default/p-scratch was not created for pod default/p (pod is not owner)" in \
        r.message
    pvcs[("default", "p-scratch")]["metadata"]["ownerReferences"] = [
        {"kind": "Pod", "name": "p", "uid": uid, "controller": True}]
    assert only(pl).schedule(pod, cache).node_name == "a"
    assert [c["metadata"]["name"] for c in pl.claims_to_provision(pod)] == ["p-scratch"]
