"""Pod CIDR bookkeeping: distinct ranges, occupation of existing ones,
release and exhaustion."""

from __future__ import annotations

import pytest

from pinnace.controllers.nodeipam import CIDRSet, build_sets, node_cidrs


def test_hands_out_distinct_node_ranges_until_full() -> None:
    s = CIDRSet("10.244.0.0/22", 24)
    got = [s.allocate() for _ in range(4)]
    assert got == ["10.244.0.0/24", "10.244.1.0/24", "10.244.2.0/24", "10.244.3.0/24"]
    assert s.allocate() is None


def test_existing_ranges_are_never_given_twice() -> None:
    s = CIDRSet("10.244.0.0/23", 24)
    assert s.occupy("10.244.0.0/24")
    assert s.allocate() == "10.244.1.0/24"
    assert s.allocate() is None
    # Ranges outside the cluster CIDR or of another size are not ours.
    assert not s.occupy("10.1.0.0/24")
    assert not s.occupy("10.244.0.0/25")
    assert not s.occupy("fd00::/64")


def test_released_range_comes_back_after_the_others() -> None:
    s = CIDRSet("10.0.0.0/22", 24)
    a, b = s.allocate(), s.allocate()
    s.release(a or "")
    assert s.allocate() == "10.0.2.0/24"  # the just-released one is not reused first
    assert s.allocate() == "10.0.3.0/24"
    assert s.allocate() == a
    assert b == "10.0.1.0/24"


def test_dual_stack_and_masks() -> None:
    v4, v6 = build_sets("10.244.0.0/16, fd00:10:244::/56")
    assert v4.allocate() == "10.244.0.0/24"
    assert v6.allocate() == "fd00:10:244::/64"
    assert build_sets("10.0.0.0/8", mask_v4=16)[0].allocate() == "10.0.0.0/16"


def test_bad_configurations() -> None:
    with pytest.raises(ValueError):
        CIDRSet("10.0.0.0/24", 16)  # node range larger than the cluster's
    with pytest.raises(ValueError):
        CIDRSet("10.0.0.0/8", 30)  # too many ranges to track
    with pytest.raises(ValueError):
        build_sets("")


def test_node_cidrs_reads_either_field() -> None:
    assert node_cidrs({"spec": {"podCIDR": "10.0.0.0/24"}}) == ["10.0.0.0/24"]
    assert node_cidrs({"spec": {"podCIDR": "10.0.0.0/24",
                                "podCIDRs": ["10.0.0.0/24", "fd00::/64"]}}) == \
        ["10.0.0.0/24", "fd00::/64"]
    assert node_cidrs({"spec": {}}) == []
