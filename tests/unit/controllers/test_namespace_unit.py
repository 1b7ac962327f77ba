"""The namespace deletion conditions as upstream writes them."""

from __future__ import annotations

from pinnace.controllers.namespace import CONDITION_ORDER, build_conditions


def test_conditions_all_clear_then_failing() -> None:
    ok = build_conditions([], {}, "T1")
    assert [c["type"] for c in ok] == CONDITION_ORDER
    assert all(c["status"] == "False" for c in ok)
    assert ok[0]["reason"] == "ResourcesDiscovered"
    failing = build_conditions(ok, {"NamespaceContentRemaining": (
        "SomeResourcesRemain", "Some resources are remaining: pods. has 1 resource instances")},
        "T2")
    by = {c["type"]: c for c in failing}
    assert by["NamespaceContentRemaining"]["status"] == "True"
    assert by["NamespaceContentRemaining"]["lastTransitionTime"] == "T2"
    assert by["NamespaceDeletionDiscoveryFailure"]["lastTransitionTime"] == "T1"
