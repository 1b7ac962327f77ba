"""Service cluster IPs and node ports, allocated through the Store.

Each allocated IP or port is a key of its own (``/registry/ranges/...``)
created with the Store's create, which fails if the key exists. So two API
servers on one etcd never hand out the same address, and allocations
survive restarts without a separate bitmap.
"""

from __future__ import annotations

import ipaddress
import random

from pinnace.storage.interface import KeyExistsError, KeyNotFoundError, Store

IP_PREFIX = "/registry/ranges/serviceips/"
PORT_PREFIX = "/registry/ranges/servicenodeports/"


class AllocationError(Exception):
    pass


class RangeAllocator:
    def __init__(self, store: Store, prefix: str, first: int, size: int, reserved: int = 0):
        """reserved: how many values at the start of the range dynamic
        allocation leaves for users who ask for a value (Kubernetes' static
        subranges, KEP-3070 and KEP-3668), unless the rest is full."""
        self.store = store
        self.prefix = prefix
        self.first = first
        self.size = size
        self.reserved = min(reserved, size // 2)

    def _key(self, value: int) -> str:
        return f"{self.prefix}{value}"

    def contains(self, value: int) -> bool:
        return self.first <= value < self.first + self.size

    async def allocate(self, value: int, owner: bytes) -> None:
        """Reserve ``value``; AllocationError if it is out of range or taken."""
        if not self.contains(value):
            raise AllocationError("provided value is not in the valid range")
        try:
            await self.store.create(self._key(value), owner)
        except KeyExistsError:
            raise AllocationError("provided value is already allocated") from None

    async def allocate_next(self, owner: bytes) -> int:
        # Random probing keeps allocation O(1) expected while the range is
        # sparse; a full scan guarantees an answer when it is nearly full.
        dynamic = self.first + self.reserved
        for _ in range(32):
            value = dynamic + random.randrange(self.size - self.reserved)
            try:
                await self.store.create(self._key(value), owner)
                return value
            except KeyExistsError:
                continue
        used = {int(kv.key[len(self.prefix):]) for kv in (await self.store.list(self.prefix)).kvs}
        for value in [*range(dynamic, self.first + self.size), *range(self.first, dynamic)]:
            if value not in used:
                try:
                    await self.store.create(self._key(value), owner)
                    return value
                except KeyExistsError:
                    continue
        raise AllocationError("range is full")

    async def release(self, value: int) -> None:
        try:
            await self.store.delete(self._key(value))
        except KeyNotFoundError:
            pass


class ServiceIPAllocator:
    def __init__(self, store: Store, cidr: str):
        self.network = ipaddress.ip_network(cidr, strict=False)
        base = int(self.network.network_address)
        # The network address and (for IPv4) broadcast address are never handed out.
        size = self.network.num_addresses - (2 if self.network.version == 4 else 1)
        # The static band: min(max(16, size/16), 256) addresses, so the
        # kube-dns address (the tenth) is free when the DNS asks for it.
        self.range = RangeAllocator(store, IP_PREFIX, base + 1, size,
                                    reserved=min(max(16, size // 16), 256))

    @property
    def first_ip(self) -> str:
        return str(ipaddress.ip_address(self.range.first))

    def _int(self, ip: str) -> int:
        return int(ipaddress.ip_address(ip))

    async def allocate(self, ip: str, owner: bytes) -> None:
        try:
            value = self._int(ip)
        except ValueError:
            raise AllocationError("not a valid IP address") from None
        if not self.range.contains(value):
            raise AllocationError(f"the provided IP ({ip}) is not in the valid range. "
                                  f"The range of valid IPs is {self.network}")
        try:
            await self.range.allocate(value, owner)
        except AllocationError:
            raise AllocationError("provided IP is already allocated") from None

    async def allocate_next(self, owner: bytes) -> str:
        return str(ipaddress.ip_address(await self.range.allocate_next(owner)))

    async def release(self, ip: str) -> None:
        try:
            await self.range.release(self._int(ip))
        except ValueError:
            pass


class NodePortAllocator:
    def __init__(self, store: Store, first: int = 30000, last: int = 32767):
        self.first, self.last = first, last
        size = last - first + 1
        self.range = RangeAllocator(store, PORT_PREFIX, first, size,
                                    reserved=min(max(16, size // 32), 128))

    async def allocate(self, port: int, owner: bytes) -> None:
        if not self.range.contains(port):
            raise AllocationError(f"provided port is not in the valid range. "
                                  f"The range of valid ports is {self.first}-{self.last}")
        try:
            await self.range.allocate(port, owner)
        except AllocationError:
            raise AllocationError("provided port is already allocated") from None

    async def allocate_next(self, owner: bytes) -> int:
        return await self.range.allocate_next(owner)

    async def release(self, port: int) -> None:
        await self.range.release(port)
