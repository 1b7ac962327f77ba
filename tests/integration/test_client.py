"""pinnace.client against a real server: REST, informers, leader election."""

from __future__ import annotations

import asyncio

import pytest

from pinnace.client import ApiError, Client, InformerFactory, LeaderElector, load_kubeconfig
from tests.conftest import Server, tcp_connections_to


def cm(name: str, value: str = "1") -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
            "data": {"v": value}}


async def test_rest_crud(server: Server, namespace: str) -> None:
    async with Client(load_kubeconfig(server.kubeconfig)) as c:
        cms = c.resource("v1", "configmaps")
        made = await cms.create(cm("a"), namespace)
        assert made["metadata"]["uid"]
        patched = await cms.patch("a", {"data": {"v": "2"}}, namespace)
        assert patched["data"] == {"v": "2"}
        for i in range(7):
            await cms.create(cm(f"p{i}"), namespace)
        listed = await cms.list(namespace, limit=3)  # pages are followed
        assert len(listed["items"]) == 8
        with pytest.raises(ApiError) as e:
            await cms.create(cm("a"), namespace)
        assert e.value.conflict and e.value.reason == "AlreadyExists"
        await cms.delete("a", namespace)
        with pytest.raises(ApiError) as e:
            await cms.get("a", namespace)
        assert e.value.not_found


async def test_a_burst_of_requests_shares_a_few_connections(server: Server, namespace: str) -> None:
    """max_requests bounds the requests in flight, so a burst reuses a few
    connections instead of opening one per request; a watch beside them
    keeps running."""
    port = int(server.url.rsplit(":", 1)[1].split("/")[0])
    async with Client(load_kubeconfig(server.kubeconfig), max_requests=2) as c:
        cms = c.resource("v1", "configmaps")
        seen: asyncio.Queue[str] = asyncio.Queue()

        async def watch() -> None:
            async for _, obj in cms.watch(namespace, timeout_seconds=30):
                await seen.put(obj["metadata"]["name"])

        watching = asyncio.create_task(watch())
        try:
            await asyncio.gather(*(cms.create(cm(f"burst{i}"), namespace) for i in range(20)))
            assert len((await cms.list(namespace))["items"]) == 20
            got = {await asyncio.wait_for(seen.get(), 10) for _ in range(20)}
            assert got == {f"burst{i}" for i in range(20)}
            assert tcp_connections_to(port) <= 3  # two for requests, one for the watch
        finally:
            watching.cancel()
            await asyncio.gather(watching, return_exceptions=True)


async def test_informer_follows_changes(server: Server, namespace: str) -> None:
    async with Client(load_kubeconfig(server.kubeconfig)) as c:
        cms = c.resource("v1", "configmaps")
        await cms.create(cm("before"), namespace)
        factory = InformerFactory(c)
        inf = factory.informer("v1", "configmaps", namespace)
        seen: list[tuple[str, str]] = []
        inf.add_handler(lambda o: seen.append(("add", o["metadata"]["name"])),
                        lambda old, new: seen.append(("update", new["metadata"]["name"])),
                        lambda o: seen.append(("delete", o["metadata"]["name"])))
        factory.start()
        await factory.wait_synced(10)
        assert ("add", "before") in seen
        await cms.create(cm("new"), namespace)
        await cms.patch("before", {"data": {"v": "9"}}, namespace)
        await cms.delete("new", namespace)
        for _ in range(100):
            if ("delete", "new") in seen:
                break
            await asyncio.sleep(0.05)
        assert seen[-3:] == [("add", "new"), ("update", "before"), ("delete", "new")]
        assert inf.get(f"{namespace}/before")["data"] == {"v": "9"}
        assert [o["metadata"]["name"] for o in inf.objects(namespace)] == ["before"]
        await factory.stop()


async def test_a_metadata_informer_keeps_metadata_only(server: Server, namespace: str) -> None:
    async with Client(load_kubeconfig(server.kubeconfig)) as c:
        cms = c.resource("v1", "configmaps")
        await cms.create(cm("before"), namespace)
        factory = InformerFactory(c)
        inf = factory.informer("v1", "configmaps", namespace, metadata_only=True)
        seen: list[tuple[str, str, str]] = []
        inf.add_handler(lambda o: seen.append(("add", o["metadata"]["name"], o["kind"])),
                        lambda old, new: seen.append(("update", new["metadata"]["name"],
                                                      new["kind"])),
                        lambda o: seen.append(("delete", o["metadata"]["name"], o["kind"])))
        factory.start()
        await factory.wait_synced(10)
        await cms.create(cm("new"), namespace)
        await cms.patch("before", {"metadata": {"labels": {"x": "y"}}}, namespace)
        await cms.delete("new", namespace)
        for _ in range(100):
            if ("delete", "new", "PartialObjectMetadata") in seen:
                break
            await asyncio.sleep(0.05)
        kind = "PartialObjectMetadata"
        assert seen == [("add", "before", kind), ("add", "new", kind), ("update", "before", kind),
                        ("delete", "new", kind)]
        before = inf.get(f"{namespace}/before")
        assert before["apiVersion"] == "meta.k8s.io/v1" and "data" not in before
        assert before["metadata"]["labels"] == {"x": "y"} and before["metadata"]["uid"]
        await factory.stop()


async def test_informers_asked_for_metadata_and_objects_share_one_of_objects(
        server: Server, namespace: str) -> None:
    async with Client(load_kubeconfig(server.kubeconfig)) as c:
        await c.resource("v1", "configmaps").create(cm("a"), namespace)
        factory = InformerFactory(c)
        meta = factory.informer("v1", "configmaps", namespace, metadata_only=True)
        whole = factory.informer("v1", "configmaps", namespace)
        assert meta is whole and not whole.metadata_only
        factory.start()
        await factory.wait_synced(10)
        assert whole.get(f"{namespace}/a")["data"] == {"v": "1"}
        with pytest.raises(RuntimeError):  # too late to ask for more than metadata
            factory.informer("v1", "secrets", namespace, metadata_only=True)
            factory.start()
            factory.informer("v1", "secrets", namespace)
        await factory.stop()


async def test_leader_election_hands_over(server: Server, namespace: str) -> None:
    async with Client(load_kubeconfig(server.kubeconfig)) as c:
        a = LeaderElector(c, "lock", "a", namespace=namespace, lease_duration=1,
                          renew_deadline=0.8, retry_period=0.2)
        b = LeaderElector(c, "lock", "b", namespace=namespace, lease_duration=1,
                          renew_deadline=0.8, retry_period=0.2)
        a_started = asyncio.Event()
        a_stop = asyncio.Event()

        async def lead_a() -> None:
            a_started.set()
            await a_stop.wait()

        b_started = asyncio.Event()

        async def lead_b() -> None:
            b_started.set()
            await asyncio.sleep(30)

        ta = asyncio.create_task(a.run(lead_a))
        await asyncio.wait_for(a_started.wait(), 5)
        tb = asyncio.create_task(b.run(lead_b))
        await asyncio.sleep(1.5)
        assert not b_started.is_set()  # a keeps renewing
        a_stop.set()  # a's work ends: it stops renewing
        await ta
        await asyncio.wait_for(b_started.wait(), 10)
        lease = await c.resource("coordination.k8s.io/v1", "leases").get("lock", namespace)
        assert lease["spec"]["holderIdentity"] == "b"
        assert lease["spec"]["leaseTransitions"] == 1
        tb.cancel()
