"""Run controllers in the test's own event loop against a real API server,
and the async helpers such tests need (a blocking wait would stall the
controllers sharing the loop). Also a private API server per test module,
for controllers that act on cluster-wide state (nodes, every namespace, every
LoadBalancer service) and so must not share a server with other tests."""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pinnace.client import ApiError, Client, InformerFactory, load_kubeconfig
from pinnace.controllers.base import Context, Controller
from tests.conftest import Server, start_server

Obj = dict[str, Any]


@dataclass
class Running:
    client: Client
    controllers: list[Controller]


@asynccontextmanager
async def run_controllers(server: Server, *classes: type[Controller],
                          options: dict[str, Any] | None = None) -> AsyncIterator[Running]:
    client = Client(load_kubeconfig(server.kubeconfig))
    informers = InformerFactory(client)
    ctx = Context(client, informers, dict(options or {}))
    controllers = [cls(ctx) for cls in classes]
    for c in controllers:
        c.setup()
    informers.start()
    tasks: list[asyncio.Task[None]] = []
    try:
        await informers.wait_synced(15)
        tasks = [asyncio.create_task(c.run()) for c in controllers]
        yield Running(client, controllers)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await informers.stop()
        await client.close()


async def eventually(check: Any, timeout: float = 20, interval: float = 0.1,
                     what: str = "") -> Any:
    """Await ``check()`` (plain or async) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if inspect.isawaitable(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or check}: last {last!r}")


async def kubectl(server: Server, *args: str, input: str | None = None,
                  check: bool = True) -> str:
    """kubectl off the loop, so in-process controllers keep running meanwhile."""
    proc = await asyncio.to_thread(server.kubectl, *args, input=input, check=check)
    return str(proc.stdout)


async def get_or_none(client: Client, api_version: str, resource: str, name: str,
                      namespace: str | None = None) -> Obj | None:
    try:
        return await client.resource(api_version, resource).get(name, namespace)  # type: ignore[no-any-return]
    except ApiError as e:
        if e.not_found:
            return None
        raise


def rfc3339(t: float | None = None) -> str:
    return dt.datetime.fromtimestamp(time.time() if t is None else t, dt.UTC).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


def micro_time() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def events_for(client: Client, namespace: str, name: str) -> list[Obj]:
    items = (await client.resource("v1", "events").list(namespace))["items"]
    return [e for e in items if (e.get("involvedObject") or {}).get("name") == name]


# -- nodes as a kubelet would post them -----------------------------------------------


def ready_conditions(status: str = "True") -> list[Obj]:
    now = rfc3339()
    conds = [{"type": t, "status": "False", "reason": f"KubeletHas{r}",
              "message": m, "lastHeartbeatTime": now, "lastTransitionTime": now}
             for t, r, m in (("MemoryPressure", "SufficientMemory", "ok"),
                             ("DiskPressure", "NoDiskPressure", "ok"),
                             ("PIDPressure", "SufficientPID", "ok"))]
    conds.append({"type": "Ready", "status": status, "reason": "KubeletReady",
                  "message": "kubelet is posting ready status", "lastHeartbeatTime": now,
                  "lastTransitionTime": now})
    return conds


async def register_node(client: Client, name: str, *, ready: bool = True,
                        lease: bool = True) -> Obj:
    """Create a Node (with Ready status) and its Lease, as a kubelet does."""
    nodes = client.resource("v1", "nodes")
    node = await nodes.create({"apiVersion": "v1", "kind": "Node",
                               "metadata": {"name": name,
                                            "labels": {"kubernetes.io/hostname": name}}})
    node = await nodes.patch(name, {"status": {"conditions": ready_conditions(
        "True" if ready else "False")}}, subresource="status")
    if lease:
        await client.resource("coordination.k8s.io/v1", "leases").create({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": name, "namespace": "kube-node-lease"},
            "spec": {"holderIdentity": name, "leaseDurationSeconds": 40,
                     "renewTime": micro_time()}}, "kube-node-lease")
    return node  # type: ignore[no-any-return]


async def renew_lease(client: Client, name: str) -> None:
    await client.resource("coordination.k8s.io/v1", "leases").patch(
        name, {"spec": {"renewTime": micro_time()}}, "kube-node-lease")


async def post_ready(client: Client, name: str) -> None:
    await client.resource("v1", "nodes").patch(
        name, {"status": {"conditions": ready_conditions("True")}}, subresource="status")


@pytest.fixture(scope="module")
def own_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """An API server for this test module alone (memory store)."""
    srv = start_server(Path(tmp_path_factory.mktemp("own")), "--datastore", "memory")
    yield srv
    srv.stop()
