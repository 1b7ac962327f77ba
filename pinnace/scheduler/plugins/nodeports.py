"""NodePorts: a pod's hostPorts must be free on the node."""

from __future__ import annotations

from typing import Any

from pinnace.scheduler.cache import NodeInfo, PodInfo, SchedulerCache
from pinnace.scheduler.plugins.base import Check

ERR_PORTS = "node(s) didn't have free ports for the requested pod ports"
_ANY = "0.0.0.0"


def ports_conflict(used: dict[tuple[str, int], dict[str, int]], want: tuple[tuple[str, str, int], ...]) -> bool:
    """HostPortInfo.CheckConflict: 0.0.0.0 clashes with every address."""
    for ip, proto, port in want:
        ips = used.get((proto, port))
        if not ips:
            continue
        if ip == _ANY or _ANY in ips or ip in ips:
            return True
    return False


class NodePorts:
    name = "NodePorts"

    def pre_filter(self, pod: PodInfo, cache: SchedulerCache, state: dict[str, Any]) -> Check | None:
        want = pod.host_ports
        if not want:
            return None

        def ok(ni: NodeInfo) -> bool:
            return not ni.used_ports or not ports_conflict(ni.used_ports, want)

        return Check(ok, (ERR_PORTS,))
