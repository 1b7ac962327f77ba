"""Node lifecycle and taint eviction against a real API server: nodes are
Node and Lease objects the test posts and renews itself, as a kubelet would."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from pinnace.client import Client
from pinnace.controllers.nodelifecycle import NodeLifecycleController, TaintEvictionController
from tests.conftest import Server
from tests.integration.controllers.nodes_harness import (
    events_for,
    eventually,
    get_or_none,
    kubectl,
    own_server,
    post_ready,
    register_node,
    renew_lease,
    run_controllers,
)

__all__ = ["own_server"]  # the fixture, imported for pytest

Obj = dict[str, Any]
OPTIONS = {"node_monitor_grace_period": 3, "node_monitor_period": 1}


@contextlib.asynccontextmanager
async def heartbeat(client: Client, *names: str) -> AsyncIterator[None]:
    async def beat() -> None:
        while True:
            for n in names:
                await renew_lease(client, n)
            await asyncio.sleep(0.5)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _pod(name: str, node: str, tolerations: list[Obj] | None = None) -> Obj:
    spec: Obj = {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]}
    if tolerations is not None:
        spec["tolerations"] = tolerations
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def _cond(obj: Obj, type_: str) -> Obj:
    return next((c for c in (obj.get("status") or {}).get("conditions") or []
                 if c["type"] == type_), {})


def _taints(node: Obj) -> set[tuple[str, str]]:
    return {(t["key"], t["effect"]) for t in (node.get("spec") or {}).get("taints") or []}


async def _ns(server: Server, name: str) -> str:
    await kubectl(server, "create", "namespace", name)
    return name


async def test_unreachable_node_is_tainted_and_its_pods_evicted(own_server: Server) -> None:
    async with run_controllers(own_server, NodeLifecycleController, TaintEvictionController,
                               options=OPTIONS) as run:
        c = run.client
        nodes, pods = c.resource("v1", "nodes"), c.resource("v1", "pods")
        ns = await _ns(own_server, "lifecycle-a")
        await register_node(c, "lost-1")
        await register_node(c, "alive-1")
        quick = [{"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                  "effect": "NoExecute", "tolerationSeconds": 2}]
        await pods.create(_pod("quick", "lost-1", quick), ns)
        patient = await pods.create(_pod("patient", "lost-1"), ns)  # default 300 s
        await pods.patch("patient", {"status": {"phase": "Running", "conditions": [
            {"type": "Ready", "status": "True"}]}}, ns, subresource="status")
        await pods.create(_pod("elsewhere", "alive-1", quick), ns)
        async with heartbeat(c, "alive-1"):
            lost = await eventually(
                lambda: _lost(nodes), timeout=15, what="lost-1 Ready=Unknown")
            ready = _cond(lost, "Ready")
            assert ready["reason"] == "NodeStatusUnknown"
            assert ready["message"] == "Kubelet stopped posting node status."
            assert _cond(lost, "MemoryPressure")["status"] == "Unknown"
            tainted = await eventually(
                lambda: _has_taints(nodes, "lost-1", {
                    ("node.kubernetes.io/unreachable", "NoExecute"),
                    ("node.kubernetes.io/unreachable", "NoSchedule")}),
                timeout=10, what="unreachable taints")
            noexec = next(t for t in tainted["spec"]["taints"] if t["effect"] == "NoExecute")
            assert noexec.get("timeAdded")
            # The pod tolerating it for 2 s goes; the 300 s one stays, marked not ready.
            await eventually(lambda: _gone(c, ns, "quick"), timeout=10, what="quick evicted")
            p = await pods.get("patient", ns)
            assert p["metadata"]["uid"] == patient["metadata"]["uid"]
            assert not p["metadata"].get("deletionTimestamp")
            assert _cond(p, "Ready")["status"] == "False"
            assert await pods.get("elsewhere", ns)
            alive = await nodes.get("alive-1")
            assert _cond(alive, "Ready")["status"] == "True" and not _taints(alive)
            evs = await eventually(lambda: _reasons(c, ns, "quick"), what="eviction event")
            assert ("TaintManagerEviction", f"Marking for deletion Pod {ns}/quick") in evs
            assert ("NodeNotReady", "Node is not ready") in await _reasons(c, ns, "patient")
            node_events = await eventually(lambda: _reasons(c, "default", "lost-1"),
                                           what="node event")
            assert ("NodeNotReady", "Node lost-1 status is now: NodeNotReady") in node_events
            out = await kubectl(own_server, "get", "node", "lost-1")
            assert "NotReady" in out
            # The kubelet comes back: taints go, the patient pod is no longer at risk.
            await post_ready(c, "lost-1")
            async with heartbeat(c, "lost-1"):
                await eventually(lambda: _untainted(nodes, "lost-1"), timeout=10,
                                 what="taints removed")
                await asyncio.sleep(0.5)
                assert await pods.get("patient", ns)
                desc = await kubectl(own_server, "describe", "node", "lost-1")
                assert "Taints:             <none>" in desc


async def test_not_ready_node_gets_not_ready_taints(own_server: Server) -> None:
    async with run_controllers(own_server, NodeLifecycleController, TaintEvictionController,
                               options=OPTIONS) as run:
        c = run.client
        nodes = c.resource("v1", "nodes")
        await register_node(c, "sick-1", ready=False)
        async with heartbeat(c, "sick-1"):
            node = await eventually(lambda: _has_taints(nodes, "sick-1", {
                ("node.kubernetes.io/not-ready", "NoExecute"),
                ("node.kubernetes.io/not-ready", "NoSchedule")}), what="not-ready taints")
            assert ("node.kubernetes.io/unreachable", "NoExecute") not in _taints(node)
            await post_ready(c, "sick-1")
            await eventually(lambda: _untainted(nodes, "sick-1"), what="taints removed")


async def test_untolerated_no_execute_taint_evicts_at_once(own_server: Server) -> None:
    async with run_controllers(own_server, NodeLifecycleController, TaintEvictionController,
                               options=OPTIONS) as run:
        c = run.client
        nodes, pods = c.resource("v1", "nodes"), c.resource("v1", "pods")
        ns = await _ns(own_server, "lifecycle-c")
        await register_node(c, "maint-1")
        async with heartbeat(c, "maint-1"):
            held = _pod("held", "maint-1")
            held["metadata"]["finalizers"] = ["example.com/hold"]  # to read it after deletion
            await pods.create(held, ns)
            await pods.create(_pod("plain", "maint-1"), ns)
            forever = [{"key": "example.com/maintenance", "operator": "Exists",
                        "effect": "NoExecute"}]
            await pods.create(_pod("stayer", "maint-1", forever), ns)
            await kubectl(own_server, "taint", "node", "maint-1",
                          "example.com/maintenance=now:NoExecute")
            await eventually(lambda: _gone(c, ns, "plain"), timeout=10, what="plain evicted")
            p = await pods.get("held", ns)
            assert p["metadata"].get("deletionTimestamp")
            cond = _cond(p, "DisruptionTarget")
            assert cond["status"] == "True" and cond["reason"] == "DeletionByTaintManager"
            await pods.patch("held", {"metadata": {"finalizers": None}}, ns)
            await asyncio.sleep(0.5)
            assert await pods.get("stayer", ns)
            # A manual taint is not the controller's to remove.
            node = await nodes.get("maint-1")
            assert ("example.com/maintenance", "NoExecute") in _taints(node)


async def _lost(nodes: Any) -> Obj | None:
    node = await nodes.get("lost-1")
    return node if _cond(node, "Ready").get("status") == "Unknown" else None


async def _has_taints(nodes: Any, name: str, want: set[tuple[str, str]]) -> Obj | None:
    node = await nodes.get(name)
    return node if want <= _taints(node) else None


async def _untainted(nodes: Any, name: str) -> bool:
    node = await nodes.get(name)
    return _cond(node, "Ready").get("status") == "True" and not _taints(node)


async def _gone(client: Client, ns: str, name: str) -> bool:
    return await get_or_none(client, "v1", "pods", name, ns) is None


async def _reasons(client: Client, ns: str, name: str) -> list[tuple[str, str]]:
    return [(e["reason"], e["message"]) for e in await events_for(client, ns, name)]
