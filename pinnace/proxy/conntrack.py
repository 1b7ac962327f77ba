"""Forgetting UDP flows the rules no longer describe, as kube-proxy does.

NAT is decided on a flow's first packet and kept in conntrack; UDP has no
close, so without this a client that keeps its socket (a resolver, say)
would keep sending to an endpoint that is gone, or keep being refused by
a service that has endpoints now, until the entry times out.
"""

from __future__ import annotations

import logging
import socket

from .model import UdpFlows

log = logging.getLogger("pinnace.proxy.conntrack")


def stale(old: UdpFlows, new: UdpFlows) -> tuple[set[str], set[tuple[str, int]], set[int]]:
    """(endpoints gone, service addresses that refused and now serve,
    NodePorts that refused and now serve)."""
    return (set(old.endpoints - new.endpoints), set(old.refusing & new.serving),
            set(old.refusing_nodeports & new.serving_nodeports))


def forget(gone: set[str], served: set[tuple[str, int]], nodeports: set[int]) -> int:
    """Delete the UDP conntrack entries replied by ``gone`` endpoints, sent
    to ``served`` addresses, or sent to ``nodeports`` on any address (as
    kube-proxy clears a NodePort). Returns how many went (blocking: netlink)."""
    if not gone and not served and not nodeports:
        return 0
    from pinnace.pyroute import Conntrack, NFCTAttrTuple

    n = 0
    with Conntrack() as ct:
        victims = []
        for entry in ct.dump_entries(tuple_orig=NFCTAttrTuple(proto=socket.IPPROTO_UDP)):
            reply, orig = entry.tuple_reply, entry.tuple_orig
            if reply.saddr in gone or (orig.daddr, orig.dport) in served or \
                    orig.dport in nodeports:
                victims.append(orig)
        for orig in victims:
            try:
                ct.entry("del", tuple_orig=orig)
                n += 1
            except Exception as e:  # gone meanwhile
                log.debug("conntrack delete %s: %s", orig, e)
    return n
