"""Service IPs and node ports: allocated once, released on demand, shared through the Store."""

from __future__ import annotations

import pytest

from pinnace.apiserver.allocator import AllocationError, NodePortAllocator, ServiceIPAllocator
from pinnace.storage.memory import MemoryStore


async def test_ips_are_unique_and_reusable_after_release() -> None:
    store = MemoryStore()
    ips = ServiceIPAllocator(store, "10.96.0.0/28")
    assert ips.first_ip == "10.96.0.1"
    got = {await ips.allocate_next(b"o") for _ in range(14)}
    assert len(got) == 14 and "10.96.0.0" not in got and "10.96.0.15" not in got
    with pytest.raises(AllocationError, match="full"):
        await ips.allocate_next(b"o")
    await ips.release("10.96.0.5")
    assert await ips.allocate_next(b"o") == "10.96.0.5"


async def test_specific_ip_conflicts_and_range_checks() -> None:
    store = MemoryStore()
    ips = ServiceIPAllocator(store, "10.96.0.0/12")
    await ips.allocate("10.96.0.10", b"a")
    with pytest.raises(AllocationError, match="already allocated"):
        await ips.allocate("10.96.0.10", b"b")
    with pytest.raises(AllocationError, match="not in the valid range"):
        await ips.allocate("192.0.2.1", b"b")


async def test_two_allocators_on_one_store_never_share_a_port() -> None:
    store = MemoryStore()
    a, b = NodePortAllocator(store, 30000, 30009), NodePortAllocator(store, 30000, 30009)
    ports = [await (a if i % 2 else b).allocate_next(b"x") for i in range(10)]
    assert sorted(ports) == list(range(30000, 30010))
    with pytest.raises(AllocationError):
        await a.allocate(30003, b"y")
    with pytest.raises(AllocationError, match="valid range"):
        await a.allocate(80, b"y")


async def test_dynamic_allocation_leaves_the_static_band_to_those_who_ask() -> None:
    store = MemoryStore()
    ips = ServiceIPAllocator(store, "10.96.0.0/24")    # 254 addresses: the first 16 are static
    got = [await ips.allocate_next(b"o") for _ in range(100)]
    assert all(int(ip.rsplit(".", 1)[1]) > 16 for ip in got)
    await ips.allocate("10.96.0.10", b"dns")             # the kube-dns address stays free
    ports = NodePortAllocator(MemoryStore())             # 2,768 ports: the first 86 are static
    assert all(p >= 30086 for p in [await ports.allocate_next(b"o") for _ in range(100)])
