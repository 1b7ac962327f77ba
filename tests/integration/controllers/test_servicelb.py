"""LoadBalancer addresses against a real API server, seen through kubectl."""

from __future__ import annotations

import json
from typing import Any

from pinnace.controllers.servicelb import ServiceLBController
from tests.conftest import Server
from tests.integration.controllers.nodes_harness import (
    events_for,
    eventually,
    kubectl,
    own_server,
    run_controllers,
)

__all__ = ["own_server"]

Obj = dict[str, Any]
OPTIONS = {"lb_pool": "10.88.0.10-10.88.0.11"}  # two addresses: the third service waits


def _svc(name: str, type_: str = "LoadBalancer", **spec: Any) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
                       "spec": {"type": type_, "selector": {"app": name},
                                "ports": [{"port": 80, "targetPort": 8080}], **spec}})


async def _ips(server: Server, ns: str, name: str) -> list[str]:
    svc = json.loads(await kubectl(server, "-n", ns, "get", "svc", name, "-o", "json"))
    return [i["ip"] for i in ((svc.get("status") or {}).get("loadBalancer") or {})
            .get("ingress") or []]


async def test_addresses_assigned_released_and_exhausted(own_server: Server) -> None:
    k = own_server
    async with run_controllers(own_server, ServiceLBController, options=OPTIONS) as run:
        ns = "lb-a"
        await kubectl(k, "create", "namespace", ns)
        await kubectl(k, "-n", ns, "create", "-f", "-", input=_svc("web"))
        web = await eventually(lambda: _ips(k, ns, "web"), what="web address")
        assert web == ["10.88.0.10"]
        svc = json.loads(await kubectl(k, "-n", ns, "get", "svc", "web", "-o", "json"))
        assert svc["status"]["loadBalancer"]["ingress"] == [{"ip": "10.88.0.10",
                                                             "ipMode": "VIP"}]
        table = await kubectl(k, "-n", ns, "get", "svc", "web")
        assert "10.88.0.10" in table.splitlines()[1]

        # Another implementation's class is left alone.
        await kubectl(k, "-n", ns, "create", "-f", "-",
                      input=_svc("classy", loadBalancerClass="example.com/other"))
        await kubectl(k, "-n", ns, "create", "-f", "-",
                      input=_svc("pinned", loadBalancerIP="10.88.0.11"))
        assert await eventually(lambda: _ips(k, ns, "pinned"), what="pinned") == ["10.88.0.11"]
        assert await _ips(k, ns, "classy") == []

        await kubectl(k, "-n", ns, "create", "-f", "-", input=_svc("late"))
        evs = await eventually(lambda: events_for(run.client, ns, "late"), what="event")
        assert any(e["reason"] == "AllocationFailed" and e["type"] == "Warning" for e in evs)
        assert await _ips(k, ns, "late") == []

        # Turning web into a ClusterIP service frees its address for the waiting one.
        await kubectl(k, "-n", ns, "patch", "svc", "web", "--type=merge", "-p", json.dumps(
            {"spec": {"type": "ClusterIP", "externalTrafficPolicy": None,
                      "ports": [{"port": 80, "targetPort": 8080}]}}))
        assert await eventually(lambda: _ips(k, ns, "late"), what="late") == ["10.88.0.10"]
        await eventually(lambda: _no_ips(k, ns, "web"), what="web's status cleared")

    # A restart keeps addresses where they are; deleting a service frees its address.
    async with run_controllers(own_server, ServiceLBController, options=OPTIONS):
        await kubectl(k, "-n", ns, "create", "-f", "-", input=_svc("later"))
        await kubectl(k, "-n", ns, "delete", "svc", "pinned")
        assert await eventually(lambda: _ips(k, ns, "later"), what="later") == ["10.88.0.11"]
        assert await _ips(k, ns, "late") == ["10.88.0.10"]


async def _no_ips(server: Server, ns: str, name: str) -> bool:
    return not await _ips(server, ns, name)
