"""Which routes to other nodes' pods an agent wants (host-gw)."""

from __future__ import annotations

import ipaddress

from pinnace.kubelet.routes import _wanted

CLUSTER = ipaddress.IPv4Network("10.244.0.0/16")


def node(name, cidr=None, ip=None):  # type: ignore[no-untyped-def]
    return {"metadata": {"name": name}, "spec": {"podCIDR": cidr} if cidr else {},
            "status": {"addresses": [{"type": "InternalIP", "address": ip}] if ip else []}}


def test_every_other_node_with_a_range_and_an_address():
    nodes = [node("me", "10.244.0.0/24", "198.18.1.1"), node("two", "10.244.1.0/24", "198.18.1.2"),
             node("new"), node("no-ip", "10.244.3.0/24"),
             node("foreign", "192.168.0.0/24", "198.18.1.4")]   # outside the cluster range
    assert _wanted(nodes, "me", CLUSTER) == {"10.244.1.0/24": "198.18.1.2"}
