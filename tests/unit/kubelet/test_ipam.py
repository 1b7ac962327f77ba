"""Pod IPs per node: unique among live pods, stable per pod, freed on delete."""

from __future__ import annotations

import ipaddress

import pytest

from pinnace.kubelet.ipam import NodeIPAM, PoolExhausted, fallback_cidr


def test_fallback_ranges_are_distinct_per_node() -> None:
    assert fallback_cidr(0) == "10.244.0.0/24"
    assert fallback_cidr(1) == "10.244.1.0/24"
    assert fallback_cidr(255) == "10.244.255.0/24"
    cidrs = {fallback_cidr(i) for i in range(5000)}
    assert len(cidrs) == 5000
    assert all(ipaddress.ip_network(c).subnet_of(ipaddress.ip_network("10.0.0.0/8"))
               for c in cidrs)


def test_addresses_skip_network_gateway_and_broadcast() -> None:
    ipam = NodeIPAM("10.244.3.0/24")
    ips = [ipam.allocate(f"pod-{i}") for i in range(253)]
    assert ips[0] == "10.244.3.2"
    assert len(set(ips)) == 253
    assert not {"10.244.3.0", "10.244.3.1", "10.244.3.255"} & set(ips)
    with pytest.raises(PoolExhausted):
        ipam.allocate("one-too-many")


def test_same_pod_keeps_its_address() -> None:
    ipam = NodeIPAM("10.244.0.0/24")
    a = ipam.allocate("a")
    assert ipam.allocate("a") == a == ipam.get("a")
    assert len(ipam) == 1


def test_released_address_is_not_reused_at_once() -> None:
    ipam = NodeIPAM("10.244.0.0/24")
    a = ipam.allocate("a")
    ipam.release("a")
    assert ipam.get("a") is None
    assert ipam.allocate("b") != a
    # ...but it comes back once the range wraps around.
    ips = {ipam.allocate(f"p{i}") for i in range(252)}
    assert a in ips


def test_reserve_records_existing_addresses_and_refuses_duplicates() -> None:
    ipam = NodeIPAM("10.244.0.0/24")
    assert ipam.reserve("a", "10.244.0.2")
    assert ipam.reserve("a", "10.244.0.2")
    assert not ipam.reserve("b", "10.244.0.2")
    assert ipam.allocate("c") != "10.244.0.2"
    assert not ipam.reserve("d", "not-an-ip")


def test_switching_range_keeps_live_pods_unique() -> None:
    ipam = NodeIPAM("10.244.0.0/24")
    old = ipam.allocate("a")
    ipam.set_cidr("10.250.7.0/24")
    new = ipam.allocate("b")
    assert ipaddress.ip_address(new) in ipaddress.ip_network("10.250.7.0/24")
    assert ipam.get("a") == old


def test_small_and_ipv6_ranges() -> None:
    assert NodeIPAM("10.1.0.0/30").allocate("a") == "10.1.0.2"
    v6 = NodeIPAM("fd00:10:244::/64")
    assert v6.allocate("a") == "fd00:10:244::2"
