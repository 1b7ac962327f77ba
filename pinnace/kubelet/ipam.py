"""Pod IPs for one node, the way the host-local CNI plugin hands them out.

Addresses come from the node's spec.podCIDR when node IPAM has set one, else
from a fallback /24 picked by the node's index (the first 256 nodes get the
/24s of 10.244.0.0/16, later ones the /24s that follow it in 10.0.0.0/8).
The network address, the gateway (.1, the bridge's address) and the
broadcast address are never handed out. Allocation continues after the last
address given, so a freed address is not reused at once (a stale endpoint
then points nowhere rather than at the wrong pod).
"""

from __future__ import annotations

import ipaddress

FALLBACK_BASE = ipaddress.IPv4Address("10.244.0.0")
_TEN = int(ipaddress.IPv4Address("10.0.0.0"))


def fallback_cidr(index: int) -> str:
    """The per-node /24 used when the node has no spec.podCIDR."""
    slot = (int(FALLBACK_BASE) - _TEN) // 256 + index
    slot %= 1 << 16  # stay inside 10.0.0.0/8
    return f"{ipaddress.IPv4Address(_TEN + slot * 256)}/24"


class PoolExhausted(Exception):
    pass


class NodeIPAM:
    """Addresses for the pods of one node; keyed by the pod's uid."""

    __slots__ = ("cidr", "_net", "_first", "_size", "_cursor", "_by_owner", "_used")

    def __init__(self, cidr: str):
        self.cidr = ""
        self._by_owner: dict[str, int] = {}
        self._used: dict[int, str] = {}
        self._cursor = 0
        self.set_cidr(cidr)

    def set_cidr(self, cidr: str) -> None:
        """Switch to another range (node IPAM assigned one); live allocations stay."""
        if cidr == self.cidr:
            return
        net = ipaddress.ip_network(cidr, strict=False)
        self.cidr = str(net)
        self._net = net
        if net.num_addresses >= 4:
            # skip network, gateway (.1) and, for IPv4, broadcast
            self._first = int(net.network_address) + 2
            self._size = net.num_addresses - (3 if net.version == 4 else 2)
        else:
            self._first = int(net.network_address)
            self._size = net.num_addresses
        self._size = min(self._size, 1 << 20)  # IPv6 /64s are effectively endless
        self._cursor = 0

    def __len__(self) -> int:
        return len(self._by_owner)

    def get(self, owner: str) -> str | None:
        n = self._by_owner.get(owner)
        return None if n is None else self._fmt(n)

    def _fmt(self, n: int) -> str:
        return str(ipaddress.ip_address(n) if self._net.version == 4
                   else ipaddress.IPv6Address(n))

    def allocate(self, owner: str) -> str:
        """The owner's address; the same one on every call until released."""
        n = self._by_owner.get(owner)
        if n is not None:
            return self._fmt(n)
        for step in range(self._size):
            cand = self._first + (self._cursor + step) % self._size
            if cand not in self._used:
                self._cursor = (self._cursor + step + 1) % self._size
                self._used[cand] = owner
                self._by_owner[owner] = cand
                return self._fmt(cand)
        raise PoolExhausted(f"no free address left in {self.cidr}")

    def reserve(self, owner: str, ip: str) -> bool:
        """Record an address a pod already has (after a restart); False if
        another live pod holds it."""
        try:
            n = int(ipaddress.ip_address(ip))
        except ValueError:
            return False
        holder = self._used.get(n)
        if holder is not None:
            return holder == owner
        old = self._by_owner.pop(owner, None)
        if old is not None:
            self._used.pop(old, None)
        self._used[n] = owner
        self._by_owner[owner] = n
        return True

    def resume_after(self, ip: str) -> None:
        """Continue after ip, the last address handed out before a restart
        (so a freed address is still not reused at once)."""
        try:
            off = int(ipaddress.ip_address(ip)) - self._first
        except ValueError:
            return
        if 0 <= off < self._size:
            self._cursor = (off + 1) % self._size

    def release(self, owner: str) -> None:
        n = self._by_owner.pop(owner, None)
        if n is not None:
            self._used.pop(n, None)
