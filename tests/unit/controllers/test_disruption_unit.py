"""The disruption controller's arithmetic and conditions, as upstream's helpers compute them."""

from __future__ import annotations

import pytest

from pinnace.controllers.disruption import (
    _go_selector,
    conditions_up_to_date,
    disruption_allowed_condition,
    group_of,
    is_kind,
    scaled_value,
    set_condition,
)


def test_scaled_values_round_up() -> None:
    assert scaled_value(2, 10) == 2
    assert scaled_value("34%", 3) == 2  # 1.02 pods, rounded up
    assert scaled_value("50%", 3) == 2
    assert scaled_value("0%", 7) == 0 and scaled_value("100%", 7) == 7
    with pytest.raises(ValueError, match="string is not a percentage"):
        scaled_value("5", 10)
    with pytest.raises(ValueError, match='invalid value "x%"'):
        scaled_value("x%", 10)


def test_controller_refs_by_group_and_kind() -> None:
    assert group_of("v1") == "" and group_of("apps/v1") == "apps"
    with pytest.raises(ValueError):
        group_of("a/b/c")
    rs = {"apiVersion": "apps/v1", "kind": "ReplicaSet"}
    assert is_kind(rs, "ReplicaSet", ("apps", "extensions"))
    assert not is_kind(rs, "ReplicaSet", ("",)) and not is_kind(rs, "Deployment", ("apps",))


def test_conditions() -> None:
    st: dict = {"disruptionsAllowed": 1, "observedGeneration": 3}
    disruption_allowed_condition(st, "T1")
    assert st["conditions"] == [{"type": "DisruptionAllowed", "status": "True",
                                 "lastTransitionTime": "T1", "reason": "SufficientPods",
                                 "message": "", "observedGeneration": 3}]
    pdb = {"metadata": {"generation": 3}, "status": st}
    assert conditions_up_to_date(pdb)
    st["disruptionsAllowed"] = 0
    assert not conditions_up_to_date(pdb)
    disruption_allowed_condition(st, "T2")
    assert st["conditions"][0]["reason"] == "InsufficientPods" and \
        st["conditions"][0]["lastTransitionTime"] == "T2"
    # The transition time moves only with the status.
    set_condition(st, "DisruptionAllowed", "False", "SyncFailed", "boom", 3, "T3")
    assert (st["conditions"][0]["reason"], st["conditions"][0]["lastTransitionTime"]) == \
        ("SyncFailed", "T2")
    pdb["metadata"]["generation"] = 4
    assert not conditions_up_to_date(pdb)


def test_selector_as_upstream_prints_it() -> None:
    assert _go_selector(None) == "nil"
    assert _go_selector({"matchLabels": {"b": "2", "a": "1"}, "matchExpressions": [
        {"key": "k", "operator": "In", "values": ["x", "y"]}]}) == (
        "&LabelSelector{MatchLabels:map[string]string{a: 1,b: 2,},MatchExpressions:"
        "[]LabelSelectorRequirement{LabelSelectorRequirement{Key:k,Operator:In,Values:[x y],},},}")
