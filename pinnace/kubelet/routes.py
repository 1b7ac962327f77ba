"""Routes to the other nodes' pods (host-gw, as flannel's host-gw backend
does): for every other Node with a podCIDR, a route to that range via the
node's InternalIP, so any pod reaches any pod by its address without
encapsulation. It needs the nodes on one layer-2 network; when a node's
address is not on-link here, the route goes through the gateway this host
uses to reach that address.

The routes are more specific than the guard device's route for the whole
cluster range, so traffic for a range no node holds still stays on this
machine. Routes this agent made carry protocol number 200 ("pinnace"), so
routes gone from the API are removed and nothing else is touched.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from typing import Any

from pinnace.client import Client, Informer

log = logging.getLogger("pinnace.kubelet.routes")

Obj = dict[str, Any]
RTPROT_PINNACE = 200
_MAIN_TABLE = 254


def _wanted(nodes: list[Obj], me: str, cluster: ipaddress.IPv4Network) -> dict[str, str]:
    """podCIDR → the node address to reach it through, for the other nodes."""
    out = {}
    for node in nodes:
        if node["metadata"]["name"] == me:
            continue
        cidr = (node.get("spec") or {}).get("podCIDR")
        ip = next((a.get("address") for a in (node.get("status") or {}).get("addresses") or []
                   if a.get("type") == "InternalIP" and ":" not in (a.get("address") or "")), None)
        if not cidr or not ip:
            continue
        try:
            net = ipaddress.IPv4Network(cidr)
        except ValueError:
            continue
        if net.subnet_of(cluster):
            out[str(net)] = ip
    return out


def sync_routes(wanted: dict[str, str]) -> None:
    """Make this host's pinnace routes exactly ``wanted`` (blocking: netlink)."""
    from pinnace.pyroute import IPRoute, NetlinkError

    with IPRoute() as ipr:
        have = {}
        for r in ipr.get_routes(family=2, table=_MAIN_TABLE):
            if r["proto"] == RTPROT_PINNACE:
                have[f"{r.get_attr('RTA_DST')}/{r['dst_len']}"] = r.get_attr("RTA_GATEWAY")
        for dst in have.keys() - wanted.keys():
            ipr.route("del", dst=dst, table=_MAIN_TABLE, proto=RTPROT_PINNACE)
            log.info("route to %s removed (its node is gone)", dst)
        for dst, node_ip in wanted.items():
            gateway = node_ip
            try:
                via = ipr.route("get", dst=node_ip)[0]
                if via.get_attr("RTA_GATEWAY"):
                    gateway = via.get_attr("RTA_GATEWAY")
                elif via["type"] == 2:  # RTN_LOCAL: a node on this very host? not routable
                    continue
            except NetlinkError as e:
                log.warning("no route to node address %s: %s", node_ip, e)
                continue
            if have.get(dst) == gateway:
                continue
            ipr.route("replace", dst=dst, gateway=gateway, table=_MAIN_TABLE, proto=RTPROT_PINNACE)
            log.info("pods in %s reached via %s", dst, gateway)


def remove_routes() -> None:
    sync_routes({})


class NodeRoutes:
    """Keeps the routes in line with the Nodes the API server has."""

    def __init__(self, client: Client, node_name: str, cluster_cidr: str):
        self.node_name = node_name
        self.cluster = ipaddress.IPv4Network(cluster_cidr)
        self.nodes = Informer(client.resource("v1", "nodes"), transform=_slim)
        self._wake = asyncio.Event()

    async def run(self) -> None:
        wake = lambda *_: self._wake.set()  # noqa: E731
        self.nodes.add_handler(wake, wake, wake)
        self.nodes.start()
        applied: dict[str, str] | None = None
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                wanted = _wanted(self.nodes.objects(), self.node_name, self.cluster)
                if wanted == applied:
                    continue
                try:
                    await asyncio.to_thread(sync_routes, wanted)
                    applied = wanted
                except Exception as e:
                    log.warning("updating routes to other nodes failed (retrying): %s", e)
                    await asyncio.sleep(2)
                    self._wake.set()
        finally:
            await self.nodes.stop()


def _slim(node: Obj) -> Obj:
    """Only what routing and the service proxy need (the proxy shares this
    informer): node status (images, heartbeats) changes often and is large."""
    from pinnace.proxy.proxier import node_readiness

    return {**node_readiness(node),
            "spec": {"podCIDR": (node.get("spec") or {}).get("podCIDR")},
            "status": {"addresses": (node.get("status") or {}).get("addresses") or []}}
