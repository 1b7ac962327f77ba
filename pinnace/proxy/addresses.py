"""LoadBalancer addresses this node answers for, held on a device of their
own: with an address local, the node replies to ARP for it on its network
(as MetalLB's layer-2 mode and k3s's ServiceLB make nodes do) and the
table's service map takes the traffic from there.

A dummy device where the kernel has one, else an ifb device (no carrier
needed for local addresses).
"""

from __future__ import annotations

import errno
import ipaddress
import logging

log = logging.getLogger("pinnace.proxy.addresses")

DEVICE = "pinnace-lb"
KINDS = ("dummy", "ifb")


class LocalAddresses:
    def __init__(self, device: str = DEVICE):
        self.device = device
        self._have: set[str] | None = None

    def _index(self, ipr: object, create: bool) -> int | None:
        from pinnace.pyroute import NetlinkError

        found = ipr.link_lookup(ifname=self.device)  # type: ignore[attr-defined]
        for kind in KINDS if create and not found else ():
            try:
                ipr.link("add", ifname=self.device, kind=kind)  # type: ignore[attr-defined]
            except NetlinkError as e:
                if e.code not in (errno.EOPNOTSUPP, errno.EEXIST, errno.EINVAL):
                    raise
            found = ipr.link_lookup(ifname=self.device)  # type: ignore[attr-defined]
            if found:
                break
        return found[0] if found else None

    def set(self, ips: set[str]) -> None:
        """Hold exactly ``ips`` (IPv4 /32s)."""
        if ips == self._have:
            return
        from pinnace.pyroute import IPRoute

        with IPRoute() as ipr:
            idx = self._index(ipr, create=bool(ips))
            if idx is None:
                self._have = set()
                return
            have = {a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(index=idx, family=2)}
            for ip in sorted(have - ips):
                ipr.addr("del", index=idx, address=ip, prefixlen=32)
            for ip in sorted(ips - have):
                ipaddress.IPv4Address(ip)
                ipr.addr("add", index=idx, address=ip, prefixlen=32)
            ipr.link("set", index=idx, state="up")
        if ips != have:
            log.info("load balancer addresses on %s: %s", self.device, ", ".join(sorted(ips)) or "none")
        self._have = set(ips)

    def remove(self) -> list[str]:
        from pinnace.pyroute import IPRoute

        with IPRoute() as ipr:
            idx = self._index(ipr, create=False)
            if idx is None:
                return []
            ipr.link("del", index=idx)
        self._have = None
        return [f"device {self.device}"]
