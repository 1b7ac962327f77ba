"""Forgetting UDP flows the rules no longer describe, as kube-proxy does.

NAT is decided on a flow's first packet and kept in conntrack; UDP has no
close, so without this a client that keeps its socket (a resolver, say)
would keep sending to an endpoint that is gone, or keep being refused by
a service that has endpoints now, until the entry times out.
"""

from __future__ import annotations

import logging
import socket

from .rules import NO_ENDPOINT_SERVICES, SERVICE_IPS, Rules

log = logging.getLogger("pinnace.proxy.conntrack")


def _udp_endpoints(rules: Rules) -> set[str]:
    """Endpoint addresses of the service's UDP ports (from the chain names:
    endpoint-<id>-ns/name/udp/port__ip/port)."""
    out = set()
    for name in rules.chains:
        if name.startswith("endpoint-") and "/udp/" in name:
            out.add(name.rsplit("__", 1)[1].split("/", 1)[0])
    return out


def _udp_addresses(rules: Rules, map_name: str) -> set[tuple[str, int]]:
    out = set()
    for key in rules.elements.get(map_name, {}):
        parts = key.split(" . ")
        if len(parts) == 3 and parts[1] == "udp":
            out.add((parts[0], int(parts[2])))
    return out


def stale(old: Rules, new: Rules) -> tuple[set[str], set[tuple[str, int]]]:
    """(endpoints gone, service addresses that refused and now serve)."""
    gone = _udp_endpoints(old) - _udp_endpoints(new)
    served = _udp_addresses(old, NO_ENDPOINT_SERVICES) & _udp_addresses(new, SERVICE_IPS)
    return gone, served


def forget(gone: set[str], served: set[tuple[str, int]]) -> int:
    """Delete the UDP conntrack entries replied by ``gone`` endpoints or sent
    to ``served`` addresses. Returns how many went (blocking: netlink)."""
    if not gone and not served:
        return 0
    from pyroute2 import Conntrack
    from pyroute2.netlink.nfnetlink.nfctsocket import NFCTAttrTuple

    n = 0
    with Conntrack() as ct:
        victims = []
        for entry in ct.dump_entries(tuple_orig=NFCTAttrTuple(proto=socket.IPPROTO_UDP)):
            reply, orig = entry.tuple_reply, entry.tuple_orig
            if reply.saddr in gone or (orig.daddr, orig.dport) in served:
                victims.append(orig)
        for orig in victims:
            try:
                ct.entry("del", tuple_orig=orig)
                n += 1
            except Exception as e:  # gone meanwhile
                log.debug("conntrack delete %s: %s", orig, e)
    return n
