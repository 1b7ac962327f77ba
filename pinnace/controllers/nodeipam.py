"""Node IPAM (upstream's nodeipam range allocator): every Node gets its own
slice of the cluster CIDR in spec.podCIDR / spec.podCIDRs, never handed to
two nodes, and returned to the pool when the node is deleted.

Allocations live only in memory: at start they are rebuilt from the CIDRs
existing Nodes already carry, before any new one is handed out. A dual-stack
cluster CIDR ("10.244.0.0/16,fd00:10:244::/56") gives each node one range of
each family.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

from pinnace.client import ApiError

from .base import Context, Controller

Obj = dict[str, Any]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_MASK_DIFF = 16  # upstream's cidrset refuses to track more than 2^16 ranges


class CIDRSet:
    """The node-sized subnets of one cluster CIDR, each free or taken. Hands
    out the next free one after the last given, so a just-released range is
    not reused at once."""

    def __init__(self, cluster_cidr: str, mask: int):
        self.network: Network = ipaddress.ip_network(cluster_cidr.strip(), strict=False)
        if mask < self.network.prefixlen:
            raise ValueError(f"node mask /{mask} is larger than cluster CIDR {self.network}")
        if mask - self.network.prefixlen > MAX_MASK_DIFF:
            raise ValueError(f"node mask /{mask} splits {self.network} into more than "
                             f"2^{MAX_MASK_DIFF} ranges")
        self.mask = mask
        self.size = 1 << (mask - self.network.prefixlen)
        self.used: set[int] = set()
        self._next = 0

    @property
    def version(self) -> int:
        return self.network.version

    def _index(self, cidr: str) -> int | None:
        try:
            net = ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            return None
        if net.version != self.version or net.prefixlen != self.mask or \
                not net.subnet_of(self.network):  # type: ignore[arg-type]
            return None
        step = 1 << (net.max_prefixlen - self.mask)
        return (int(net.network_address) - int(self.network.network_address)) // step

    def _cidr(self, index: int) -> str:
        step = 1 << (self.network.max_prefixlen - self.mask)
        addr = ipaddress.ip_address(int(self.network.network_address) + index * step)
        return f"{addr}/{self.mask}"

    def contains(self, cidr: str) -> bool:
        return self._index(cidr) is not None

    def occupy(self, cidr: str) -> bool:
        i = self._index(cidr)
        if i is None:
            return False
        self.used.add(i)
        return True

    def release(self, cidr: str) -> None:
        i = self._index(cidr)
        if i is not None:
            self.used.discard(i)

    def allocate(self) -> str | None:
        if len(self.used) >= self.size:
            return None
        for off in range(self.size):
            i = (self._next + off) % self.size
            if i not in self.used:
                self.used.add(i)
                self._next = (i + 1) % self.size
                return self._cidr(i)
        return None


def build_sets(cluster_cidr: str, mask_v4: int = 24, mask_v6: int = 64) -> list[CIDRSet]:
    sets = []
    for part in cluster_cidr.split(","):
        if not part.strip():
            continue
        version = ipaddress.ip_network(part.strip(), strict=False).version
        sets.append(CIDRSet(part, mask_v4 if version == 4 else mask_v6))
    if not sets:
        raise ValueError("cluster CIDR is empty")
    return sets


def node_cidrs(node: Obj) -> list[str]:
    spec = node.get("spec") or {}
    cidrs = list(spec.get("podCIDRs") or [])
    if not cidrs and spec.get("podCIDR"):
        cidrs = [spec["podCIDR"]]
    return cidrs


class NodeIpamController(Controller):
    name = "nodeipam"
    event_source = "cidrAllocator"
    workers = 1  # allocations are cheap; one worker keeps the order simple

    def __init__(self, ctx: Context):
        super().__init__(ctx)
        self.sets = build_sets(str(ctx.options.get("cluster_cidr", "10.244.0.0/16")),
                               int(ctx.options.get("node_cidr_mask_size", 24)),
                               int(ctx.options.get("node_cidr_mask_size_ipv6", 64)))
        self.nodes = ctx.informers.informer("v1", "nodes")
        self.node_api = self.client.resource("v1", "nodes")
        self._owned: dict[str, list[str]] = {}  # node -> CIDRs counted as taken for it
        # Nodes told that no CIDR is left: told once, not at every update of theirs.
        self._told_full: set[str] = set()

    def setup(self) -> None:
        self.nodes.add_handler(self.enqueue, lambda old, new: self.enqueue(new),
                               self._node_deleted)

    async def run(self) -> None:
        for node in self.nodes.objects():  # rebuild before handing anything out
            self._occupy(node["metadata"]["name"], node_cidrs(node))
        await super().run()

    def _occupy(self, name: str, cidrs: list[str]) -> None:
        if not cidrs:
            return  # a node without a CIDR yet must not look like one we just assigned
        for cidr in cidrs:
            for s in self.sets:
                if s.occupy(cidr):
                    break
        self._owned[name] = cidrs

    def _release(self, name: str) -> None:
        for cidr in self._owned.pop(name, []):
            for s in self.sets:
                s.release(cidr)

    def _node_deleted(self, node: Obj) -> None:
        self._release(node["metadata"]["name"])
        self._told_full.discard(node["metadata"]["name"])
        for other in self.nodes.objects():  # a node that found the pool full may fit now
            if not node_cidrs(other):
                self.enqueue(other)

    async def sync(self, key: str) -> None:
        node = self.nodes.get(key)
        if node is None:
            self._release(key)
            return
        cidrs = node_cidrs(node)
        if cidrs:
            if self._owned.get(key) != cidrs:
                self._release(key)
                self._occupy(key, cidrs)
            return
        if key in self._owned:
            return  # assigned by us; the informer has not caught up yet
        got: list[str] = []
        for s in self.sets:
            cidr = s.allocate()
            if cidr is None:
                for c in got:
                    for t in self.sets:
                        t.release(c)
                if key not in self._told_full:
                    self._told_full.add(key)
                    self.recorder.event(node, "Warning", "CIDRNotAvailable",
                                        f"Node {key} status is now: CIDRNotAvailable")
                    log_at = logging.WARNING if len(self._told_full) == 1 else logging.DEBUG
                    self.log.log(log_at, "no pod CIDR left in %s for node %s", s.network, key)
                return  # retried when a node is deleted
            got.append(cidr)
        self._owned[key] = got
        self._told_full.discard(key)
        try:
            await self.node_api.patch(key, {
                "metadata": {"resourceVersion": node["metadata"]["resourceVersion"]},
                "spec": {"podCIDR": got[0], "podCIDRs": got}})
        except ApiError as e:
            self._release(key)
            if e.not_found:
                return
            if not e.conflict:
                self.recorder.event(node, "Warning", "CIDRAssignmentFailed",
                                    f"Node {key} status is now: CIDRAssignmentFailed")
            raise
        self.log.info("assigned pod CIDRs %s to node %s", ",".join(got), key)


CONTROLLERS: dict[str, type[Controller]] = {"nodeipam": NodeIpamController}
