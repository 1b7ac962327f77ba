"""Node IPAM against a real API server: nodes get distinct pod CIDRs, kept
across a controller restart, released when a node goes."""

from __future__ import annotations

import ipaddress
from typing import Any

from pinnace.controllers.nodeipam import NodeIpamController
from tests.conftest import Server
from tests.integration.controllers.nodes_harness import (
    events_for,
    eventually,
    kubectl,
    own_server,
    register_node,
    run_controllers,
)

__all__ = ["own_server"]

Obj = dict[str, Any]
# A /23 holds exactly two /24 node ranges: the third node finds the pool full.
OPTIONS = {"cluster_cidr": "10.77.0.0/23"}


async def _cidr(nodes: Any, name: str) -> str | None:
    spec = (await nodes.get(name)).get("spec") or {}
    if spec.get("podCIDR"):
        assert spec["podCIDRs"] == [spec["podCIDR"]]
        return str(spec["podCIDR"])
    return None


async def test_nodes_get_distinct_cidrs_and_released_ones_are_reused(own_server: Server) -> None:
    async with run_controllers(own_server, NodeIpamController, options=OPTIONS) as run:
        c = run.client
        nodes = c.resource("v1", "nodes")
        await register_node(c, "ipam-a", lease=False)
        await register_node(c, "ipam-b", lease=False)
        a = await eventually(lambda: _cidr(nodes, "ipam-a"), what="ipam-a podCIDR")
        b = await eventually(lambda: _cidr(nodes, "ipam-b"), what="ipam-b podCIDR")
        assert a != b
        pool = ipaddress.ip_network("10.77.0.0/23")
        for cidr in (a, b):
            net = ipaddress.ip_network(cidr)
            assert net.prefixlen == 24 and net.subnet_of(pool)
        out = await kubectl(own_server, "get", "nodes", "-o",
                            "custom-columns=NAME:.metadata.name,CIDR:.spec.podCIDR")
        assert a in out and b in out

    # A restarted controller learns what is taken from the nodes themselves.
    async with run_controllers(own_server, NodeIpamController, options=OPTIONS) as run:
        c = run.client
        nodes = c.resource("v1", "nodes")
        await register_node(c, "ipam-c", lease=False)
        evs = await eventually(lambda: events_for(c, "default", "ipam-c"), what="event")
        assert any(e["reason"] == "CIDRNotAvailable" and e["type"] == "Warning" and
                   e["message"] == "Node ipam-c status is now: CIDRNotAvailable" for e in evs)
        assert await _cidr(nodes, "ipam-c") is None
        await kubectl(own_server, "delete", "node", "ipam-a")
        got = await eventually(lambda: _cidr(nodes, "ipam-c"), what="ipam-c gets a's range")
        assert got == a
        assert await _cidr(nodes, "ipam-b") == b
        await kubectl(own_server, "delete", "node", "ipam-b", "ipam-c")


async def test_node_registered_before_the_controller_starts_gets_a_cidr(own_server: Server) -> None:
    """`pinnace server` restarting, or its agent registering first: the
    controller must not take a node with no CIDR for one it already served."""
    async with run_controllers(own_server, options=OPTIONS) as run:
        await register_node(run.client, "ipam-early", lease=False)
    async with run_controllers(own_server, NodeIpamController, options=OPTIONS) as run:
        nodes = run.client.resource("v1", "nodes")
        assert await eventually(lambda: _cidr(nodes, "ipam-early"), what="ipam-early podCIDR")
