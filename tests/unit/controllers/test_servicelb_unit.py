"""The LoadBalancer address pool."""

from __future__ import annotations

import pytest

from pinnace.controllers.servicelb import AddressPool, ingress_ips, wants_address


def test_range_pool_hands_out_in_order_until_empty() -> None:
    p = AddressPool("172.18.255.200-172.18.255.202")
    assert [p.allocate(k) for k in ("a/x", "a/y", "a/z")] == [
        "172.18.255.200", "172.18.255.201", "172.18.255.202"]
    assert p.allocate("a/w") is None
    assert p.release("a/y") == ["172.18.255.201"]
    assert p.allocate("a/w") == "172.18.255.201"


def test_cidrs_single_addresses_and_ipv6() -> None:
    p = AddressPool("10.0.0.0/31, 10.1.1.1, fd00::5-fd00::6")
    got = [p.allocate(str(i)) for i in range(5)]
    assert got == ["10.0.0.0", "10.0.0.1", "10.1.1.1", "fd00::5", "fd00::6"]
    assert p.contains("fd00::6") and not p.contains("fd00::7") and not p.contains("bogus")


def test_requested_addresses() -> None:
    p = AddressPool("10.0.0.1-10.0.0.3")
    assert p.assign("10.0.0.2", "ns/a")
    assert p.assign("10.0.0.2", "ns/a")  # idempotent for its holder
    assert not p.assign("10.0.0.2", "ns/b")  # taken
    assert not p.assign("192.168.0.1", "ns/b")  # not in the pool
    assert p.held_by("ns/a") == ["10.0.0.2"]
    assert p.allocate("ns/b") == "10.0.0.1"


def test_bad_pool() -> None:
    with pytest.raises(ValueError):
        AddressPool("10.0.0.5-10.0.0.1")
    with pytest.raises(ValueError):
        AddressPool("10.0.0.1-fd00::1")


def svc(type_: str = "LoadBalancer", **spec: object) -> dict:
    return {"metadata": {"name": "s", "namespace": "n"}, "spec": {"type": type_, **spec}}


def test_which_services_get_an_address() -> None:
    assert wants_address(svc())
    assert not wants_address(svc("ClusterIP"))
    assert not wants_address(svc(loadBalancerClass="example.com/other"))
    assert ingress_ips({"status": {"loadBalancer": {"ingress": [
        {"ip": "1.2.3.4"}, {"hostname": "lb.example.com"}]}}}) == ["1.2.3.4"]
